"""Signed checkpoints: a Merkle root over the log, in a C2SP signed note, signed with Ed25519.

The leaves are the records' digests, which already are RFC 6962 leaf hashes
(``SHA-256(0x00 || record)``), so the root is the RFC 6962 Merkle tree hash of the log
and the checkpoint body follows C2SP ``tlog-checkpoint``::

    <origin>
    <size>
    <base64 root>

    — <key name> <base64(key id || signature)>

An outside witness or transparency service can take the note as it is; the key id is
``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` as in C2SP ``signed-note``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = ["MerkleFrontier", "Signer", "Verifier", "format_note", "parse_note"]

_SIG_PREFIX = "\u2014 "  # an em dash and a space start every signature line


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleFrontier:
    """The compact range of an append-only tree: O(log n) hashes, root in O(log n)."""

    __slots__ = ("_hashes", "size")

    def __init__(self) -> None:
        self.size = 0
        self._hashes: list[tuple[int, bytes]] = []  # (subtree height, hash), largest first

    def append(self, leaf_hash: bytes) -> None:
        height, current = 0, leaf_hash
        while self._hashes and self._hashes[-1][0] == height:
            _, left = self._hashes.pop()
            current = _node(left, current)
            height += 1
        self._hashes.append((height, current))
        self.size += 1

    def state(self) -> list[list[int | str]]:
        """The compact range as JSON: [[height, base64 hash], ...], largest subtree first."""
        return [[height, base64.b64encode(h).decode()] for height, h in self._hashes]

    @classmethod
    def from_state(cls, state: list[list[int | str]]) -> MerkleFrontier:
        frontier = cls()
        for height, encoded in state:
            frontier._hashes.append((int(height), base64.b64decode(str(encoded))))
            frontier.size += 1 << int(height)
        return frontier

    def root(self) -> bytes:
        """RFC 6962 Merkle tree hash of the leaves so far (SHA-256 of "" when empty)."""
        if not self._hashes:
            return hashlib.sha256(b"").digest()
        root = self._hashes[-1][1]
        for _, left in reversed(self._hashes[:-1]):
            root = _node(left, root)
        return root


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


def format_body(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def format_note(body: str, name: str, key: bytes, signature: bytes) -> str:
    blob = base64.b64encode(key_id(name, key) + signature).decode()
    return f"{body}\n{_SIG_PREFIX}{name} {blob}\n"


@dataclass(frozen=True, slots=True)
class ParsedNote:
    origin: str
    size: int
    root: bytes
    body: str
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (name, key id, signature)


def parse_note(note: str) -> ParsedNote:
    """Parse a checkpoint note; raises ValueError when it is not one."""
    body, sep, rest = note.partition("\n\n")
    if not sep:
        raise ValueError("a checkpoint note needs a blank line between body and signatures")
    body += "\n"
    lines = body.split("\n")
    if len(lines) < 4:
        raise ValueError("a checkpoint body has an origin, a size and a root")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit():
        raise ValueError("checkpoint size is not a decimal number")
    signatures = []
    for line in rest.splitlines():
        if not line.startswith(_SIG_PREFIX):
            raise ValueError("a signature line starts with an em dash")
        name, _, blob = line[len(_SIG_PREFIX) :].rpartition(" ")
        raw = base64.b64decode(blob, validate=True)
        signatures.append((name, raw[:4], raw[4:]))
    return ParsedNote(
        origin, int(size_text), base64.b64decode(root_text, validate=True), body, tuple(signatures)
    )


class Verifier:
    """An Ed25519 public key with its signer name: checks checkpoint notes."""

    def __init__(self, name: str, public_key: bytes) -> None:
        self.name = name
        self.public_key = public_key
        self.key_id = key_id(name, public_key)
        self._key = Ed25519PublicKey.from_public_bytes(public_key)

    @property
    def vkey(self) -> str:
        """The C2SP verifier key string: ``<name>+<hex key id>+<base64(0x01 || key)>``."""
        encoded = base64.b64encode(b"\x01" + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        try:
            name, hex_id, blob = vkey.strip().split("+", 2)
            raw = base64.b64decode(blob, validate=True)
        except ValueError:
            raise ValueError("not a verifier key of the form name+keyid+base64key") from None
        if len(raw) != 33 or raw[0] != 1:
            raise ValueError("the verifier key is not an Ed25519 key (type 0x01, 32 bytes)")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hex_id:
            raise ValueError("the verifier key's id does not match its name and key")
        return verifier

    def verify(self, note: ParsedNote) -> bool:
        """True when one of the note's signatures is this key's and is valid."""
        for name, kid, signature in note.signatures:
            if name != self.name or kid != self.key_id:
                continue  # unknown keys are ignored, which is what allows rotation
            try:
                self._key.verify(signature, note.body.encode())
            except InvalidSignature:
                return False
            return True
        return False


class Signer:
    """An Ed25519 signing key with a name, for checkpoints."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not name or any(c.isspace() for c in name) or "+" in name:
            raise ValueError("a signer name is non-empty, without spaces or '+'")
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = Verifier(name, self.public_key)

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], name: str, *, create: bool = False) -> Signer:
        """Load a raw 32-byte seed or a PEM key; ``create`` writes a new one (mode 0600)."""
        target = Path(path)
        if create and not target.exists():
            signer = cls.generate(name)
            seed = signer._key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(seed)
            return signer
        data = target.read_bytes()
        if len(data) == 32:
            return cls(name, Ed25519PrivateKey.from_private_bytes(data))
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{target} does not hold an Ed25519 private key")
        return cls(name, key)

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def sign_checkpoint(self, origin: str, size: int, root: bytes) -> str:
        body = format_body(origin, size, root)
        return format_note(body, self.name, self.public_key, self._key.sign(body.encode()))
