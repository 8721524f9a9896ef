"""The vault protocol and the in-memory vault.

Originals are encrypted with an authenticated cipher (AES-256-GCM-SIV where the
OpenSSL build has it, else AES-256-GCM) under associated data that binds the scope,
token, kind and key version, so a ciphertext moved to another row does not decrypt.
Lookups go through a keyed blind index, never the plaintext.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag

from ..errors import VaultError
from ._crypto import VaultKeys, _make_cipher, blind_index, entry_aad, normalize, token_candidates
from .tokens import Scope

# normalize and VaultKeys are re-exported: they lived here first and callers import them.
__all__ = ["InMemoryVault", "Vault", "VaultKeys", "normalize"]


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
        return blind_index(self._keys, scope, kind, value, subject)

    def tokenize(self, scope: Scope, kind: str, value: str, subject: str | None = None) -> str:
        index = self._blind_index(scope, kind, value, subject)
        with self._lock:
            existing = self._index.get((scope.key, index))
            if existing is not None:
                return existing
            for token in token_candidates(self._keys, scope, kind, index):
                if (scope.key, token) not in self._entries:
                    break
            else:  # pragma: no cover - 2^-130 territory
                raise VaultError("could not issue a unique token in this scope")
            nonce = os.urandom(12)
            aad = entry_aad(scope, token, kind, self._keys.version)
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
        aad = entry_aad(scope, token, entry.kind, entry.key_version)
        try:
            return self._cipher.decrypt(entry.nonce, entry.ciphertext, aad).decode("utf-8")
        except InvalidTag:
            raise VaultError(
                "a vault entry failed authentication; the vault may have been tampered with"
            ) from None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
