"""The SQLite file behind the embedded stores: connections, WAL, busy waits, migrations.

One `SQLiteDatabase` is shared by the vault, the consent store and the kill switch so a
guard holds one set of connections to one file. Every thread gets its own connection
(SQLite connections must not be used by two threads at once), every connection waits
for locks held by other processes instead of failing at once, and the file is in WAL
mode so readers never wait for a writer. Writes that must be atomic across processes
run in ``BEGIN IMMEDIATE`` transactions.

The schema is versioned in ``aiguard_schema``; `MIGRATIONS` only ever grows, and
opening a file applies the migrations it lacks in one transaction.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import AIGuardError, StoreError
from ._faults import translating

__all__ = [
    "MIGRATIONS",
    "Migration",
    "SQLiteDatabase",
    "SchemaError",
    "migrate",
]


class SchemaError(StoreError, sqlite3.DatabaseError):
    """The file's schema is newer than this aiguard, or not an aiguard database at all."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step of the schema; statements run in a single transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "vault entries, consent records, revocations, metadata",
        (
            """CREATE TABLE aiguard_meta (
                name  TEXT PRIMARY KEY,
                value BLOB NOT NULL
            )""",
            # scope is Scope.key; the blind index is an HMAC, never the value itself.
            """CREATE TABLE aiguard_vault_entry (
                scope       TEXT    NOT NULL,
                token       TEXT    NOT NULL,
                blind_index BLOB    NOT NULL,
                kind        TEXT    NOT NULL,
                key_version INTEGER NOT NULL,
                nonce       BLOB    NOT NULL,
                ciphertext  BLOB    NOT NULL,
                created_at  TEXT    NOT NULL,
                PRIMARY KEY (scope, token),
                UNIQUE (scope, blind_index)
            )""",
            # Append-only: seq orders the records the way they were written.
            """CREATE TABLE aiguard_consent (
                seq           INTEGER PRIMARY KEY AUTOINCREMENT,
                record_id     TEXT NOT NULL UNIQUE,
                action        TEXT NOT NULL CHECK (action IN ('grant', 'withdraw')),
                subject       TEXT NOT NULL,
                purpose       TEXT NOT NULL,
                tenant        TEXT,
                at            TEXT NOT NULL,
                expires_at    TEXT,
                terms_version TEXT,
                proof         TEXT NOT NULL
            )""",
            "CREATE INDEX aiguard_consent_by_subject ON aiguard_consent (subject, purpose, seq)",
            """CREATE TABLE aiguard_revocation (
                destination TEXT PRIMARY KEY,
                reason      TEXT NOT NULL,
                at          TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "vault entries carry a keyed subject reference, so a subject's entries can be erased",
        (
            # NULL for entries written by version 1: their subject was never stored.
            "ALTER TABLE aiguard_vault_entry ADD COLUMN subject_ref BLOB",
            "CREATE INDEX aiguard_vault_by_subject ON aiguard_vault_entry (subject_ref)"
            " WHERE subject_ref IS NOT NULL",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_SCHEMA_TABLE = """CREATE TABLE IF NOT EXISTS aiguard_schema (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)"""


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest applied migration, 0 for a file aiguard has never opened."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aiguard_schema'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM aiguard_schema").fetchone()
    return int(row[0])


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    target: int | None = None,
) -> int:
    """Apply the migrations the file lacks, up to ``target`` (default: all); returns the version.

    Runs under ``BEGIN IMMEDIATE`` so two processes opening a new file at once do not
    both create the tables; the loser waits, then finds nothing left to do.
    """
    known = migrations[-1].version if migrations else 0
    goal = known if target is None else target
    current = schema_version(conn)
    _refuse_newer(current, known)
    if current >= goal:
        # The common case: nothing to do, and no write lock taken to find that out.
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_SCHEMA_TABLE)
        current = schema_version(conn)
        _refuse_newer(current, known)
        for step in migrations:
            if current < step.version <= goal:
                for statement in step.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO aiguard_schema (version, description, applied_at) "
                    "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    (step.version, step.description),
                )
                current = step.version
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current


def _refuse_newer(current: int, known: int) -> None:
    if current > known:
        raise SchemaError(
            f"the database has schema version {current}, but this aiguard knows versions up "
            f"to {known}; upgrade aiguard (it never downgrades a schema)"
        )


class SQLiteDatabase:
    """One SQLite file: a connection per thread, WAL mode, migrated on open.

    ``timeout`` is how long a write waits for another process's lock before failing.
    ``synchronous="FULL"`` (the default) makes every commit durable before it returns,
    so an acknowledged consent withdrawal or revocation survives a power cut;
    ``"NORMAL"`` is faster and still never corrupts the file.

    A file that cannot be opened, created, locked or read raises `StoreError` naming
    the path, what to fix and ``key``, the policy key that names the file; the stores
    translate their faults at call time the same way (`guarded`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        key: str = "database",
    ) -> None:
        if os.fspath(path) in {"", ":memory:"} or os.fspath(path).startswith("file:"):
            raise ValueError(
                "SQLiteDatabase needs a file path shared by every thread and process; "
                "for throwaway state use the in-memory stores instead"
            )
        if synchronous not in {"FULL", "NORMAL"}:
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self.path = Path(path)
        self.timeout = timeout
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pid = os.getpid()
        self._connections: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        # Connections inherited through fork() must never be used or closed by the
        # child (SQLite's rule); keeping a reference stops the GC from closing them.
        self._inherited: list[sqlite3.Connection] = []
        self._closed = False
        self.key = key
        try:
            with self.guarded(StoreError, "open the database"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = self.connection()
                self._enable_wal(conn)
                self.version = migrate(conn)
        except BaseException:
            self.close()  # no connection (and no file handle) outlives a failed open
            raise

    @contextmanager
    def guarded(self, error: type[AIGuardError], operation: str) -> Iterator[None]:
        """A block whose file and SQLite faults raise ``error`` naming this file."""
        with translating(
            error,
            component="the aiguard database",
            target=os.fspath(self.path),
            operation=operation,
            key=self.key,
        ):
            yield

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        if self._pid != os.getpid():
            self._after_fork()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise sqlite3.ProgrammingError(f"the aiguard database {self.path} was closed")
        # check_same_thread=False only so close() can run from another thread; each
        # connection is otherwise used by the thread that opened it alone.
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        current = threading.current_thread()
        with self._lock:
            self._prune_dead_threads()
            self._connections[current.ident or 0] = (current, conn)
        self._local.conn = conn
        return conn

    def probe(
        self,
        error: type[AIGuardError],
        operation: str,
        write: tuple[str, tuple[Any, ...]],
        read: tuple[str, tuple[Any, ...]],
    ) -> None:
        """Write a row and read it back in a transaction that is always rolled back.

        What `aiguard doctor` runs: the write takes the file's write lock and needs the
        disk, so locks, permissions and a full disk show up; the rollback means no
        other connection ever sees the row.
        """
        with self.guarded(error, operation):
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(*write)
                row = conn.execute(*read).fetchone()
            finally:
                conn.execute("ROLLBACK")
        if row is None:
            raise error(f"{self.path}: a probe row written could not be read back")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the file's write lock from its first statement.

        ``BEGIN IMMEDIATE`` rather than a deferred transaction: a read-then-write
        (check for a token, then insert it) must not interleave with another process
        doing the same, and upgrading a read lock later could fail with SQLITE_BUSY.
        """
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened (other processes are unaffected)."""
        with self._lock:
            self._closed = True
            connections = [conn for _thread, conn in self._connections.values()]
            self._connections.clear()
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        enable_wal(conn, self.path, self.timeout)

    def _prune_dead_threads(self) -> None:
        for ident, (thread, conn) in list(self._connections.items()):
            if not thread.is_alive():
                del self._connections[ident]
                conn.close()

    def _after_fork(self) -> None:
        # A fresh lock: another thread of the parent may have held the old one at fork.
        self._lock = threading.Lock()
        self._inherited.extend(conn for _thread, conn in self._connections.values())
        self._connections.clear()
        self._local = threading.local()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"SQLiteDatabase({os.fspath(self.path)!r}, version={self.version})"


def enable_wal(conn: sqlite3.Connection, path: object, timeout: float) -> None:
    """Put the database in WAL mode; raises `sqlite3.OperationalError` when it cannot."""
    # Switching the journal mode needs a moment with no other connection active and
    # does not always go through the busy handler, so retry for up to ``timeout``.
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            # Only a lock is worth waiting for; a full disk or a read-only file is not.
            text = str(exc).lower()
            if time.monotonic() >= deadline or not ("locked" in text or "busy" in text):
                raise
            time.sleep(0.01)
            continue
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(
                f"{path} could not be switched to WAL mode (got {mode!r}); "
                "WAL needs a local file system that supports shared memory"
            )
        return
