"""The PostgreSQL provenance sink: exact bytes, one log shared by processes, tampering.

Needs a server: set AIGUARD_TEST_POSTGRES_DSN (e.g. postgresql://postgres@127.0.0.1/test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiguard.errors import ProvenanceError
from aiguard.provenance import EventRecord, InMemorySink, ProvenanceLog, verify_records
from aiguard.provenance.chain import SequencingSink, rfc3339_now, seal_document, uuid7
from aiguard.provenance.events import SCHEMA

DSN = os.environ.get("AIGUARD_TEST_POSTGRES_DSN")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not DSN, reason="set AIGUARD_TEST_POSTGRES_DSN to run the PostgreSQL tests"),
]

if DSN:
    import psycopg

    from aiguard.provenance.postgres import PostgresSink, read_postgres


def make_sealer(log: str) -> Any:
    """What a ProvenanceLog does to a document (prepare, then seal at a position)."""

    def seal(document: dict[str, Any], seq: int, prev: str) -> EventRecord:
        document.update(schema=SCHEMA, log=log, event_id=uuid7(), time=rfc3339_now())
        return seal_document(document, seq, prev)

    return seal


@pytest.fixture
def prefix() -> Iterator[str]:
    name = "t" + uuid.uuid4().hex[:12]
    yield name
    assert DSN
    with psycopg.connect(DSN, autocommit=True) as conn:
        for table in ("event", "head", "schema"):
            conn.execute(f"DROP TABLE IF EXISTS {name}_provenance_{table}")


def fill(log: ProvenanceLog, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        log.append({"type": "call", "request_id": f"r{i}", "findings": {"email": i % 3}})
    log.flush()


def test_records_read_back_byte_identical_and_verify(prefix: str) -> None:
    assert DSN
    memory = InMemorySink()
    sink = PostgresSink(DSN, table_prefix=prefix)
    assert isinstance(sink, SequencingSink) and sink.required
    log = ProvenanceLog("pg-log", [sink, memory])
    log.append({"type": "call", "request_id": "é\u2028\x00😀", "reasons": ["a%sb"]})
    fill(log, 30)
    log.close()

    stored = list(read_postgres(DSN, table_prefix=prefix, batch_size=7))
    # The shared store wrote the genesis itself; the mirror got every record after it.
    assert stored[0].document["type"] == "genesis"
    assert [r.line for r in stored[1:]] == [r.line for r in memory.records]
    report = verify_records(stored)
    assert report.ok and report.records == 32, report.summary()

    with psycopg.connect(DSN) as conn:
        types = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'record'",
            (f"{prefix}_provenance_event",),
        ).fetchone()
        assert types == ("bytea",)
        # The jsonb copy is for queries (NULL where jsonb cannot hold \u0000).
        row = conn.execute(
            f"SELECT document->>'request_id' FROM {prefix}_provenance_event WHERE seq = 2"
        ).fetchone()
        assert row == ("r0",)
        versions = conn.execute(f"SELECT version FROM {prefix}_provenance_schema").fetchall()
        assert versions == [(1,)]


def test_a_restarted_log_continues_its_chain(prefix: str) -> None:
    assert DSN
    log = ProvenanceLog("resume", [PostgresSink(DSN, table_prefix=prefix)])
    fill(log, 3)
    log.close()
    # Opening again (schema already there) resumes after the stored head.
    log = ProvenanceLog("resume", [PostgresSink(DSN, table_prefix=prefix, log="resume")])
    assert log.head_seq == 3
    fill(log, 2, start=3)
    log.close()
    records = list(read_postgres(DSN, "resume", table_prefix=prefix))
    assert [r.seq for r in records] == list(range(6))
    assert verify_records(records).ok


def test_mirror_refuses_a_fork_and_accepts_a_retry(prefix: str) -> None:
    assert DSN
    memory = InMemorySink()
    fill(ProvenanceLog("m", [memory]), 4)
    records = memory.records
    sink = PostgresSink(DSN, table_prefix=prefix)
    sink.emit_batch(records[:3])
    sink.emit_batch(records[1:3])  # a retry after an ambiguous failure: no change
    forged = EventRecord({**records[3].document, "prev": "0" * 64}, records[3].line)
    with pytest.raises(ProvenanceError, match="forked"):
        sink.emit(forged)
    other = InMemorySink()
    fill(ProvenanceLog("m", [other]), 1)
    with pytest.raises(ProvenanceError, match="different record"):
        sink.emit(other.records[1])
    sink.emit_batch(records[3:])
    head = sink.head()
    assert head is not None and head.line == records[-1].line
    sink.close()
    assert [r.line for r in read_postgres(DSN, table_prefix=prefix)] == [r.line for r in records]


def test_connection_loss_is_survived_and_writes_are_never_dropped(prefix: str) -> None:
    assert DSN
    sink = PostgresSink(DSN, table_prefix=prefix)
    seal = make_sealer("recon")
    sink.ensure_genesis("recon", {"type": "genesis"}, seal)
    conn = sink._conn
    assert conn is not None
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    # The dead connection is noticed before anything was committed: retried once.
    sink.append_unsealed("recon", [{"type": "call"}], seal)
    assert [r.seq for r in read_postgres(DSN, "recon", table_prefix=prefix)] == [0, 1]
    sink.close()

    broken = PostgresSink(DSN, table_prefix=prefix)
    broken.dsn = "postgresql://postgres@127.0.0.1:1/none"  # nothing listens there
    broken._discard()
    with pytest.raises(ProvenanceError, match="cannot connect"):
        broken.append_unsealed("recon", [{"type": "call"}], seal)
    broken.close()


class _DroppedBeforeMarkedBad:
    """A connection the server just dropped, as libpq can report it: the next query
    fails ("connection socket closed") while the connection does not yet say it is
    closed or broken, and the rollback that follows fails too."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._dead = False

    @property
    def closed(self) -> bool:
        return self._dead

    broken = closed

    def cursor(self) -> Any:
        raise psycopg.OperationalError("connection socket closed")

    def rollback(self) -> None:
        self._dead = True
        raise psycopg.OperationalError("connection socket closed")

    def close(self) -> None:
        self._dead = True
        self._real.close()


def test_a_connection_dropped_before_libpq_marks_it_bad_is_retried(prefix: str) -> None:
    """CI saw it once after pg_terminate_backend: the write must reconnect, not fail."""
    assert DSN
    sink = PostgresSink(DSN, table_prefix=prefix)
    seal = make_sealer("race")
    sink.ensure_genesis("race", {"type": "genesis"}, seal)
    sink._conn = _DroppedBeforeMarkedBad(sink._conn)  # type: ignore[assignment]
    sink.append_unsealed("race", [{"type": "call"}], seal)
    assert [r.seq for r in read_postgres(DSN, "race", table_prefix=prefix)] == [0, 1]
    sink.close()


def test_shared_log_rules(prefix: str) -> None:
    assert DSN
    sink = PostgresSink(DSN, table_prefix=prefix)
    seal = make_sealer("rules")
    first = sink.ensure_genesis("rules", {"type": "genesis", "nonce": "1"}, seal)
    again = sink.ensure_genesis("rules", {"type": "genesis", "nonce": "2"}, seal)
    assert again.line == first.line
    with pytest.raises(ProvenanceError, match="already has a genesis"):
        sink.append_unsealed("rules", [{"type": "genesis"}], seal)
    with pytest.raises(ProvenanceError, match="sealer returned"):
        sink.append_unsealed("rules", [{"type": "call"}], make_sealer("elsewhere"))
    records = sink.append_unsealed("rules", [{"type": "call"}, {"type": "call"}], seal)
    assert [r.seq for r in records] == [1, 2]
    # On an empty log the store writes the genesis itself and returns one record per
    # document given.
    (only,) = sink.append_unsealed("auto", [{"type": "call"}], make_sealer("auto"))
    assert only.seq == 1
    auto = list(read_postgres(DSN, "auto", table_prefix=prefix))
    assert auto[0].document["type"] == "genesis" and verify_records(auto).ok
    assert sink.append_unsealed("rules", [], seal) == []
    stored = list(read_postgres(DSN, "rules", table_prefix=prefix))
    assert [r.line for r in stored] == [first.line] + [r.line for r in records]
    assert verify_records(stored).ok
    sink.close()
    with pytest.raises(ProvenanceError, match="closed"):
        sink.head()


WORKER = """
import sys
from aiguard.provenance import ProvenanceLog
from aiguard.provenance.postgres import PostgresSink

dsn, prefix, name, worker, count = sys.argv[1:6]
log = ProvenanceLog(name, [PostgresSink(dsn, table_prefix=prefix)])
for i in range(int(count)):
    log.append({"type": "call", "request_id": f"{worker}-{i}"})
log.close()
"""


def test_processes_and_threads_append_to_one_log(prefix: str) -> None:
    assert DSN
    name, count = "shared", 40
    # Every process creates the schema, the head row and the genesis itself, at once.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, DSN, prefix, name, f"p{n}", str(count)],
            stderr=subprocess.PIPE,
        )
        for n in range(4)
    ]
    errors: list[BaseException] = []
    # Several threads share one log (and so one connection, serialized by its lock);
    # a background log batches their appends (group commit through append_unsealed).
    shared = ProvenanceLog(name, [PostgresSink(DSN, table_prefix=prefix)], background=True)
    own = ProvenanceLog(name, [PostgresSink(DSN, table_prefix=prefix)])

    def thread_worker(worker: str, log: ProvenanceLog) -> None:
        try:
            receipts = [
                log.append({"type": "call", "request_id": f"{worker}-{i}"}) for i in range(count)
            ]
            for receipt in receipts:
                receipt.wait(30)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=thread_worker, args=(f"t{n}", shared if n < 3 else own))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared.close()
    own.close()
    for proc in procs:
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr.decode()
    assert not errors, errors

    records = list(read_postgres(DSN, name, table_prefix=prefix))
    report = verify_records(records)
    assert report.ok, report.summary()
    assert [r.seq for r in records] == list(range(len(records)))
    calls = [r.document["request_id"] for r in records if r.document["type"] == "call"]
    assert len(calls) == len(set(calls)) == 8 * count
    assert sum(r.document["type"] == "genesis" for r in records) == 1


@pytest.fixture(scope="module")
def tamper_table() -> Iterator[tuple[str, list[EventRecord]]]:
    assert DSN
    name = "tamper" + uuid.uuid4().hex[:10]
    memory = InMemorySink()
    fill(ProvenanceLog("tamper", [memory]), 7)
    PostgresSink(DSN, table_prefix=name).close()
    yield name, memory.records
    with psycopg.connect(DSN, autocommit=True) as conn:
        for table in ("event", "head", "schema"):
            conn.execute(f"DROP TABLE IF EXISTS {name}_provenance_{table}")


def detected(prefix: str, log: str) -> bool:
    assert DSN
    try:
        return not verify_records(read_postgres(DSN, log, table_prefix=prefix)).ok
    except ProvenanceError:
        return True  # the stored head shows that records were removed from the end


tamper = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, 7), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 7), st.just(0), st.just(0)),
    st.tuples(st.just("swap"), st.integers(0, 7), st.integers(0, 7), st.just(0)),
    st.tuples(st.just("copy"), st.integers(0, 7), st.just(0), st.just(0)),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(change=tamper)
def test_tampering_with_stored_rows_is_detected(
    tamper_table: tuple[str, list[EventRecord]], change: tuple[str, int, int, int]
) -> None:
    assert DSN
    prefix, records = tamper_table
    kind, i, j, value = change
    log = "tamper"
    table = f"{prefix}_provenance_event"
    with psycopg.connect(DSN) as conn:
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"DELETE FROM {prefix}_provenance_head")
        conn.commit()
    sink = PostgresSink(DSN, table_prefix=prefix)
    sink.emit_batch(records)
    sink.close()
    assert not detected(prefix, log)

    with psycopg.connect(DSN) as conn:
        if kind == "edit":
            line = bytearray(records[i].line)
            position = j % len(line)
            if line[position] == value:
                value = (value + 1) % 256
            line[position] = value
            conn.execute(
                f"UPDATE {table} SET record = %s WHERE log = %s AND seq = %s",
                (bytes(line), log, i),
            )
        elif kind == "delete":
            conn.execute(f"DELETE FROM {table} WHERE log = %s AND seq = %s", (log, i))
        elif kind == "swap":
            if i == j:
                j = (i + 1) % len(records)
            conn.execute(
                f"UPDATE {table} SET record = CASE seq WHEN %s THEN %s ELSE %s END "
                "WHERE log = %s AND seq IN (%s, %s)",
                (i, records[j].line, records[i].line, log, i, j),
            )
        else:  # a copy of an earlier record appended at the end
            conn.execute(
                f"INSERT INTO {table} (log, seq, digest, prev, record) VALUES (%s, %s, %s, %s, %s)",
                (log, len(records), records[i].digest, "", records[i].line),
            )
        conn.commit()
    assert detected(prefix, log), change
