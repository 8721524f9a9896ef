"""Provenance throughput: the floor, appending with group commit, the call-path cost, verify.

Run: python benchmarks/bench_provenance.py [EVENTS] [--json]
  floor              a bare loop of json.dumps (sorted, compact) + SHA-256 over the same events
  append (sync)      ProvenanceLog without a writer thread, JSONL, no fsync
  append (bg)        background writer with the library's defaults, group commit to JSONL,
                     fsync per batch; events/s from the first append to the last record
                     durable on disk; for documents given to `append` (checked against
                     the canonical domain) and for aiguard's own events (built in it)
  call path (bg)     what `append` costs the caller (build the document, hand it over),
                     with a queue that never fills
  verify             aiguard's verifier over the written file

The process pins itself to one CPU where the OS allows it (the target is "on one core":
the caller and the writer thread share it, as they share the GIL anyway), and the 50,000
prepared sample events are moved out of the garbage collector's sight (``gc.freeze``)
so that collections walk what each row allocates, not the benchmark's own fixture.

With ``--json`` the table goes to stderr and stdout gets the figures as one JSON object
(what benchmarks/run_all.py reads).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import report

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


def pin_to_one_cpu() -> int | None:
    """Run on one CPU (the lowest this process may use); None where it cannot be set."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def best(runs: int, fn: Any) -> Any:
    results = [fn() for _ in range(runs)]
    return max(results, key=lambda r: r[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", nargs="?", type=int, default=50_000)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    return report(lambda: measure(args.events), args.json)


def measure(count: int) -> dict[str, float]:
    """Run the benchmark, print its table and return the figures."""
    figures: dict[str, float] = {"events": count}
    cpu = pin_to_one_cpu()
    events = [sample_event(i) for i in range(count)]
    gc.collect()
    gc.freeze()
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

        def bg_run(trusted: bool, unbounded: bool) -> tuple[float, float, Path]:
            # Throughput runs use the library's defaults (queue 10,000, batch 512), so the
            # caller blocks when the writer is behind; call-path runs give the queue room
            # for every event, so that blocking is not counted as call-path work.
            path = Path(tmp) / f"bg-{time.monotonic_ns()}.jsonl"
            options: dict[str, Any] = {"queue_size": count + 10} if unbounded else {}
            log = ProvenanceLog(
                "bench", [JsonlSink(path, fsync="always")], background=True, **options
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

        for trusted, label, key in (
            (False, "documents given to append (domain-checked)", ""),
            (True, "aiguard's own events", "own_"),
        ):
            rate, _, path = best(3, lambda t=trusted: bg_run(t, unbounded=False))
            figures[f"{key}background_per_s"] = rate
            rows.append(
                (
                    f"append, background group commit + fsync: {label}",
                    f"{rate:,.0f} events/s ({rate / floor_rate:.2f}x floor)",
                )
            )
            runs = [bg_run(trusted, unbounded=True) for _ in range(3)]
            call_us = min(run[1] for run in runs)
            figures[f"{key}call_path_us"] = call_us
            rows.append((f"call path per append: {label}", f"{call_us:.1f} µs"))

        def verify_run() -> tuple[float, None]:
            start = time.perf_counter()
            report = verify_file(path)
            assert report.ok
            return report.records / (time.perf_counter() - start), None

        rate, _ = best(3, verify_run)
        figures["verify_per_s"] = rate
        rows.append(("verify (JSONL)", f"{rate:,.0f} records/s ({rate / floor_rate:.2f}x floor)"))
    width = max(len(name) for name, _ in rows)
    where = f"pinned to CPU {cpu}" if cpu is not None else "not pinned (no affinity API)"
    print(f"{count:,} events, {where}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return figures


if __name__ == "__main__":
    sys.exit(main())
