"""Turning an I/O, SQLite or PostgreSQL fault into a typed error that says what to fix.

Every store, sink and key provider routes the faults of its file or server through
`store_fault`: the error is the component's own `AIGuardError` subclass, its message
names the path or DSN (password masked), the operation, what to do and the policy key
that configures the component, and the original exception stays as ``__cause__``.

What goes into the message is chosen so that no stored value can leak: OS errors and
SQLite errors are quoted (they name paths and conditions, never bound parameters);
PostgreSQL errors by class and SQLSTATE only, except connection failures, which come
from libpq before any statement ran. For the same reason a PostgreSQL error that could
quote a parameter (anything but a connection, timeout or resource fault) is not kept
as ``__cause__``.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import AIGuardError

__all__ = [
    "FAULTS",
    "PROBE",
    "hint",
    "mask_dsn",
    "prepare_file_location",
    "probe_name",
    "store_fault",
    "translating",
]

E = TypeVar("E", bound=AIGuardError)

#: What the stores translate; anything else (a bug) propagates unchanged.
FAULTS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error)

#: Scope, subject, destination and log name of `aiguard doctor`'s probe rows (never
#: committed: see `SQLiteDatabase.probe`).
PROBE = "aiguard-doctor-probe"


def prepare_file_location(path: Path) -> None:
    """Create ``path``'s directory, and refuse a directory standing where the file goes
    (an `OSError`, for `translating` to name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))


def probe_name() -> str:
    """A fresh probe identifier, so two doctors running at once never collide."""
    import secrets

    return f"{PROBE}-{secrets.token_hex(6)}"


_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***`` (URL and ``key=value`` forms)."""
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
        except ValueError:
            return "<unparsable DSN>"
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{host}"
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _KV_PASSWORD.sub(r"\1***", dsn)


_ERRNO_HINTS = {
    errno.EACCES: "permission denied: make it writable by this process's user, or choose "
    "another location",
    errno.EPERM: "operation not permitted: make it writable by this process's user, or "
    "choose another location",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.ENOENT: "a parent directory does not exist: create it, or fix the path",
    errno.ENOTDIR: "a component of the path is a file, not a directory: fix the path",
    errno.EISDIR: "the path is a directory: name a file inside it instead",
    errno.EEXIST: "a file is in the way where a directory is needed (not a directory): "
    "remove it, or fix the path",
    errno.ENOSPC: "the disk is full: free space on it, or choose another location",
    errno.EDQUOT: "the disk quota is exceeded: free space, or choose another location",
    errno.EIO: "the disk reported an I/O error: check the device",
    errno.EAGAIN: "another process holds its lock: stop it, or give this one its own file",
}


def _sqlite_hint(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "the database is locked by another process: stop the process holding it"
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return "the file is not a valid aiguard database (damaged or another file): restore it"
    if "full" in text:
        return "the disk is full: free space on it, or choose another location"
    if "readonly" in text or "read-only" in text:
        return "the database is read-only: make the file and its directory writable"
    if "unable to open" in text:
        return (
            "the file cannot be opened: check that its directory exists, is writable, "
            "and that the path is not a directory"
        )
    if "disk i/o" in text:
        return "the disk reported an I/O error (or is full, or read-only): check the device"
    return f"SQLite failed: {exc}"


def hint(exc: BaseException) -> str:
    """What to fix, from the fault itself."""
    if isinstance(exc, OSError) and exc.errno in _ERRNO_HINTS:
        return _ERRNO_HINTS[exc.errno]
    if isinstance(exc, TimeoutError):
        return "it did not answer in time: check that the server is up and reachable"
    if isinstance(exc, ConnectionError):
        return "the connection failed: check that the server is up and reachable"
    if isinstance(exc, sqlite3.Error):
        return _sqlite_hint(exc)
    pg = _pg_hint(exc)
    if pg is not None:
        return pg
    if isinstance(exc, OSError):
        return f"{exc.strerror or type(exc).__name__}"
    if isinstance(exc, ValueError | AIGuardError):
        return str(exc)
    return type(exc).__name__


def _pg_hint(exc: BaseException) -> str | None:
    module = type(exc).__module__
    if not (module.startswith(("psycopg", "psycopg_pool"))):
        return None
    name = type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    if name == "PoolTimeout":
        return (
            "no connection could be made or was free within the connect timeout: check "
            "that the server is up, reachable and answering, and that the pool is not "
            "exhausted by long calls"
        )
    if name == "QueryCanceled" or state == "57014":
        return (
            "a statement ran past the statement timeout (a lock held by another session, "
            "or an overloaded server)"
        )
    if name == "ConnectionTimeout":
        return (
            "the server did not answer within the connect timeout: check that it is up, "
            "reachable and not overloaded"
        )
    if state is None and any(c.__name__ == "OperationalError" for c in type(exc).__mro__):
        # libpq's own text: host, port and the socket error, never a parameter.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else name
        return f"libpq: {first}; check that the server is up and reachable"
    return f"PostgreSQL failed ({name}" + (f", SQLSTATE {state}" if state else "") + ")"


def _keeps_cause(exc: BaseException) -> bool:
    module = type(exc).__module__
    if module.startswith("psycopg"):
        state = getattr(exc, "sqlstate", None) or ""
        # Connection, resource, operator-intervention (timeouts) and pool faults only.
        return state[:2] in {"", "08", "53", "57", "58"}
    return True


def store_fault(
    error: type[E],
    exc: BaseException,
    *,
    component: str,
    target: str,
    operation: str,
    key: str,
) -> E:
    """The typed error for ``exc``; raise it ``from`` the returned value's ``__cause__``.

    ``component`` is what failed ("the vault database"), ``target`` its path or masked
    DSN, ``operation`` what it was doing ("open", "issue a token"), ``key`` the policy
    key that names it ("database", "[keys] dsn").
    """
    if isinstance(exc, AIGuardError) and isinstance(exc, error):
        return exc
    message = (
        f"{component} {target}: cannot {operation}: {hint(exc)}. "
        f"It is configured by the policy key {key}."
    )
    out = error(message)
    out.__cause__ = exc if _keeps_cause(exc) else None
    out.__suppress_context__ = True
    return out


@contextmanager
def translating(
    error: type[AIGuardError],
    *,
    component: str,
    target: str,
    operation: str,
    key: str,
    catch: tuple[type[BaseException], ...] = FAULTS,
) -> Iterator[None]:
    """Run a block whose faults (``catch``) become ``error`` (see `store_fault`)."""
    try:
        yield
    except AIGuardError:
        raise
    except catch as exc:
        raise store_fault(
            error, exc, component=component, target=target, operation=operation, key=key
        ) from (exc if _keeps_cause(exc) else None)
