"""Cost of streaming restore: time added per SSE chunk and peak memory per answer size.

Run: ``python benchmarks/bench_streaming.py``. The upstream is a local mock that makes
its events lazily, so the peak memory shown is what the guard itself keeps; with a
constant peak across answer sizes, memory does not grow with the answer.

``--size-kb N`` sets the answer size of the per-chunk table (default 1024, the 1 MB
answer); ``--json`` sends the tables to stderr and prints the figures as one JSON
object on stdout (what benchmarks/run_all.py reads).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

from _report import report

import aiguard
from aiguard.doors.streaming import StreamRestorer, TokenRestorer
from aiguard.doors.transport import module_for
from aiguard.vault.tokens import TOKEN_RE

URL = "https://api.openai.com/v1/chat/completions"
EMAIL = "jane.doe@example.com"
SENTENCE = "The customer {token} asked about the invoice; we replied within the hour. "


def events(token: str, size: int, chars: int) -> Iterator[bytes]:
    """A chat completion stream of ``size`` characters, ``chars`` characters per event."""
    base = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    text = SENTENCE.format(token=token)
    produced = 0
    offset = 0
    while produced < size:
        piece = (text * 2)[offset : offset + chars]
        offset = (offset + chars) % len(text)
        produced += len(piece)
        delta = json.dumps({"content": piece}, separators=(",", ":"))  # as OpenAI writes it
        yield f'data: {base}[{{"index":0,"delta":{delta}}}]}}\n\n'.encode()
    yield f'data: {base}[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}\n\n'.encode()
    yield b"data: [DONE]\n\n"


def make_transport(module: Any, size: int, chars: int) -> Any:
    def handle(request: Any) -> Any:
        found = TOKEN_RE.search(request.read().decode())
        token = found.group(0) if found else EMAIL
        return module.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=events(token, size, chars),
        )

    return module.MockTransport(handle)


def guard() -> aiguard.Guard:
    policy = aiguard.Policy(
        destinations={
            "openai": aiguard.DestinationPolicy(
                base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
            )
        }
    )
    return aiguard.Guard(policy, sinks=[aiguard.InMemorySink()])


BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"Hi {EMAIL}"}]}


def run(client: Any) -> tuple[int, int]:
    """Stream one answer; return (bytes, chunks) the caller received."""
    total = chunks = 0
    with client.stream("POST", URL, json=BODY) as response:
        for chunk in response.iter_bytes():
            total += len(chunk)
            chunks += 1
    return total, chunks


def timed(size: int, chars: int, guarded: bool) -> tuple[float, int]:
    g = guard()
    module = module_for(None)
    transport = make_transport(module, size, chars)
    client = g.http_client(transport=transport) if guarded else module.Client(transport=transport)
    n_events = -(-size // chars) + 2
    start = time.perf_counter()
    with g.context(subject="cust-1", purpose="inference"):
        run(client)
    return time.perf_counter() - start, n_events


def core_cost(size: int, chars: int, rule: bool = False) -> float:
    """The pure restorer alone, microseconds per event; ``rule`` adds the output rule
    (detectors over each channel's held tail, as the transport runs it)."""
    from aiguard.context import CallContext
    from aiguard.pipeline.call import Call

    token = "[EMAIL_7Q2K]"
    stream = list(events(token, size, chars))
    output_rule = Call(guard(), CallContext(), "openai") if rule else None
    core = StreamRestorer(TokenRestorer({token: EMAIL}.get, output_rule))
    start = time.perf_counter()
    for chunk in stream:
        core.feed(chunk)
    core.close()
    return (time.perf_counter() - start) / len(stream) * 1e6


def tool_core_cost(size: int, chars: int) -> float:
    """Tool-call argument deltas (JSON text, escaped originals) with the output rule."""
    from aiguard.context import CallContext
    from aiguard.pipeline.call import Call

    token = "[EMAIL_7Q2K]"
    args = json.dumps({"to": token, "note": SENTENCE.format(token=token)})
    base = '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":'
    stream = []
    produced = 0
    while produced < size:
        for i in range(0, len(args), chars):
            piece = json.dumps(args[i : i + chars])
            stream.append(f"data: {base}{piece}}}}}]}}}}]}}\n\n".encode())
            produced += chars
    stream.append(b"data: [DONE]\n\n")
    core = StreamRestorer(TokenRestorer({token: EMAIL}.get, Call(guard(), CallContext(), "openai")))
    start = time.perf_counter()
    for chunk in stream:
        core.feed(chunk)
    core.close()
    return (time.perf_counter() - start) / len(stream) * 1e6


def peak(size: int, chars: int) -> int:
    g = guard()
    client = g.http_client(transport=make_transport(module_for(None), size, chars))
    gc.collect()
    tracemalloc.start()
    with g.context(subject="cust-1", purpose="inference"):
        run(client)
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-kb", type=int, default=1024, help="answer size per-chunk table")
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    report(lambda: measure(args.size_kb * 1024), args.json)


def measure(answer: int = 1 << 20) -> dict[str, Any]:
    """Run the benchmark, print its tables and return the figures."""
    mb = 1 << 20
    figures: dict[str, Any] = {"answer_bytes": answer, "per_chunk": {}, "peak_bytes": {}}
    size = "1 MB" if answer == mb else f"{answer // 1024} KB"
    print(f"Added cost per chunk, {size} streamed answer (sync client, mock upstream)")
    print(
        f"{'chars/event':>11} {'events':>8} {'plain us/chunk':>15} {'guarded us/chunk':>17}"
        f" {'added us/chunk':>15} {'core us/chunk':>14} {'core+rule':>10} {'tool+rule':>10}"
    )
    for chars in (4, 16, 64):
        plain, n = min(timed(answer, chars, False) for _ in range(2))
        guarded, _ = min(timed(answer, chars, True) for _ in range(2))
        row = {
            "events": n,
            "plain_us": plain / n * 1e6,
            "guarded_us": guarded / n * 1e6,
            "added_us": (guarded - plain) / n * 1e6,
            "core_us": core_cost(answer, chars),
            "core_rule_us": core_cost(answer, chars, rule=True),
            "tool_rule_us": tool_core_cost(answer, chars),
        }
        figures["per_chunk"][str(chars)] = row
        print(
            f"{chars:>11} {n:>8} {row['plain_us']:>15.2f} {row['guarded_us']:>17.2f}"
            f" {row['added_us']:>15.2f} {row['core_us']:>14.2f}"
            f" {row['core_rule_us']:>10.2f} {row['tool_rule_us']:>10.2f}"
        )
    print()
    print("Peak traced memory while streaming (guarded client, 16 chars/event)")
    print(f"{'answer':>8} {'peak KiB':>9}")
    for size in (mb // 4, mb, 4 * mb):
        top = peak(size, 16)
        figures["peak_bytes"][str(size)] = top
        print(f"{size // 1024:>6}KB {top / 1024:>9.1f}")
    return figures


if __name__ == "__main__":
    main()
