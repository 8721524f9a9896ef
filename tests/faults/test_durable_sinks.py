"""Fault matrix, durable sinks: a JSONL file, an SQLite log and an HTTP/SIEM spool that
fail while calls go on, through every door.

A required sink (JSONL, SQLite) that fails stops new calls before anything is sent and
keeps the records it missed; once it works again they are written in order, and what is
on disk verifies with every call of every attempt in it. The HTTP sink is best effort
with a durable spool: calls go on while the collector is down, and everything arrives
once it is back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from faultkit import MESSAGE, RAW, DoorCall, Fault, fault_policy

import aiguard
from aiguard.provenance import EventRecord, JsonlSink, verify_file, verify_lines
from aiguard.provenance.http_sink import HttpSink
from aiguard.provenance.sqlite_sink import SqliteSink, read_sqlite
from aiguard.provenance.verify import verify_records
from aiguard.testing import FakeModel, assert_no_raw_values


class Gated:
    """A real sink behind a fault switch: the write fails while the fault is on."""

    def __init__(self, inner: Any, fault: Fault) -> None:
        self.inner = inner
        self.fault = fault
        self.required = inner.required

    def emit(self, record: EventRecord) -> None:
        self.emit_batch([record])

    def emit_batch(self, records: Sequence[EventRecord]) -> None:
        self.fault.gate("sink")
        self.inner.emit_batch(records)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


def _stored(kind: str, path: Path) -> Any:
    if kind == "jsonl":
        return verify_file(path)
    return verify_records(read_sqlite(path))


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
@pytest.mark.parametrize("fault", ["down", "midway"])
def test_required_durable_sink_fails_closed_and_catches_up(
    door: str, kind: str, fault: str, tmp_path: Path, leak_values: Any
) -> None:
    leak_values(RAW.values())
    path = tmp_path / ("events.jsonl" if kind == "jsonl" else "events.db")
    inner = JsonlSink(path, fsync="always") if kind == "jsonl" else SqliteSink(path)
    state = Fault()
    guard = aiguard.Guard(fault_policy(), sinks=[Gated(inner, state)])
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport)
    call()
    state.set(fault, budget=0)
    with pytest.raises(aiguard.ProvenanceError):
        call()  # went out tokenized; its event waits in the backlog
    with pytest.raises(aiguard.ProvenanceError):
        call()  # refused before sending
    assert len(fake.requests) == 2
    state.set("ok")
    assert call() == "Echo: " + MESSAGE
    guard.close()
    report = _stored(kind, path)
    assert report.ok, report.summary()
    documents = (
        [json.loads(line) for line in path.read_text().splitlines()]
        if kind == "jsonl"
        else [dict(r.document) for r in read_sqlite(path)]
    )
    assert sum(d["type"] == "call" for d in documents) == 3
    assert_no_raw_values(fake, RAW.values())
    blob = path.read_bytes()
    assert all(value.encode() not in blob for value in RAW.values())


def test_http_sink_collector_down_loses_nothing(door: str, tmp_path: Path) -> None:
    received: list[bytes] = []
    up = {"ok": False}

    def collector(request: httpx.Request) -> httpx.Response:
        if not up["ok"]:
            return httpx.Response(503)
        received.append(request.read())
        return httpx.Response(200)

    sink = HttpSink(
        "http://127.0.0.1:9/collect",
        spool_dir=tmp_path / "spool",
        transport=httpx.MockTransport(collector),
        batch_size=10,
    )
    memory = aiguard.InMemorySink()
    guard = aiguard.Guard(fault_policy(), sinks=[memory, sink])
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport)
    for _ in range(3):
        assert call() == "Echo: " + MESSAGE  # best effort: the collector being down is no stop
    up["ok"] = True
    sink.flush(timeout=30)
    guard.close()
    lines = [line + b"\n" for chunk in received for line in chunk.splitlines() if line]
    assert lines == [r.line + b"\n" for r in memory.records]
    assert verify_lines(lines).ok
