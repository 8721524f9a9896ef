"""HMAC-SHA-256 under a fixed key, with the key's two pads hashed once.

Every call hashes a few keyed digests (the vault's blind index, the event's subject
and body digests). ``hmac.digest`` sets up OpenSSL's HMAC context for each of them,
which on OpenSSL 3 costs about three times the hashing itself; here each digest
copies two SHA-256 states that already absorbed the padded key (RFC 2104's
construction, as the standard library's own pure-Python HMAC does). The output is
``hmac.digest(key, data, "sha256")`` byte for byte (property test in
tests/test_hmac.py).
"""

from __future__ import annotations

import hashlib

__all__ = ["KeyedSha256"]

_BLOCK = 64  # SHA-256's block size in bytes
_INNER_PAD = bytes(b ^ 0x36 for b in range(256))
_OUTER_PAD = bytes(b ^ 0x5C for b in range(256))


class KeyedSha256:
    """``hmac.digest(key, data, "sha256")`` for one key, cheaper per digest."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\x00")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))

    def __repr__(self) -> str:
        return "KeyedSha256(<key hidden>)"

    # The pad states are never updated after __init__ (each digest works on copies), so
    # a copy may be the object itself: `copy.deepcopy` and `dataclasses.asdict` of what
    # holds one keep working, where hash states themselves cannot be copied that way.
    def __copy__(self) -> KeyedSha256:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> KeyedSha256:
        return self

    def digest(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, data: bytes) -> str:
        return self.digest(data).hex()
