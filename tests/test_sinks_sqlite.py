"""The SQLite provenance sink: exact bytes, resume, batches, forks refused, verify."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aiguard.errors import ProvenanceError
from aiguard.provenance import EventRecord, InMemorySink, ProvenanceLog, verify_records
from aiguard.provenance.sqlite_sink import SqliteSink, read_sqlite


def fill(log: ProvenanceLog, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        log.append({"type": "call", "request_id": f"r{i}", "findings": {"email": i % 3}})
    # A background writer (if the log has one) must have written before we read.
    log.flush()


def test_records_read_back_byte_identical_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "prov.db"
    memory = InMemorySink()
    sink = SqliteSink(path)
    log = ProvenanceLog("sqlite-log", [sink, memory])
    # Non-ASCII and control characters: the stored bytes must not be re-encoded.
    log.append({"type": "call", "request_id": "é\u2028\x00😀", "reasons": ["a%sb"]})
    fill(log, 20)
    log.close()

    stored = list(read_sqlite(path))
    assert [r.line for r in stored] == [r.line for r in memory.records]
    assert [r.document for r in stored] == [dict(r.document) for r in memory.records]
    report = verify_records(stored)
    assert report.ok, report.summary()
    assert report.records == 22 and report.log == "sqlite-log"

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    kinds = {row[0] for row in conn.execute("SELECT typeof(line) FROM aiguard_provenance_event")}
    assert kinds == {"blob"}
    conn.close()


def test_a_restarted_log_continues_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "prov.db"
    log = ProvenanceLog("resume", [SqliteSink(path)])
    fill(log, 3)
    log.close()

    log = ProvenanceLog("resume", [SqliteSink(path)])
    assert log.head_seq == 3  # genesis + 3 calls; no second genesis
    fill(log, 2, start=3)
    log.close()

    records = list(read_sqlite(path))
    assert [r.seq for r in records] == list(range(6))
    assert [r.document["type"] for r in records].count("genesis") == 1
    assert verify_records(records).ok


def test_emit_batch_is_one_transaction(tmp_path: Path) -> None:
    memory = InMemorySink()
    log = ProvenanceLog("batch", [memory])
    fill(log, 5)
    records = memory.records

    sink = SqliteSink(tmp_path / "b.db")
    sink.emit_batch(records[:3])
    # seq 4 does not link to seq 2: the whole batch is refused, seq 3 is not kept.
    broken = EventRecord({**records[4].document, "prev": "f" * 64}, b"x")
    with pytest.raises(ProvenanceError, match="forked"):
        sink.emit_batch([records[3], broken])
    assert [r.seq for r in read_sqlite(tmp_path / "b.db")] == [0, 1, 2]
    # A retry of records already stored is a no-op; the rest is appended.
    sink.emit_batch(records[1:])
    sink.close()
    assert [r.line for r in read_sqlite(tmp_path / "b.db")] == [r.line for r in records]


def test_a_second_writer_of_one_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fork.db"
    first = ProvenanceLog("shared", [SqliteSink(path)])
    second = ProvenanceLog("shared", [SqliteSink(path)])  # resumes the same head
    first.append({"type": "call", "request_id": "a"})
    with pytest.raises(ProvenanceError):
        second.append({"type": "call", "request_id": "b"})
    records = list(read_sqlite(path))
    assert [r.document.get("request_id") for r in records] == [None, "a"]
    assert verify_records(records).ok


def test_several_logs_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "multi.db"
    for name in ("a", "b"):
        log = ProvenanceLog(name, [SqliteSink(path, log=name)])
        fill(log, 2)
        log.close()
    with pytest.raises(ProvenanceError, match="several logs"):
        list(read_sqlite(path))
    with pytest.raises(ProvenanceError, match="several logs"):
        SqliteSink(path).head()
    for name in ("a", "b"):
        records = list(read_sqlite(path, log=name))
        assert verify_records(records).ok and records[0].document["log"] == name
    with pytest.raises(ProvenanceError, match="for log 'a'"):
        SqliteSink(path, log="a").emit(next(read_sqlite(path, log="b")))


def test_tampering_with_a_row_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    log = ProvenanceLog("t", [SqliteSink(path)])
    fill(log, 5)
    log.close()
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE aiguard_provenance_event SET line = CAST(replace(CAST(line AS TEXT), "
        "'\"r2\"', '\"r9\"') AS BLOB) WHERE seq = 3"
    )
    conn.commit()
    report = verify_records(read_sqlite(path))
    assert not report.ok and report.failure is not None and report.failure.seq == 3
    conn.execute("UPDATE aiguard_provenance_event SET line = X'7B7D7D' WHERE seq = 2")
    conn.commit()
    conn.close()
    report = verify_records(read_sqlite(path))
    assert not report.ok and report.failure is not None and report.failure.seq == 2


def test_unusable_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteSink(":memory:")
    with pytest.raises(FileNotFoundError):
        list(read_sqlite(tmp_path / "missing.db"))
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (y)").connection.close()
    with pytest.raises(ProvenanceError, match="no aiguard provenance log"):
        list(read_sqlite(other))
    sink = SqliteSink(tmp_path / "c.db")
    assert sink.head() is None and sink.required is True
    assert SqliteSink(tmp_path / "d.db", required=False).required is False
    sink.close()
    memory = InMemorySink()
    ProvenanceLog("x", [memory])
    with pytest.raises(ProvenanceError, match="closed"):
        sink.emit(memory.records[0])
