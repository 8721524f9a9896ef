"""Key material, normalization and token derivation shared by every vault backend.

Each backend stores entries its own way, but all of them must give the same value the
same token and bind ciphertexts to the same associated data; keeping that logic here
means a value tokenized by one backend means the same thing in another.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import aead

from .._hmac import KeyedSha256
from .tokens import MAX_SUFFIX, MIN_SUFFIX, Scope, format_token, keyed_suffix

__all__ = [
    "VaultKeys",
    "blind_index",
    "entry_aad",
    "key_check",
    "normalize",
    "token_candidates",
    "token_matches",
]


def _make_cipher(key: bytes) -> aead.AESGCMSIV | aead.AESGCM:
    try:
        cipher = aead.AESGCMSIV(key)
        cipher.encrypt(b"\x00" * 12, b"probe", None)
    except Exception:  # OpenSSL < 3.2 has no GCM-SIV; GCM with random nonces is the fallback
        return aead.AESGCM(key)
    return cipher


@dataclass(frozen=True)
class VaultKeys:
    """Secrets of one vault key version: data encryption, blind index and token keys."""

    version: int
    # Never in a repr (a log line, a traceback's locals, an error tracker).
    data_key: bytes = field(repr=False)
    index_key: bytes = field(repr=False)
    token_key: bytes = field(repr=False)
    # The index and token keys' HMACs, pads hashed once: every call digests with them.
    index_mac: KeyedSha256 = field(init=False, repr=False, compare=False)
    token_mac: KeyedSha256 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_mac", KeyedSha256(self.index_key))
        object.__setattr__(self, "token_mac", KeyedSha256(self.token_key))

    def __reduce__(self) -> tuple[type[VaultKeys], tuple[int, bytes, bytes, bytes]]:
        # Hash states do not pickle or deep-copy: the keys do, and the MACs follow.
        return (type(self), (self.version, self.data_key, self.index_key, self.token_key))

    @classmethod
    def generate(cls, version: int = 1) -> VaultKeys:
        return cls(version, os.urandom(32), os.urandom(32), os.urandom(32))

    @classmethod
    def derive(cls, secret: bytes, version: int = 1) -> VaultKeys:
        """Purpose-separated keys from one secret (HKDF-style expand with HMAC-SHA-256)."""
        if len(secret) < 32:
            raise ValueError("the vault secret must be at least 32 bytes")

        def expand(label: str) -> bytes:
            return hmac.new(secret, f"aiguard/v1/{label}/{version}".encode(), "sha256").digest()

        return cls(version, expand("data"), expand("blind-index"), expand("token"))


_DIGIT_KINDS = frozenset({"credit_card", "phone", "us_ssn", "iban"})
# Every ASCII character that is neither alphanumeric nor "+": what the digit kinds drop.
_DROP_PUNCTUATION = str.maketrans(
    "", "", "".join(chr(c) for c in range(128) if not (chr(c).isalnum() or chr(c) == "+"))
)


def normalize(kind: str, value: str) -> str:
    """Values that mean the same get the same token: NFKC, and case-folded e-mail domains."""
    # NFKC leaves ASCII as it is: most values skip the Unicode tables.
    value = (value if value.isascii() else unicodedata.normalize("NFKC", value)).strip()
    if kind == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    if kind in _DIGIT_KINDS:
        if value.isascii():
            return value.translate(_DROP_PUNCTUATION)
        return "".join(ch for ch in value if ch.isalnum() or ch == "+")
    if kind == "person":
        return " ".join(value.casefold().split())
    return value


_LENGTH = struct.Struct(">I")


def _lp(*parts: str) -> bytes:
    """Length-prefixed concatenation: no two part lists share an encoding."""
    out: list[bytes] = []
    add, pack = out.append, _LENGTH.pack
    for part in parts:
        raw = part.encode()
        add(pack(len(raw)))
        add(raw)
    return b"".join(out)


def blind_index(
    keys: VaultKeys,
    scope: Scope,
    kind: str,
    value: str,
    subject: str | None,
    principal: str | None = None,
) -> bytes:
    """The keyed lookup digest of a value: equal for equal (scope, kind, owner, value).

    The owner is the subject; for a value seen without one, the principal that sent it
    (when known), so such a token restores for that principal only. Without either the
    digest is the one of the first aiguard versions.
    """
    material = _lp(scope.key, kind, subject or "", normalize(kind, value))
    if not subject and principal:
        material += _lp("principal", principal)
    return keys.index_mac.digest(material)


def token_candidates(keys: VaultKeys, scope: Scope, kind: str, index: bytes) -> Iterator[str]:
    """Tokens for a blind index, shortest first; a backend takes the first one still free.

    Longer suffixes are prefixes-extended versions of the same keyed MAC, so two vaults
    holding the same entries always settle on the same token.
    """
    mac = _token_mac(keys, scope, index)
    for length in range(MIN_SUFFIX, MAX_SUFFIX + 1, 2):
        yield format_token(kind, keyed_suffix(mac, length))


def token_matches(keys: VaultKeys, scope: Scope, token: str, index: bytes) -> bool:
    """Whether ``token`` is one `token_candidates` gives for ``index`` (any suffix length,
    legacy ones included): the token was issued to the owner ``index`` was computed for."""
    start = token.rfind("_")
    suffix = token[start + 1 : -1]
    if start < 0 or not suffix:
        return False
    return hmac.compare_digest(keyed_suffix(_token_mac(keys, scope, index), len(suffix)), suffix)


def _token_mac(keys: VaultKeys, scope: Scope, index: bytes) -> bytes:
    # One definition for issuing and checking: a token matches only the MAC it came from.
    return keys.token_mac.digest(_lp(scope.key) + index)


def entry_aad(scope: Scope, token: str, kind: str, key_version: int) -> bytes:
    """Associated data binding a ciphertext to its row, so a moved ciphertext fails to open."""
    return _lp(scope.key, token, kind, str(key_version))


def key_check(keys: VaultKeys) -> bytes:
    """A digest that identifies the keys without revealing them (stored beside entries)."""
    return hmac.new(keys.index_key, b"aiguard/v1/key-check", hashlib.sha256).digest()
