"""Root keys: where the key that wraps every other vault key comes from.

The vault never stores a usable key in the clear. Its hierarchy is

    root key (a `KeyProvider`)          wraps   per-tenant KEKs, blind-index and token keys
    tenant KEK (random, versioned)      wraps   per-subject and per-scope DEKs (random)
    DEK (random, versioned)             encrypts the originals (AES-256-GCM-SIV)

A `KeyProvider` only has to wrap and unwrap small keys, which is exactly what a KMS
``Encrypt`` / ``Decrypt`` (or Vault Transit) call does, so the root key never has to
leave it. The built-ins hold the root key in process memory: a key file
(`LocalKeyFileProvider`) or an environment variable (`EnvKeyProvider`). See docs/keys.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import KeyProviderError

__all__ = [
    "ROOT_KEY_BYTES",
    "EnvKeyProvider",
    "KeyProvider",
    "KeyProviderError",
    "LocalKeyFileProvider",
    "SecretKeyProvider",
]

ROOT_KEY_BYTES = 32
_WRAP_FORMAT = b"\x01"


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps the vault's keys with a root key it keeps to itself.

    ``context`` is associated data naming the wrapped key (tenant, purpose, owner,
    version): a wrapped key copied to another row does not unwrap. ``key_id`` names
    the root key without revealing it; it is stored beside each wrapped key so a
    rotation can tell which keys still need re-wrapping.
    """

    @property
    def key_id(self) -> str: ...

    def wrap(self, key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, context: bytes) -> bytes: ...


class SecretKeyProvider:
    """A root key held in memory (the base of the file and environment providers).

    The wrapping key is an HMAC of the root key under its own label, so the same
    secret can also feed other purpose-separated keys without any two coinciding.
    """

    def __init__(self, root: bytes, *, label: str = "secret") -> None:
        if not isinstance(root, bytes) or len(root) != ROOT_KEY_BYTES:
            raise KeyProviderError(f"a root key must be exactly {ROOT_KEY_BYTES} bytes")
        wrap_key = hmac.new(root, b"aiguard/v2/root-wrap", hashlib.sha256).digest()
        self._aead = AESGCM(wrap_key)
        fingerprint = hmac.new(root, b"aiguard/v2/root-id", hashlib.sha256).hexdigest()[:16]
        self._key_id = f"{label}:{fingerprint}"
        self._derive_key = hmac.new(root, b"aiguard/v2/derive", hashlib.sha256).digest()

    @property
    def key_id(self) -> str:
        return self._key_id

    def derive_secret(self, label: str) -> bytes:
        """A 32-byte secret for ``label``, the same in every process holding this root
        key (the guard's event-digest and pseudonym keys come from one)."""
        return hmac.new(self._derive_key, label.encode(), hashlib.sha256).digest()

    def wrap(self, key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return _WRAP_FORMAT + nonce + self._aead.encrypt(nonce, key, context)

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        if len(blob) < 1 + 12 + 16 or blob[:1] != _WRAP_FORMAT:
            raise KeyProviderError("a stored key is malformed; the key table may be damaged")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], context)
        except InvalidTag:
            raise KeyProviderError(
                "a stored key does not unwrap with this root key: the root key is not the one "
                "the vault was written with, or the key table was tampered with"
            ) from None

    def __repr__(self) -> str:  # never the key itself
        return f"{type(self).__name__}(key_id={self._key_id!r})"


class LocalKeyFileProvider(SecretKeyProvider):
    """The root key in a file: created with mode 0600 on first use, refused when others can read it.

    A group- or world-accessible key file is an error, not a warning: anyone who can
    read it can unwrap every key in the vault. A file of the wrong size is an error
    too, never a reason to create a new key (that would orphan every stored key).
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        if create and not self.path.exists():
            from .keyfile import load_or_create_key

            load_or_create_key(self.path, key="[keys] file")
        try:
            secret = _read_private(self.path)
        except OSError as exc:
            from ..storage._faults import store_fault

            raise store_fault(
                KeyProviderError,
                exc,
                component="the root key file",
                target=os.fspath(self.path),
                operation="read the root key",
                key="[keys] file",
            ) from exc
        super().__init__(secret, label="file")


class EnvKeyProvider(SecretKeyProvider):
    """The root key in an environment variable, base64 or hex (64 digits) encoded.

    Fits containers whose orchestrator injects secrets as variables. The variable
    is read once; a missing or malformed one is an error naming the variable only.
    """

    def __init__(self, variable: str = "AIGUARD_ROOT_KEY") -> None:
        raw = os.environ.get(variable)
        if not raw:
            raise KeyProviderError(
                f"environment variable {variable} is not set; set it to a base64-encoded "
                f"{ROOT_KEY_BYTES}-byte key (e.g. `openssl rand -base64 32`), or name another "
                "variable with the policy key [keys] env"
            )
        super().__init__(_decode_key(raw.strip(), f"environment variable {variable}"), label="env")
        self.variable = variable


_ENV_FIX = (
    f"set it to a base64-encoded {ROOT_KEY_BYTES}-byte key (e.g. `openssl rand -base64 32`) or "
    f"64 hex digits. It is configured by the policy key [keys] env"
)


def _decode_key(text: str, where: str) -> bytes:
    if len(text) == 2 * ROOT_KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyProviderError(f"{where} is neither base64 nor hex; {_ENV_FIX}") from None
    if len(key) != ROOT_KEY_BYTES:
        raise KeyProviderError(
            f"{where} decodes to {len(key)} bytes, not a {ROOT_KEY_BYTES}-byte key; {_ENV_FIX}"
        )
    return key


def _read_private(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(ROOT_KEY_BYTES + 1)
    except FileNotFoundError:
        raise KeyProviderError(
            f"key file {path} does not exist; restore it, or fix the policy key [keys] file"
        ) from None
    if sys.platform != "win32" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyProviderError(
            f"key file {path} is accessible to other users; run `chmod 600 {path}` "
            "(aiguard refuses a root key others could read). It is configured by the policy "
            "key [keys] file."
        )
    if len(data) != ROOT_KEY_BYTES:
        raise KeyProviderError(
            f"key file {path} holds {len(data)} bytes, not a {ROOT_KEY_BYTES}-byte key; restore "
            "the original (a new key would make every stored key unreadable). It is "
            "configured by the policy key [keys] file."
        )
    return data
