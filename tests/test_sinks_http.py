"""The HTTP/SIEM sink: durable spool, delivery in order, outages, restarts."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from aiguard.errors import ProvenanceError
from aiguard.provenance import InMemorySink, ProvenanceLog, verify_records
from aiguard.provenance.chain import EventRecord
from aiguard.provenance.http_sink import HttpSink

URL = "https://siem.example.test/ingest"
FAST = {"backoff": 0.001, "max_backoff": 0.02, "max_attempts": 3}


class Collector:
    """A MockTransport handler that can be down (503 or refused connection)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down: str | None = None
        self.lines: list[bytes] = []
        self.requests = 0
        self.failed = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests += 1
            if self.down == "503":
                self.failed += 1
                return httpx.Response(503)
            if self.down == "refuse":
                self.failed += 1
                raise httpx.ConnectError("connection refused", request=request)
            assert request.headers["content-type"] == "application/x-ndjson"
            assert request.headers["authorization"] == "Bearer t"
            body = request.read()
            assert body.endswith(b"\n")
            self.lines.extend(body.splitlines())
            return httpx.Response(202)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def records(count: int) -> list[EventRecord]:
    memory = InMemorySink()
    log = ProvenanceLog("siem", [memory])
    for i in range(count):
        log.append({"type": "call", "request_id": f"r{i}"})
    return memory.records


def sink_for(spool: Path, collector: Collector, **kwargs: object) -> HttpSink:
    options: dict[str, object] = {"headers": {"Authorization": "Bearer t"}, **FAST, **kwargs}
    return HttpSink(URL, spool_dir=spool, transport=collector.transport(), **options)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_delivers_every_record_once_in_order_across_an_outage(tmp_path: Path) -> None:
    collector = Collector()
    memory = InMemorySink()
    sink = sink_for(tmp_path, collector, batch_size=7)
    assert sink.required is False and sink.healthy
    log = ProvenanceLog("siem", [memory, sink])
    for i in range(10):
        log.append({"type": "call", "request_id": f"a{i}"})
    sink.flush(5)
    assert len(collector.lines) == 11

    for mode in ("503", "refuse"):
        collector.down = mode
        for i in range(15):
            log.append({"type": "call", "request_id": f"{mode}{i}"})
        wait_for(lambda: not sink.healthy)
        assert sink.pending
        with pytest.raises(ProvenanceError, match="not yet delivered"):
            sink.flush(0.05)
        # The log's own flush (no timeout) never waits for a down collector: the
        # records are already durable in the spool.
        started = time.monotonic()
        log.flush()
        assert time.monotonic() - started < 0.5
        collector.down = None
        sink.flush(5)
        assert sink.healthy and not sink.pending

    log.close()
    assert collector.failed >= 6
    assert collector.lines == [r.line for r in memory.records]
    received = [EventRecord(json.loads(line), line) for line in collector.lines]
    assert verify_records(received).ok


def test_a_restart_delivers_what_the_spool_still_holds(tmp_path: Path) -> None:
    collector = Collector()
    all_records = records(30)
    sink = sink_for(tmp_path, collector, batch_size=10)
    sink.emit_batch(all_records[:12])
    sink.flush(5)
    collector.down = "503"
    sink.emit_batch(all_records[12:])
    wait_for(lambda: not sink.healthy)
    sink.close()  # the collector is down: close does not wait for it
    assert len(collector.lines) == 12
    with pytest.raises(ProvenanceError, match="closed"):
        sink.emit(all_records[0])

    collector.down = None
    again = sink_for(tmp_path, collector, batch_size=10)
    again.flush(5)
    again.close()
    assert collector.lines == [r.line for r in all_records]

    # Nothing left: a third start sends nothing.
    before = collector.requests
    sink_for(tmp_path, collector).close()
    assert collector.requests == before


def test_a_torn_spool_tail_is_cut_and_segments_rotate(tmp_path: Path) -> None:
    collector = Collector()
    collector.down = "503"
    all_records = records(40)
    sink = sink_for(tmp_path, collector, segment_bytes=2000, batch_size=8)
    for record in all_records:
        sink.emit(record)
    sink.close()
    segments = sorted(tmp_path.glob("*.ndjson"))
    assert len(segments) > 3
    # A crash in the middle of a write leaves half a line: never acknowledged, so cut.
    with open(segments[-1], "ab") as handle:
        handle.write(b'{"half":')

    collector.down = None
    again = sink_for(tmp_path, collector, segment_bytes=2000, batch_size=8)
    again.flush(5)
    assert collector.lines == [r.line for r in all_records]
    # Delivered segments are removed; only the one being written remains.
    assert len(list(tmp_path.glob("*.ndjson"))) == 1
    again.close()


def test_one_sink_per_spool_directory(tmp_path: Path) -> None:
    collector = Collector()
    sink = sink_for(tmp_path, collector)
    with pytest.raises(ProvenanceError, match="in use"):
        sink_for(tmp_path, collector)
    sink.close()
    sink_for(tmp_path, collector).close()


@pytest.fixture
def loopback() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.extend(self.rfile.read(length).splitlines())
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ingest", received
    server.shutdown()
    server.server_close()


def test_delivers_to_a_real_http_server(tmp_path: Path, loopback: tuple[str, list[bytes]]) -> None:
    url, received = loopback
    memory = InMemorySink()
    sink = HttpSink(url, spool_dir=tmp_path, batch_size=4)
    log = ProvenanceLog("siem", [memory, sink])
    for i in range(9):
        log.append({"type": "call", "request_id": f"r{i}"})
    log.flush()
    sink.flush(5)
    log.close()
    assert received == [r.line for r in memory.records]


def test_close_does_not_sit_out_the_retries_of_a_collector_that_refuses(tmp_path: Path) -> None:
    """Shutting down right after a call, with the collector refusing connections, returns
    at the first failed attempt (not after the whole close timeout), and the record waits
    in the spool for the next start."""
    collector = Collector()
    sink = HttpSink(
        "http://127.0.0.1:9/events",  # nothing listens on the discard port
        spool_dir=tmp_path,
        backoff=0.5,
        max_attempts=8,
        max_backoff=30.0,
    )
    sink.emit(records(1)[0])
    started = time.monotonic()
    sink.close(timeout=10)
    assert time.monotonic() - started < 3
    again = sink_for(tmp_path, collector)
    again.flush(5)
    again.close()
    assert len(collector.lines) == 1


def test_a_segment_that_cannot_be_opened_fails_typed_and_writing_goes_on(tmp_path: Path) -> None:
    """Rotation is a spool write like any other: a next segment that cannot be opened
    is a typed error naming the spool and its policy key, the sink keeps its current
    segment, and once the way is clear it rotates and every record is delivered."""
    collector = Collector()
    sink = sink_for(tmp_path, collector, segment_bytes=1, key="[[provenance.sinks]] #1 spool_dir")
    first, second = records(2)[-2:]
    sink.emit(first)
    blocker = tmp_path / f"{2:012d}.ndjson"
    blocker.mkdir()  # where the next segment goes
    with pytest.raises(ProvenanceError) as caught:
        sink.emit(second)
    text = str(caught.value)
    assert str(tmp_path) in text and "is a directory" in text
    assert "[[provenance.sinks]] #1 spool_dir" in text
    assert isinstance(caught.value.__cause__, IsADirectoryError)
    blocker.rmdir()
    sink.emit(second)
    wait_for(lambda: len(collector.lines) == 2)
    assert collector.lines == [first.line, second.line]
    sink.close()
