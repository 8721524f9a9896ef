"""Load benchmark of the gateway, on loopback only, bounded in time (about 30 s).

Three processes on 127.0.0.1: a fake upstream that streams a chat chunk every 20 ms,
the gateway in front of it (default policy, JSONL provenance in a temporary directory,
served as `aiguard gateway` serves it), and this load generator. The fake upstream and
the load generator speak HTTP/1.1 over bare asyncio streams (uvloop when installed), so
that they take as little CPU from the gateway as possible. Each figure is measured
through the gateway and directly against the upstream in the same run:

(a) 100 streams open at all times for ``--seconds`` (each client starts its next
    stream when one ends; the clients start spread over one stream's length): per
    chunk, the time from the upstream writing it to the client reading it
    (CLOCK_MONOTONIC is system-wide, so the processes share it); added latency =
    gateway figure - direct figure, at p50 and p99 (target p99 < 5 ms);
(b) non-streaming requests per second at concurrency 10 (keep-alive connections).

    python benchmarks/bench_gateway.py [--seconds 5] [--streams 100] [--chunks 25]
                                       [--no-pin] [--json]

With ``--json`` the report goes to stderr and stdout gets the figures as one JSON object
(what benchmarks/run_all.py reads).

The load generator shares the machine with the gateway and the upstream. By default
(on a machine with two or more CPUs) the gateway runs on one CPU and the upstream and
the load generator share the others, as when clients and the model are elsewhere;
``--no-pin`` lets all three compete for every core. The report says which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from _report import report

EMAIL = "jane.doe@example.com"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the processes -------------------------------------------------------------------------


# The fake upstream and the load generator speak HTTP/1.1 over bare asyncio streams (on
# uvloop when it is installed): on a small machine they share cores with the gateway,
# and every cycle they spend is noise in the figure being measured.

_ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Noted, thank you."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
    }
).encode()
_SENT = re.compile(rb'"x_sent_ns":\s*(\d+)')


def _run_loop(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _chunk_frame(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _sse_chunk(index: int, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    data = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "bench",
        "x_sent_ns": time.monotonic_ns(),
        "x_index": index,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes]]:
    """The start line and headers of one HTTP/1.1 message (lower-cased names)."""
    head = await reader.readuntil(b"\r\n\r\n")
    start, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return start, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        return b"".join([piece async for piece in _dechunk(reader)])
    length = int(headers.get(b"content-length", b"0"))
    return await reader.readexactly(length) if length else b""


async def _dechunk(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return
        yield (await reader.readexactly(size + 2))[:-2]


def run_upstream(port: int, interval: float, chunks: int) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                _start, headers = await _read_message(reader)
                payload = json.loads(await _read_body(reader, headers))
                if not payload.get("stream"):
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%b" % (len(_ANSWER), _ANSWER)
                    )
                    await writer.drain()
                    continue
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                # Words end in a space, so the gateway can release each chunk at once.
                for index in range(chunks):
                    await asyncio.sleep(interval)
                    writer.write(_chunk_frame(_sse_chunk(index, "word ")))
                    await writer.drain()
                writer.write(
                    _chunk_frame(_sse_chunk(chunks, None, "stop"))
                    + _chunk_frame(b"data: [DONE]\n\n")
                    + b"0\r\n\r\n"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    _run_loop(main())


def run_gateway(port: int, upstream: str, workdir: str) -> None:
    from pathlib import Path

    from aiguard.cli.gateway import _serve, build_guard
    from aiguard.doors.gateway import GatewayConfig, create_app

    config = GatewayConfig(upstream=upstream, port=port, max_streams=1000)
    guard, _notes = build_guard(config, cwd=Path(workdir))
    app = create_app(guard, config, owns_guard=True)
    # As `aiguard gateway` serves it, without one access-log line per request.
    _serve(app, config, access_log=False)


@contextlib.contextmanager
def _process(*args: str, cpus: set[int] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, __file__, *args])
    if cpus:
        os.sched_setaffinity(process.pid, cpus)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_listening(port: int, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# -- the load ------------------------------------------------------------------------------


def _body(stream: bool) -> dict[str, Any]:
    return {
        "model": "bench",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a support assistant."},
            {"role": "user", "content": f"Customer {EMAIL} asks about order 1234."},
        ],
    }


def _request(path: str, body: bytes, keep_alive: bool) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        b"POST %b HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: %b\r\n\r\n%b"
        % (path.encode(), len(body), connection, body)
    )


async def _one_stream(port: int, path: str) -> list[float]:
    """Per content chunk: ms from the upstream writing it to this client reading it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_request(path, json.dumps(_body(True)).encode(), keep_alive=False))
        start, headers = await _read_message(reader)
        if b" 200 " not in start + b" ":
            raise RuntimeError(f"{start!r}: {(await _read_body(reader, headers))[:300]!r}")
        delays: list[float] = []
        pending = b""
        async for piece in _dechunk(reader):
            received = time.monotonic_ns()
            pending += piece
            *events, pending = pending.split(b"\n\n")
            for event in events:
                stamp = _SENT.search(event)
                if stamp is not None and b'"content":' in event:
                    delays.append((received - int(stamp.group(1))) / 1e6)
        return delays
    finally:
        writer.close()


async def streams(port: int, count: int, seconds: float, stream_seconds: float) -> list[float]:
    """``count`` streams open at all times for ``seconds``; each client starts its next
    stream when one ends, and the clients start spread over one stream's length, as
    independent users do (all starting together would measure one burst of requests)."""
    path = "/v1/chat/completions"
    await _one_stream(port, path)  # warm up the guard and the upstream pool
    delays: list[float] = []
    end = time.monotonic() + seconds

    async def client(index: int) -> None:
        await asyncio.sleep(stream_seconds * index / count)
        while time.monotonic() < end:
            delays.extend(await _one_stream(port, path))

    await asyncio.gather(*(client(index) for index in range(count)))
    return delays


async def throughput(port: int, concurrency: int, seconds: float) -> float:
    request = _request("/v1/chat/completions", json.dumps(_body(False)).encode(), True)
    done = 0
    end = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _warm_up in range(3):
                writer.write(request)
                start, headers = await _read_message(reader)
                await _read_body(reader, headers)
                if b" 200 " not in start + b" ":
                    raise RuntimeError(f"{start!r}")
            await ready.wait()
            while time.monotonic() < end:
                writer.write(request)
                start, headers = await _read_message(reader)
                await _read_body(reader, headers)
                done += 1
        finally:
            writer.close()

    ready = asyncio.Event()
    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await asyncio.sleep(0.5)
    end = time.monotonic() + seconds
    started = time.monotonic()
    ready.set()
    await asyncio.gather(*workers)
    return done / (time.monotonic() - started)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=("bench", "upstream", "gateway"), default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", default="")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=25)
    parser.add_argument("--interval", type=float, default=0.020)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the three processes share every CPU (default: the gateway gets its own)",
    )
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args()
    if args.role == "upstream":
        run_upstream(args.port, args.interval, args.chunks)
        return 0
    if args.role == "gateway":
        run_gateway(args.port, args.upstream, args.workdir)
        return 0

    return report(lambda: bench(args), args.json)


def _cpu_plan(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(CPUs for the gateway, CPUs for the upstream and this load generator), or Nones.

    Pinned, the gateway has one CPU to itself and the other processes share the rest, as
    when clients and the model run on other machines; unpinned, all three compete.
    """
    if not pin or not hasattr(os, "sched_setaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load, print the report and return the figures."""
    gateway_cpus, load_cpus = _cpu_plan(args.pin)
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)
    up_port, gw_port = _free_port(), _free_port()
    direct = f"http://127.0.0.1:{up_port}"
    with (
        tempfile.TemporaryDirectory() as workdir,
        _process(
            "--role",
            "upstream",
            "--port",
            str(up_port),
            "--interval",
            str(args.interval),
            "--chunks",
            str(args.chunks),
            cpus=load_cpus,
        ),
        _process(
            "--role",
            "gateway",
            "--port",
            str(gw_port),
            "--upstream",
            direct + "/v1",
            "--workdir",
            workdir,
            cpus=gateway_cpus,
        ),
    ):
        _wait_listening(up_port)
        _wait_listening(gw_port)
        started = time.monotonic()
        # Throughput first: right after 100 streams the gateway stays slower for a few
        # seconds (see docs/gateway.md), which would measure the aftermath, not (b).
        d_rps = _run_loop(throughput(up_port, 10, args.seconds))
        g_rps = _run_loop(throughput(gw_port, 10, args.seconds))
        stream_seconds = args.interval * (args.chunks + 1)
        d_stream = _run_loop(streams(up_port, args.streams, args.seconds, stream_seconds))
        g_stream = _run_loop(streams(gw_port, args.streams, args.seconds, stream_seconds))
        elapsed = time.monotonic() - started
        with open(os.path.join(workdir, "aiguard-gateway.jsonl"), "rb") as log:
            events = sum(1 for _ in log)

    cores = os.cpu_count()
    print(f"aiguard gateway benchmark (loopback; {cores} cores; {elapsed:.1f} s of load)")
    if gateway_cpus and load_cpus:
        sharing = (
            f"NOTE: the gateway runs on CPU {_cpu_list(gateway_cpus)}; the load generator "
            f"and the fake upstream share CPU {_cpu_list(load_cpus)} (both directly and "
            "through the gateway)."
        )
    else:
        sharing = (
            f"NOTE: the load generator, the gateway and the fake upstream share the {cores} "
            "cores of this machine; every figure includes that contention."
        )
    print(sharing)
    print(
        f"(a) {args.streams} concurrent streams for {args.seconds:.0f} s, a chunk every "
        f"{args.interval * 1000:.0f} ms ({args.chunks} chunks each), per-chunk delivery "
        "latency in ms:"
    )
    print(f"    {'':10} {'chunks':>7} {'p50':>8} {'p99':>8} {'mean':>8}")
    for name, values in (("direct", d_stream), ("gateway", g_stream)):
        print(
            f"    {name:10} {len(values):7d} {_pct(values, 0.5):8.2f} "
            f"{_pct(values, 0.99):8.2f} {statistics.fmean(values):8.2f}"
        )
    added50 = _pct(g_stream, 0.5) - _pct(d_stream, 0.5)
    added99 = _pct(g_stream, 0.99) - _pct(d_stream, 0.99)
    verdict = "met" if added99 < 5.0 else "NOT met"
    print(
        f"    added by the gateway: p50 {added50:.2f} ms, p99 {added99:.2f} ms "
        f"(target p99 < 5 ms: {verdict})"
    )
    if _pct(d_stream, 0.99) > 10:
        # The direct p99 is the load generator's own queueing: a difference of
        # percentiles this noisy cannot show a few milliseconds either way.
        print(
            "    CAUTION: the direct p99 is above 10 ms, so the load generator itself is "
            "saturated; the added figure is within its noise (run on more cores)"
        )
    print("(b) non-streaming requests per second at concurrency 10:")
    print(f"    direct {d_rps:8.1f} req/s")
    print(f"    gateway {g_rps:7.1f} req/s ({g_rps / d_rps:.0%} of direct)")
    print(f"    provenance events written by the gateway: {events}")
    return {
        "cores": cores,
        "pinned": bool(gateway_cpus),
        "sharing": sharing,
        "load_seconds": elapsed,
        "streams": args.streams,
        "chunks": args.chunks,
        "interval_ms": args.interval * 1000,
        "direct_chunks": len(d_stream),
        "gateway_chunks": len(g_stream),
        "direct_p50_ms": _pct(d_stream, 0.5),
        "direct_p99_ms": _pct(d_stream, 0.99),
        "gateway_p50_ms": _pct(g_stream, 0.5),
        "gateway_p99_ms": _pct(g_stream, 0.99),
        "added_p50_ms": added50,
        "added_p99_ms": added99,
        "direct_rps": d_rps,
        "gateway_rps": g_rps,
        "events": events,
    }


if __name__ == "__main__":
    sys.exit(main())
