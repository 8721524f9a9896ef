"""A provenance sink that stores records in a SQLite file.

Each record's exact canonical bytes go into a ``BLOB`` column, never re-encoded, next to
its log name, sequence number, digest and a few columns for querying. ``(log, seq)`` is
the primary key, so two writers cannot both place a record at one position. The file is
in WAL mode and every batch is one ``BEGIN IMMEDIATE`` transaction, committed with
``synchronous=FULL`` by default: once ``emit``/``emit_batch`` returns, the records
survive a crash or power cut. SQLite transactions are atomic, so there is no torn
record to repair on restart; `head` gives a restarted log the record to continue from.

One SQLite file can hold several logs. Only one `ProvenanceLog` may write a given log:
a record that does not link to the stored head is refused (see `Placement`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import ProvenanceError
from ..storage._faults import probe_name, translating
from ._stored import Placement, record_fields, record_from_stored
from .chain import EventRecord

__all__ = ["SqliteSink", "read_sqlite"]

SCHEMA_VERSION = 1

# Own tables and own version table, so the sink can share a file with the embedded
# stores (aiguard.storage.sqlite) without the two migration histories colliding.
_SCHEMA_TABLE = """CREATE TABLE IF NOT EXISTS aiguard_provenance_schema (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)"""

_MIGRATION_1 = (
    """CREATE TABLE aiguard_provenance_event (
        log    TEXT    NOT NULL,
        seq    INTEGER NOT NULL,
        digest TEXT    NOT NULL,
        prev   TEXT    NOT NULL,
        type   TEXT,
        time   TEXT,
        line   BLOB    NOT NULL,  -- the exact bytes that were hashed
        PRIMARY KEY (log, seq)
    )""",
    # Finds the last checkpoint at once when a signed log resumes.
    """CREATE INDEX aiguard_provenance_checkpoint ON aiguard_provenance_event (log, seq)
        WHERE type = 'checkpoint'""",
)


class SqliteSink:
    """Stores every record in the SQLite file at ``path`` (created if missing).

    ``log`` names the log that `head` resumes; leave it None when the file holds a
    single log. ``required`` tells the log whether a failure here fails the call closed.
    ``synchronous="NORMAL"`` trades durability of the last commits on power loss for
    speed (the file is never corrupted either way).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        log: str | None = None,
        required: bool = True,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        timeout: float = 10.0,
        key: str = "[[provenance.sinks]] path",
    ) -> None:
        if os.fspath(path) in {"", ":memory:"}:
            raise ValueError("SqliteSink needs a file path; use InMemorySink for tests")
        if synchronous not in {"FULL", "NORMAL"}:
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self.path = Path(path)
        self.log = log
        self.required = required
        self.timeout = timeout
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._pid = os.getpid()
        # Connections inherited through fork() are kept, never used or closed: closing
        # them in the child would release locks the parent still relies on.
        self._inherited: list[sqlite3.Connection] = []
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self.key = key
        try:
            with self._lock, self._faults("open the database"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = self._connection()
                _enable_wal(conn, self.path, timeout)
                _migrate(conn)
        except BaseException:
            self.close()  # no connection (and no file handle) outlives a failed open
            raise

    def _faults(self, operation: str) -> Any:
        return translating(
            ProvenanceError,
            component="the SQLite provenance sink",
            target=os.fspath(self.path),
            operation=operation,
            key=self.key,
        )

    # -- connection --------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            if self._conn is not None:
                self._inherited.append(self._conn)
            self._conn = None
            self._lock = threading.Lock()
            self._pid = os.getpid()
        if self._closed:
            raise ProvenanceError(f"the SQLite provenance sink {self.path} was closed")
        if self._conn is None:
            # One connection guarded by self._lock; check_same_thread=False because the
            # log's writer and close() may run on different threads.
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            self._conn = conn
        return self._conn

    # -- Sink ----------------------------------------------------------------------

    def emit(self, record: EventRecord) -> None:
        self.emit_batch((record,))

    def emit_batch(self, records: Sequence[EventRecord]) -> None:
        """Store the records in one transaction: all of them are kept, or none."""
        if not records:
            return
        rows = []
        for record in records:
            log, seq, prev, digest = record_fields(record)
            if self.log is not None and log != self.log:
                raise ProvenanceError(
                    f"{self.path}: this sink is for log {self.log!r}, not {log!r}"
                )
            rows.append((log, seq, prev, digest, record))
        with self._lock, self._faults("store records"):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                heads: dict[str, tuple[int, str | None]] = {}
                for log, seq, prev, digest, record in rows:
                    if log not in heads:
                        heads[log] = _head_of(conn, log)
                    size, last = heads[log]
                    stored = None
                    if seq < size:
                        row = conn.execute(
                            "SELECT line FROM aiguard_provenance_event WHERE log = ? AND seq = ?",
                            (log, seq),
                        ).fetchone()
                        stored = None if row is None else bytes(row[0])
                    placement = Placement.decide(
                        record, seq, prev, size, last, stored, str(self.path)
                    )
                    if placement == Placement.REPEAT:
                        continue
                    document = record.document
                    conn.execute(
                        "INSERT INTO aiguard_provenance_event "
                        "(log, seq, digest, prev, type, time, line) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            log,
                            seq,
                            digest,
                            prev,
                            _text(document.get("type")),
                            _text(document.get("time")),
                            record.line,
                        ),
                    )
                    heads[log] = (seq + 1, digest)
                conn.execute("COMMIT")
            except BaseException:
                # The transaction may be gone already; the original error matters.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    def probe(self) -> None:
        """Write a record row and read it back in a rolled-back transaction (`aiguard
        doctor`). The row is in a log of its own name and never committed, so no log's
        chain sees it."""
        name = probe_name()
        with self._lock, self._faults("write and read back a probe record"):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO aiguard_provenance_event (log, seq, digest, prev, type, time, "
                    "line) VALUES (?, 0, ?, ?, 'probe', NULL, x'7b7d')",
                    (name, name, name),
                )
                row = conn.execute(
                    "SELECT 1 FROM aiguard_provenance_event WHERE log = ? AND seq = 0", (name,)
                ).fetchone()
            finally:
                conn.execute("ROLLBACK")
        if row is None:
            raise ProvenanceError(f"{self.path}: a probe record could not be read back")

    def head(self) -> EventRecord | None:
        """The last stored record of this sink's log, so a restarted log continues it."""
        with self._lock, self._faults("read the last record"):
            conn = self._connection()
            log = self.log if self.log is not None else _only_log(conn, str(self.path))
            if log is None:
                return None
            row = conn.execute(
                "SELECT seq, line FROM aiguard_provenance_event WHERE log = ? "
                "ORDER BY seq DESC LIMIT 1",
                (log,),
            ).fetchone()
        if row is None:
            return None
        return record_from_stored(bytes(row[1]), int(row[0]), log)

    def tail_from_checkpoint(self) -> list[EventRecord]:
        """Records from the last checkpoint (inclusive, or genesis) to the end.

        A resumed log with a signer rebuilds its Merkle frontier from these.
        """
        with self._lock, self._faults("read the last checkpoint"):
            conn = self._connection()
            log = self.log if self.log is not None else _only_log(conn, str(self.path))
            if log is None:
                return []
            row = conn.execute(
                "SELECT MAX(seq) FROM aiguard_provenance_event "
                "WHERE log = ? AND type = 'checkpoint'",
                (log,),
            ).fetchone()
            start = 0 if row is None or row[0] is None else int(row[0])
            rows = conn.execute(
                "SELECT seq, line FROM aiguard_provenance_event WHERE log = ? AND seq >= ? "
                "ORDER BY seq",
                (log, start),
            ).fetchall()
        return [record_from_stored(bytes(line), int(seq), log) for seq, line in rows]

    def flush(self) -> None:
        # Every emit commits before returning; there is nothing buffered to flush.
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"SqliteSink({os.fspath(self.path)!r}, log={self.log!r})"


def read_sqlite(path: str | os.PathLike[str], log: str | None = None) -> Iterator[EventRecord]:
    """The records of ``log`` (or of the file's only log) in seq order, streamed.

    Reads inside one transaction, so a writer appending meanwhile does not change what
    is returned (WAL gives the reader a snapshot). The file is opened read-only.
    """
    target = Path(path)
    if not target.exists():
        raise FileNotFoundError(f"no SQLite provenance file at {target}")
    conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aiguard_provenance_event'"
        ).fetchone()
        if exists is None:
            raise ProvenanceError(f"{target} holds no aiguard provenance log")
        name = log if log is not None else _only_log(conn, str(target))
        if name is None:
            return
        cursor = conn.execute(
            "SELECT seq, line FROM aiguard_provenance_event WHERE log = ? ORDER BY seq", (name,)
        )
        for seq, line in cursor:
            yield record_from_stored(bytes(line), int(seq), name)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _head_of(conn: sqlite3.Connection, log: str) -> tuple[int, str | None]:
    row = conn.execute(
        "SELECT seq, digest FROM aiguard_provenance_event WHERE log = ? ORDER BY seq DESC LIMIT 1",
        (log,),
    ).fetchone()
    if row is None:
        return 0, None
    return int(row[0]) + 1, str(row[1])


def _only_log(conn: sqlite3.Connection, where: str) -> str | None:
    # Two index seeks rather than SELECT DISTINCT, which would scan a large table.
    first = conn.execute("SELECT log FROM aiguard_provenance_event ORDER BY log LIMIT 1").fetchone()
    if first is None:
        return None
    other = conn.execute(
        "SELECT log FROM aiguard_provenance_event WHERE log > ? ORDER BY log LIMIT 1", (first[0],)
    ).fetchone()
    if other is not None:
        raise ProvenanceError(
            f"{where} holds several logs; name the one to use (`[provenance] log` in the "
            "policy, `--log-name` on the command line, log=... in code)"
        )
    return str(first[0])


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _migrate(conn: sqlite3.Connection) -> None:
    # BEGIN IMMEDIATE: two processes opening a new file at once must not both create
    # the tables; the second waits for the first, then finds nothing to do.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_SCHEMA_TABLE)
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM aiguard_provenance_schema")
        current = int(row.fetchone()[0])
        if current > SCHEMA_VERSION:
            raise ProvenanceError(
                f"the provenance tables have schema version {current}, newer than this "
                f"aiguard ({SCHEMA_VERSION}); upgrade aiguard"
            )
        if current < 1:
            for statement in _MIGRATION_1:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO aiguard_provenance_schema (version, description, applied_at) "
                "VALUES (1, 'provenance records', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _enable_wal(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    from ..storage.sqlite import enable_wal

    enable_wal(conn, path, timeout)
