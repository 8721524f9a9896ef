"""The vault protocol and the in-memory vault.

Originals are encrypted with an authenticated cipher (AES-256-GCM-SIV where the
OpenSSL build has it, else AES-256-GCM) under associated data that binds the scope,
token, kind and key version, so a ciphertext moved to another row does not decrypt.
Lookups go through a keyed blind index, never the plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import unicodedata
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import aead

from ..errors import VaultError
from .tokens import MAX_SUFFIX, MIN_SUFFIX, Scope, format_token, keyed_suffix

__all__ = ["InMemoryVault", "Vault", "VaultKeys"]


@runtime_checkable
class Vault(Protocol):
    """Stores reversible tokens. Implementations must be safe to call from many threads."""

    def tokenize(self, scope: Scope, kind: str, value: str, subject: str | None = None) -> str:
        """Return the token for ``value`` in ``scope``, issuing one if needed.

        The same (scope, subject, kind, value) always gets the same token.
        """
        ...

    def detokenize(self, scope: Scope, token: str) -> str | None:
        """The original of a token issued in ``scope``, or None for any other text."""
        ...


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
    data_key: bytes
    index_key: bytes
    token_key: bytes

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


def normalize(kind: str, value: str) -> str:
    """Values that mean the same get the same token: NFKC, and case-folded e-mail domains."""
    value = unicodedata.normalize("NFKC", value).strip()
    if kind == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    if kind in {"credit_card", "phone", "us_ssn", "iban"}:
        return "".join(ch for ch in value if ch.isalnum() or ch == "+")
    if kind == "person":
        return " ".join(value.casefold().split())
    return value


def _lp(*parts: str) -> bytes:
    out = bytearray()
    for part in parts:
        raw = part.encode("utf-8")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


@dataclass(slots=True)
class _Entry:
    kind: str
    subject: str | None
    nonce: bytes
    ciphertext: bytes
    key_version: int


class InMemoryVault:
    """A vault in process memory: fast, thread-safe, gone when the process ends."""

    def __init__(self, keys: VaultKeys | None = None) -> None:
        self._keys = keys or VaultKeys.generate()
        self._cipher = _make_cipher(self._keys.data_key)
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._index: dict[tuple[str, bytes], str] = {}

    @property
    def key_version(self) -> int:
        return self._keys.version

    def _blind_index(self, scope: Scope, kind: str, value: str, subject: str | None) -> bytes:
        material = _lp(scope.key, kind, subject or "", normalize(kind, value))
        return hmac.new(self._keys.index_key, material, hashlib.sha256).digest()

    def tokenize(self, scope: Scope, kind: str, value: str, subject: str | None = None) -> str:
        index = self._blind_index(scope, kind, value, subject)
        with self._lock:
            existing = self._index.get((scope.key, index))
            if existing is not None:
                return existing
            mac = hmac.new(self._keys.token_key, _lp(scope.key) + index, hashlib.sha256).digest()
            for length in range(MIN_SUFFIX, MAX_SUFFIX + 1, 2):
                token = format_token(kind, keyed_suffix(mac, length))
                if (scope.key, token) not in self._entries:
                    break
            else:  # pragma: no cover - 2^-130 territory
                raise VaultError("could not issue a unique token in this scope")
            nonce = os.urandom(12)
            aad = _lp(scope.key, token, kind, str(self._keys.version))
            ciphertext = self._cipher.encrypt(nonce, value.encode("utf-8"), aad)
            self._entries[(scope.key, token)] = _Entry(
                kind, subject, nonce, ciphertext, self._keys.version
            )
            self._index[(scope.key, index)] = token
            return token

    def detokenize(self, scope: Scope, token: str) -> str | None:
        with self._lock:
            entry = self._entries.get((scope.key, token))
        if entry is None:
            return None
        aad = _lp(scope.key, token, entry.kind, str(entry.key_version))
        try:
            return self._cipher.decrypt(entry.nonce, entry.ciphertext, aad).decode("utf-8")
        except InvalidTag:
            raise VaultError(
                "a vault entry failed authentication; the vault may have been tampered with"
            ) from None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
