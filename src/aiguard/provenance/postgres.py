"""A provenance sink in PostgreSQL that several processes and hosts can append to.

Tables (``{prefix}`` defaults to ``aiguard``):

* ``{prefix}_provenance_event``: one row per record, ``PRIMARY KEY (log, seq)``, the exact
  canonical bytes that were hashed in ``record bytea``. Verification reads only these
  bytes. ``document jsonb`` is a copy for querying; jsonb reorders keys and normalizes
  values, so it is never used to rebuild a record.
* ``{prefix}_provenance_head``: one row per log (size and last digest). Appending locks
  this row (``SELECT ... FOR UPDATE``), which serializes the writers of one log across
  processes and hosts while writers of other logs proceed.
* ``{prefix}_provenance_schema``: the schema version, so a later aiguard can migrate.

`PostgresSink.append_unsealed` is the shared-log path (`SequencingSink`): the database
decides each record's position under the head lock and the caller's ``seal`` turns the
document into a record there. ``emit``/``emit_batch``/``head`` make it usable as a plain
mirror of a log whose positions a `ProvenanceLog` assigns.

psycopg 3 is imported when a sink is created: ``pip install "aiguard[postgres]"``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ProvenanceError
from ..storage._faults import mask_dsn, probe_name, store_fault
from ._stored import Placement, record_fields, record_from_stored, sealed_check
from .chain import GENESIS_PREV, EventRecord, Sealer, rfc3339_now, uuid7
from .events import SCHEMA

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresSink", "read_postgres"]

SCHEMA_VERSION = 1
_T = TypeVar("_T")
_log = logging.getLogger("aiguard.provenance")
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,39}")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the PostgreSQL provenance sink needs psycopg 3: pip install "aiguard[postgres]"'
        ) from exc
    return psycopg


class _Tables:
    def __init__(self, prefix: str) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(
                "table_prefix must be a lowercase SQL identifier "
                "(letters, digits, underscores; at most 40 characters)"
            )
        # Names are validated above, so formatting them into SQL cannot inject anything.
        self.event = f"{prefix}_provenance_event"
        self.head = f"{prefix}_provenance_head"
        self.schema = f"{prefix}_provenance_schema"
        self.lock_key = f"aiguard.provenance.schema:{prefix}"


class PostgresSink:
    """Stores records in PostgreSQL; one connection per sink, guarded by a lock.

    ``log`` names the log that `head` resumes (None: the tables' only log).
    A broken connection is replaced on the next use; a write that fails raises
    `ProvenanceError` and is never dropped silently. When the connection dies while a
    commit is in flight, the outcome is unknown and the error says so: ``emit`` of the
    same record again is then safe (an identical stored record counts as stored).
    """

    def __init__(
        self,
        dsn: str,
        *,
        log: str | None = None,
        required: bool = True,
        table_prefix: str = "aiguard",
        connect_timeout: float = 5.0,
        statement_timeout: float | None = 5.0,
        key: str = "[[provenance.sinks]] dsn",
    ) -> None:
        self._pg = _psycopg()
        self.dsn = dsn
        self.log = log
        self.required = required
        self.table_prefix = table_prefix
        self._t = _Tables(table_prefix)
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self.key = key
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()
        # Connections inherited through fork() are kept but never used or closed:
        # closing one in the child would end the parent's session on the server.
        self._inherited: list[psycopg.Connection[Any]] = []
        self._closed = False
        self._transact(self._migrate)

    # -- connection --------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._pid != os.getpid():
            if self._conn is not None:
                self._inherited.append(self._conn)
            self._conn = None
            self._pid = os.getpid()
        if self._closed:
            raise ProvenanceError("the PostgreSQL provenance sink was closed")
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken):
            self._discard()
            conn = None
        if conn is None:
            try:
                conn = self._pg.connect(
                    self.dsn,
                    autocommit=False,
                    connect_timeout=max(2, round(self._connect_timeout)),
                    application_name="aiguard-provenance",
                )
                if self._statement_timeout is not None and "statement_timeout" not in self.dsn:
                    # Milliseconds formatted from a float: nothing to inject.
                    millis = max(1, int(self._statement_timeout * 1000))
                    conn.execute(f"SET statement_timeout = {millis}")
                    conn.commit()
            except self._pg.Error as exc:
                raise self._fault(exc, "connect") from exc
            self._conn = conn
        assert conn is not None
        return conn

    def probe(self) -> None:
        """Write a record row and read it back in a rolled-back transaction (`aiguard
        doctor`); the row names a log of its own and is never committed."""
        name = probe_name()
        t = self._t
        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        f"INSERT INTO {t.event} (log, seq, digest, prev, type, record) "
                        "VALUES (%s, 0, %s, %s, 'probe', %s)",
                        (name, name, name, b"{}"),
                    )
                    cur.execute(f"SELECT 1 FROM {t.event} WHERE log = %s AND seq = 0", (name,))
                    row = cur.fetchone()
            except self._pg.Error as exc:
                self._rollback(conn)
                raise self._fault(exc, "write and read back a probe record") from exc
            self._rollback(conn)
        if row is None:
            raise ProvenanceError(f"{mask_dsn(self.dsn)}: a probe record could not be read back")

    def _fault(self, exc: BaseException, operation: str) -> ProvenanceError:
        return store_fault(
            ProvenanceError,
            exc,
            component="the PostgreSQL provenance sink",
            target=mask_dsn(self.dsn),
            operation=operation,
            key=self.key,
        )

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Already unusable; a new connection replaces it.
            with contextlib.suppress(self._pg.Error):
                conn.close()

    def _transact(self, work: Callable[[psycopg.Cursor[Any]], _T]) -> _T:
        """Run ``work`` in one transaction and commit it.

        If the connection turns out to be dead before the commit was sent, nothing was
        committed, so the transaction is retried once on a new connection (a restarted
        server or a dropped idle connection does not cost an event). A failure during
        the commit, or any other error, raises.
        """
        pg = self._pg
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                committing = False
                try:
                    with conn.cursor() as cur:
                        result = work(cur)
                    committing = True
                    conn.commit()
                    return result
                except pg.Error as exc:
                    if not (conn.closed or conn.broken):
                        # A server that just dropped the connection can fail a query
                        # ("connection socket closed") before libpq marks it bad: the
                        # rollback then finds it dead and discards it.
                        self._rollback(conn)
                    dead = conn.closed or conn.broken
                    if dead:
                        self._discard()
                    if dead and not committing and attempt == 1:
                        _log.warning(
                            "PostgreSQL provenance connection lost (%s); reconnecting", exc
                        )
                        continue
                    if dead and committing:
                        raise ProvenanceError(
                            "the PostgreSQL connection was lost while committing provenance "
                            f"records to {mask_dsn(self.dsn)}; whether they were stored is "
                            f"unknown ({type(exc).__name__})"
                        ) from exc
                    raise self._fault(exc, "write provenance records") from exc
                except BaseException:
                    self._rollback(conn)
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _rollback(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.rollback()
        except self._pg.Error:
            self._discard()

    # -- schema ------------------------------------------------------------------

    def _migrate(self, cur: psycopg.Cursor[Any]) -> None:
        t = self._t
        # CREATE TABLE IF NOT EXISTS is not safe when two sessions run it at once (both
        # may try to create the type); a transaction-scoped advisory lock serializes them.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (t.lock_key,))
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {t.schema} ("
            "version integer PRIMARY KEY, description text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(f"SELECT COALESCE(max(version), 0) FROM {t.schema}")
        row = cur.fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise ProvenanceError(
                f"the provenance tables {t.event} have schema version {current}, newer "
                f"than this aiguard ({SCHEMA_VERSION}); upgrade aiguard"
            )
        if current < 1:
            cur.execute(
                f"CREATE TABLE {t.event} ("
                "log text NOT NULL, seq bigint NOT NULL, digest text NOT NULL, "
                "prev text NOT NULL, type text, time text, "
                "record bytea NOT NULL, "  # the exact bytes that were hashed
                "document jsonb, "  # a copy for queries only; never verified
                "PRIMARY KEY (log, seq))"
            )
            cur.execute(
                f"CREATE TABLE {t.head} ("
                "log text PRIMARY KEY, size bigint NOT NULL, last_digest text, "
                "updated_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute(
                f"INSERT INTO {t.schema} (version, description) "
                "VALUES (1, 'provenance records and log heads')"
            )

    # -- appending ---------------------------------------------------------------

    def _lock_head(self, cur: psycopg.Cursor[Any], log: str) -> tuple[int, str | None]:
        t = self._t
        select = f"SELECT size, last_digest FROM {t.head} WHERE log = %s FOR UPDATE"
        cur.execute(select, (log,))
        row = cur.fetchone()
        if row is None:
            # First use of this log. Several sessions may get here at once: the
            # unique key makes all but one wait for the first insert to commit, then do
            # nothing; re-selecting (a new snapshot under READ COMMITTED) finds and
            # locks the row. The head starts from any records already stored.
            cur.execute(
                f"INSERT INTO {t.head} (log, size, last_digest) "
                f"SELECT %s, COALESCE(max(seq) + 1, 0), "
                f"(SELECT digest FROM {t.event} WHERE log = %s ORDER BY seq DESC LIMIT 1) "
                f"FROM {t.event} WHERE log = %s "
                "ON CONFLICT (log) DO NOTHING",
                (log, log, log),
            )
            cur.execute(select, (log,))
            row = cur.fetchone()
            assert row is not None
        return int(row[0]), row[1]

    def _insert(self, cur: psycopg.Cursor[Any], records: Sequence[EventRecord]) -> None:
        rows = []
        for record in records:
            log, seq, prev, digest = record_fields(record)
            document = record.document
            # jsonb cannot hold \u0000; such a record keeps its bytes and no query copy.
            text = None if b"\\u0000" in record.line else record.line.decode("utf-8")
            rows.append(
                (
                    log,
                    seq,
                    digest,
                    prev,
                    _text(document.get("type")),
                    _text(document.get("time")),
                    record.line,
                    text,
                )
            )
        cur.executemany(
            f"INSERT INTO {self._t.event} "
            "(log, seq, digest, prev, type, time, record, document) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            rows,
        )

    def _set_head(self, cur: psycopg.Cursor[Any], log: str, size: int, digest: str) -> None:
        cur.execute(
            f"UPDATE {self._t.head} SET size = %s, last_digest = %s, updated_at = now() "
            "WHERE log = %s",
            (size, digest, log),
        )

    def append_unsealed(
        self, log: str, documents: Sequence[dict[str, Any]], seal: Sealer
    ) -> list[EventRecord]:
        """Seal ``documents`` after the log's stored head and store them, in one transaction.

        The head row stays locked from reading the head to the commit, so concurrent
        appenders from any process or host get consecutive, distinct positions.

        On an empty log the sink first seals and stores a genesis record (or uses the
        first document if it is one); the returned list holds the records of
        ``documents`` only, one per document. A genesis document anywhere but at seq 0
        is refused: another process created the log first.
        """
        if not documents:
            return []

        def work(cur: psycopg.Cursor[Any]) -> list[EventRecord]:
            size, last = self._lock_head(cur, log)
            prev = GENESIS_PREV if size == 0 else (last or GENESIS_PREV)
            records: list[EventRecord] = []
            if size == 0 and documents[0].get("type") != "genesis":
                # The first writer of a shared log creates its genesis, under the head
                # lock, so processes starting at once cannot each write one.
                genesis = seal(_genesis_document(log, documents[0]), 0, GENESIS_PREV)
                sealed_check(genesis, log, 0, GENESIS_PREV)
                self._insert(cur, [genesis])
                size, prev = 1, genesis.digest
            for offset, document in enumerate(documents):
                seq = size + offset
                _check_genesis_position(log, seq, document)
                # A copy: if this transaction is retried, the caller's dict is unchanged.
                record = seal(dict(document), seq, prev)
                sealed_check(record, log, seq, prev)
                records.append(record)
                prev = record.digest
            self._insert(cur, records)
            self._set_head(cur, log, size + len(records), prev)
            return records

        return self._transact(work)

    def ensure_genesis(self, log: str, document: dict[str, Any], seal: Sealer) -> EventRecord:
        """The log's genesis record, sealing and storing ``document`` if the log is empty.

        Race-free: of several processes starting at once, exactly one writes genesis and
        the others get that record back.
        """

        def work(cur: psycopg.Cursor[Any]) -> EventRecord:
            size, _last = self._lock_head(cur, log)
            if size == 0:
                record = seal(dict(document), 0, GENESIS_PREV)
                sealed_check(record, log, 0, GENESIS_PREV)
                self._insert(cur, [record])
                self._set_head(cur, log, 1, record.digest)
                return record
            cur.execute(f"SELECT record FROM {self._t.event} WHERE log = %s AND seq = 0", (log,))
            row = cur.fetchone()
            if row is None:
                raise ProvenanceError(f"log {log!r} has records but no genesis (seq 0)")
            return record_from_stored(bytes(row[0]), 0, log)

        return self._transact(work)

    def emit(self, record: EventRecord) -> None:
        self.emit_batch((record,))

    def emit_batch(self, records: Sequence[EventRecord]) -> None:
        """Store records whose positions a `ProvenanceLog` assigned (mirror use).

        One transaction per call. A record must link to the stored head; the same
        record stored again is accepted without change (a retry), a different record
        at a taken position is refused as a fork.
        """
        if not records:
            return
        for record in records:
            log = record_fields(record)[0]
            if self.log is not None and log != self.log:
                raise ProvenanceError(f"this PostgreSQL sink is for log {self.log!r}, not {log!r}")

        def work(cur: psycopg.Cursor[Any]) -> None:
            heads: dict[str, tuple[int, str | None]] = {}
            pending: list[EventRecord] = []
            for record in records:
                log, seq, prev, digest = record_fields(record)
                if log not in heads:
                    heads[log] = self._lock_head(cur, log)
                size, last = heads[log]
                stored = None
                if seq < size:
                    cur.execute(
                        f"SELECT record FROM {self._t.event} WHERE log = %s AND seq = %s",
                        (log, seq),
                    )
                    row = cur.fetchone()
                    stored = None if row is None else bytes(row[0])
                placement = Placement.decide(
                    record, seq, prev, size, last, stored, f"PostgreSQL log {log!r}"
                )
                if placement == Placement.REPEAT:
                    continue
                if placement == Placement.GAP:
                    _log.warning(
                        "PostgreSQL provenance log %r: records %d..%d never reached this sink",
                        log,
                        size,
                        seq - 1,
                    )
                pending.append(record)
                heads[log] = (seq + 1, digest)
            if pending:
                self._insert(cur, pending)
                for log, (size, last) in heads.items():
                    if last is not None:
                        self._set_head(cur, log, size, last)

        self._transact(work)

    def head(self) -> EventRecord | None:
        """The last record of this sink's log (None if it has none yet)."""

        def work(cur: psycopg.Cursor[Any]) -> EventRecord | None:
            log = self.log if self.log is not None else _only_log(cur, self._t)
            if log is None:
                return None
            cur.execute(
                f"SELECT e.seq, e.record FROM {self._t.head} h JOIN {self._t.event} e "
                "ON e.log = h.log AND e.seq = h.size - 1 WHERE h.log = %s",
                (log,),
            )
            row = cur.fetchone()
            if row is None:
                # No head row yet (records written before it existed) or an empty log.
                cur.execute(
                    f"SELECT seq, record FROM {self._t.event} WHERE log = %s "
                    "ORDER BY seq DESC LIMIT 1",
                    (log,),
                )
                row = cur.fetchone()
            if row is None:
                return None
            return record_from_stored(bytes(row[1]), int(row[0]), log)

        return self._transact(work)

    def flush(self) -> None:
        # Every write commits before returning; nothing is buffered.
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._pid == os.getpid():
                self._discard()
            self._conn = None

    def __repr__(self) -> str:
        return f"PostgresSink(table_prefix={self.table_prefix!r}, log={self.log!r})"


def read_postgres(
    dsn: str,
    log: str | None = None,
    *,
    table_prefix: str = "aiguard",
    batch_size: int = 1000,
    check_head: bool = True,
) -> Iterator[EventRecord]:
    """The stored records of ``log`` (or of the tables' only log) in seq order.

    Streams through a server-side cursor, ``batch_size`` rows at a time, inside one
    read-only REPEATABLE READ transaction, so the records and the head row come from
    one snapshot even while writers append. With ``check_head``, records missing from
    the end (the stored head says there are more) raise `ProvenanceError` once the
    stored records are exhausted: without signed checkpoints that is the only trace a
    removed tail leaves.
    """
    pg = _psycopg()
    t = _Tables(table_prefix)
    conn = pg.connect(dsn, autocommit=False)
    try:
        conn.isolation_level = pg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.cursor() as cur:
            name = log if log is not None else _only_log(cur, t)
            if name is None:
                return
            cur.execute(f"SELECT size FROM {t.head} WHERE log = %s", (name,))
            head_row = cur.fetchone()
        last_seq = -1
        with conn.cursor(name="aiguard_read_provenance") as stream:
            stream.itersize = batch_size
            stream.execute(
                f"SELECT seq, record FROM {t.event} WHERE log = %s ORDER BY seq", (name,)
            )
            for seq, raw in stream:
                last_seq = int(seq)
                yield record_from_stored(bytes(raw), last_seq, name)
        if check_head and head_row is not None and int(head_row[0]) - 1 > last_seq:
            raise ProvenanceError(
                f"log {name!r}: the stored head says the last record is seq "
                f"{int(head_row[0]) - 1}, but the records end at seq {last_seq}; "
                "records were removed from the end"
            )
        conn.commit()
    finally:
        conn.close()


def _only_log(cur: psycopg.Cursor[Any], t: _Tables) -> str | None:
    cur.execute(f"SELECT log FROM {t.head} ORDER BY log LIMIT 2")
    rows = cur.fetchall()
    if not rows:
        cur.execute(f"SELECT log FROM {t.event} ORDER BY log LIMIT 1")
        row = cur.fetchone()
        return None if row is None else str(row[0])
    if len(rows) > 1:
        raise ProvenanceError(
            f"the table {t.event} holds several logs; name the one to use (`[provenance] log` "
            "in the policy, `--log-name` on the command line, log=... in code)"
        )
    return str(rows[0][0])


def _genesis_document(log: str, first: dict[str, Any]) -> dict[str, Any]:
    """A genesis like the one `ProvenanceLog` writes, for a log created by the store."""
    document: dict[str, Any] = {
        "type": "genesis",
        "nonce": os.urandom(16).hex(),
        "schema": first.get("schema", SCHEMA),
        "log": log,
        "event_id": uuid7(),
        "time": rfc3339_now(),
    }
    return document


def _check_genesis_position(log: str, seq: int, document: dict[str, Any]) -> None:
    if seq > 0 and document.get("type") == "genesis":
        raise ProvenanceError(
            f"log {log!r} already has a genesis record; another process created it first "
            "(use ensure_genesis, which returns the existing one)"
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
