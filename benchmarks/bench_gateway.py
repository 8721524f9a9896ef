"""Load benchmark of the gateway, on loopback only, bounded in time (about 30 s).

Three processes on 127.0.0.1: a fake upstream (Starlette + uvicorn) that streams a chat
chunk every 20 ms, the gateway in front of it (default policy, JSONL provenance in a
temporary directory), and this load generator. Each figure is measured through the
gateway and directly against the upstream in the same run:

(a) 100 concurrent streams: per chunk, the time from the upstream writing it to the
    client reading it (CLOCK_MONOTONIC is system-wide, so the processes share it);
    added latency = gateway figure - direct figure, at p50 and p99 (target p99 < 5 ms);
(b) non-streaming requests per second at concurrency 10.

    python benchmarks/bench_gateway.py [--seconds 5] [--streams 100] [--chunks 25] [--json]

With ``--json`` the report goes to stderr and stdout gets the figures as one JSON object
(what benchmarks/run_all.py reads).

The load generator shares the machine's cores with the gateway and the upstream; on a
2-core machine the figures include that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

EMAIL = "jane.doe@example.com"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the processes -------------------------------------------------------------------------


def run_upstream(port: int, interval: float, chunks: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def chunk(index: int, content: str | None, finish: str | None = None) -> bytes:
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

    async def chat(request: Request) -> Response:
        payload = json.loads(await request.body())
        if not payload.get("stream"):
            return JSONResponse(
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
            )

        async def events() -> AsyncIterator[bytes]:
            # Words end in a space, so the gateway can release each chunk at once.
            for index in range(chunks):
                await asyncio.sleep(interval)
                yield chunk(index, "word ")
            yield chunk(chunks, None, "stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_gateway(port: int, upstream: str, workdir: str) -> None:
    from pathlib import Path

    import uvicorn

    from aiguard.gateway import GatewayConfig, create_app
    from aiguard.gateway.cli import build_guard

    config = GatewayConfig(upstream=upstream, port=port, max_streams=1000)
    guard, _notes = build_guard(config, cwd=Path(workdir))
    app = create_app(guard, config, owns_guard=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def _process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, __file__, *args])
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


async def _one_stream(client: httpx.AsyncClient, url: str) -> list[float]:
    delays: list[float] = []
    async with client.stream("POST", url, json=_body(True)) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                received = time.monotonic_ns()
                data = json.loads(line[6:])
                choice = data["choices"][0] if data.get("choices") else {}
                if "x_sent_ns" in data and choice.get("delta", {}).get("content"):
                    delays.append((received - data["x_sent_ns"]) / 1e6)
    return delays


async def streams(base: str, count: int, rounds: int) -> list[float]:
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        url = base + "/v1/chat/completions"
        await _one_stream(client, url)  # warm up connections and the guard
        delays: list[float] = []
        for _ in range(rounds):
            results = await asyncio.gather(*(_one_stream(client, url) for _ in range(count)))
            for result in results:
                delays.extend(result)
    return delays


async def throughput(base: str, concurrency: int, seconds: float) -> float:
    url = base + "/v1/chat/completions"
    done = 0
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(5):
            (await client.post(url, json=_body(False))).raise_for_status()
        end = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < end:
                response = await client.post(url, json=_body(False))
                response.raise_for_status()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return done / elapsed


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
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args()
    if args.role == "upstream":
        run_upstream(args.port, args.interval, args.chunks)
        return 0
    if args.role == "gateway":
        run_gateway(args.port, args.upstream, args.workdir)
        return 0

    if not args.json:
        bench(args)
        return 0
    with contextlib.redirect_stdout(sys.stderr):
        figures = bench(args)
    print(json.dumps(figures))
    return 0


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load, print the report and return the figures."""
    up_port, gw_port = _free_port(), _free_port()
    direct = f"http://127.0.0.1:{up_port}"
    via = f"http://127.0.0.1:{gw_port}"
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
        ),
    ):
        _wait_listening(up_port)
        _wait_listening(gw_port)
        started = time.monotonic()
        # Throughput first: right after 100 streams the gateway stays slower for a few
        # seconds (see docs/gateway.md), which would measure the aftermath, not (b).
        d_rps = asyncio.run(throughput(direct, 10, args.seconds))
        g_rps = asyncio.run(throughput(via, 10, args.seconds))
        d_stream = asyncio.run(streams(direct, args.streams, args.rounds))
        g_stream = asyncio.run(streams(via, args.streams, args.rounds))
        elapsed = time.monotonic() - started
        with open(os.path.join(workdir, "aiguard-gateway.jsonl"), "rb") as log:
            events = sum(1 for _ in log)

    cores = os.cpu_count()
    print(f"aiguard gateway benchmark (loopback; {cores} cores; {elapsed:.1f} s of load)")
    print(
        f"NOTE: the load generator, the gateway and the fake upstream share the {cores} "
        "cores of this machine; every figure includes that contention."
    )
    print(
        f"(a) {args.streams} concurrent streams x {args.rounds} rounds, a chunk every "
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
        "load_seconds": elapsed,
        "streams": args.streams,
        "rounds": args.rounds,
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
