"""Provenance throughput: the floor, appending with group commit, the call-path cost, verify.

Run: python benchmarks/bench_provenance.py [EVENTS] [--json]
  floor              a bare loop of json.dumps (sorted, compact) + SHA-256 over the same events
  append (sync)      ProvenanceLog without a writer thread, JSONL, no fsync
  append (bg)        background writer, group commit to JSONL, fsync per batch; events/s
                     from the first append to the last record durable on disk
  call path (bg)     what `append` costs the caller (build the document, hand it over)
  verify             aiguard's verifier over the written file

With ``--json`` the table goes to stderr and stdout gets the figures as one JSON object
(what benchmarks/run_all.py reads).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiguard.provenance import JsonlSink, ProvenanceLog, verify_file


def sample_event(i: int) -> dict[str, Any]:
    return {
        "type": "call",
        "request_id": f"req_{i:012d}",
        "attempt": 1,
        "tenant": "acme",
        "subject": "hmac-sha256:k1:" + "ab" * 32,
        "destination": "openai",
        "purpose": "inference",
        "legal_basis": "contract",
        "consent": {"use_for_training": False},
        "decision": "allow",
        "findings": {"email": 1, "person": 2, "credit_card": 1},
        "levels": {"sensitive": 3, "regulated": 1},
        "actions": {"tokenize": 4},
        "tokens": ["EMAIL_7Q2K", "PERSON_AB12", "PERSON_CD34", "CREDIT_CARD_9XYZ"],
        "input_digest": "hmac-sha256:k1:" + "cd" * 32,
        "output_digest": "hmac-sha256:k1:" + "ef" * 32,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 64,
        "latency_us": 812,
        "status": "ok",
        "http_status": 200,
    }


def floor(events: list[dict[str, Any]]) -> float:
    prev = "0" * 64
    start = time.perf_counter()
    for i, event in enumerate(events):
        document = dict(event, seq=i, prev=prev)
        prev = hashlib.sha256(
            json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()
    return len(events) / (time.perf_counter() - start)


def best(runs: int, fn: Any) -> Any:
    results = [fn() for _ in range(runs)]
    return max(results, key=lambda r: r[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", nargs="?", type=int, default=50_000)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    if not args.json:
        measure(args.events)
        return 0
    with contextlib.redirect_stdout(sys.stderr):
        figures = measure(args.events)
    print(json.dumps(figures))
    return 0


def measure(count: int) -> dict[str, float]:
    """Run the benchmark, print its table and return the figures."""
    figures: dict[str, float] = {"events": count}
    events = [sample_event(i) for i in range(count)]
    rows: list[tuple[str, str]] = []
    floor_rate = max(floor(events) for _ in range(3))
    figures["floor_per_s"] = floor_rate
    rows.append(("floor: json.dumps + sha256", f"{floor_rate:,.0f} events/s"))
    with tempfile.TemporaryDirectory() as tmp:

        def sync_run() -> tuple[float, Path]:
            path = Path(tmp) / f"sync-{time.monotonic_ns()}.jsonl"
            log = ProvenanceLog("bench", [JsonlSink(path)])
            start = time.perf_counter()
            for event in events:
                log.append(event)
            log.close()
            return count / (time.perf_counter() - start), path

        rate, _ = best(3, sync_run)
        figures["sync_per_s"] = rate
        rows.append(
            ("append, synchronous, JSONL", f"{rate:,.0f} events/s ({rate / floor_rate:.2f}x floor)")
        )

        def bg_run(trusted: bool = False) -> tuple[float, float, Path]:
            path = Path(tmp) / f"bg-{time.monotonic_ns()}.jsonl"
            log = ProvenanceLog(
                "bench",
                [JsonlSink(path, fsync="always")],
                background=True,
                queue_size=count + 10,
                batch_size=2048,
            )
            start = time.perf_counter()
            receipt = None
            for event in events:
                receipt = log.append(event, trusted=trusted)
            handed_over = time.perf_counter() - start
            assert receipt is not None
            receipt.wait(120)
            total = time.perf_counter() - start
            log.close()
            return count / total, handed_over / count * 1e6, path

        rate, call_us, path = best(3, bg_run)
        figures["background_per_s"], figures["call_path_us"] = rate, call_us
        rows.append(
            (
                "append, background group commit + fsync",
                f"{rate:,.0f} events/s ({rate / floor_rate:.2f}x floor)",
            )
        )
        rows.append(("call path per append (background)", f"{call_us:.1f} µs"))
        # The guard's own events are built from safe types and skip the domain check.
        rate, call_us, _ = best(3, lambda: bg_run(trusted=True))
        figures["own_background_per_s"], figures["own_call_path_us"] = rate, call_us
        rows.append(
            (
                "append, background, aiguard's own events",
                f"{rate:,.0f} events/s ({rate / floor_rate:.2f}x floor)",
            )
        )
        rows.append(("call path per append (own events)", f"{call_us:.1f} µs"))

        def verify_run() -> tuple[float, None]:
            start = time.perf_counter()
            report = verify_file(path)
            assert report.ok
            return report.records / (time.perf_counter() - start), None

        rate, _ = best(3, verify_run)
        figures["verify_per_s"] = rate
        rows.append(("verify (JSONL)", f"{rate:,.0f} records/s ({rate / floor_rate:.2f}x floor)"))
    width = max(len(name) for name, _ in rows)
    print(f"{count:,} events")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return figures


if __name__ == "__main__":
    sys.exit(main())
