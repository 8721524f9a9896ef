"""The key file: one 32-byte secret that every process sharing a database reads.

Processes that share a SQLite vault must derive the same vault keys (or one process's
tokens would be unreadable to the next) and the same event-digest keys (or the same
subject would get different digests in the log). The secret lives in ``aiguard.key``
beside the database, readable by its owner only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import sys
import warnings
from pathlib import Path

from ..errors import KeyProviderError
from ..storage._faults import translating

__all__ = ["KEY_BYTES", "load_or_create_key"]

KEY_BYTES = 32


def load_or_create_key(
    path: str | os.PathLike[str], *, key: str = "database (aiguard.key beside it)"
) -> bytes:
    """Read the secret in ``path``, creating it (mode 0600) when the file does not exist.

    Creation is atomic: the secret is written to a private temporary file, then linked
    into place, so a process racing this one either wins or reads the complete winner's
    key, never a half-written one. A key file of the wrong size is an error, not a
    reason to make a new key: a new key would make every existing token unreadable.
    Any fault raises `KeyProviderError` naming the file and ``key``, the policy key
    that puts it there.
    """
    target = Path(path)
    with translating(
        KeyProviderError,
        component="the key file",
        target=os.fspath(target),
        operation="read or create the key",
        key=key,
    ):
        return _load_or_create(target, key)


def _load_or_create(target: Path, key: str) -> bytes:
    try:
        return _read(target, key)
    except FileNotFoundError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process got there first
            os.link(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return _read(target, key)


def _read(path: Path, key: str) -> bytes:
    with open(path, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        data = handle.read(KEY_BYTES + 1)
    if len(data) != KEY_BYTES:
        raise KeyProviderError(
            f"the key file {path}: cannot read the key: it holds {len(data)} bytes, not a "
            f"{KEY_BYTES}-byte aiguard key (damaged or another file): restore the original key "
            "file (a new key would make every existing token unreadable). It is configured by "
            f"the policy key {key}."
        )
    if sys.platform != "win32" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            f"{path} is readable by other users; run `chmod 600 {path}`",
            stacklevel=3,
        )
    return data
