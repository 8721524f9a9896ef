"""What a call would cost if detection cost nothing: the floor under any faster scanner.

Run: python benchmarks/bench_floor.py [--rounds N] [--json]

bench_call's figures hold detection (the message going out, the answer coming back)
and everything around it: the decision, the tokens, the chained event, the transport.
This script runs bench_call twice per round in fresh interpreters, once as it is and
once with every detector's answer remembered per text after its first call, so that
detection costs a dictionary lookup and all else is unchanged. The second figure is
what no scanner, compiled or not, can go below. Medians of ``--rounds`` interleaved
runs; about 20 s a round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from _report import report, run_child

HERE = Path(__file__).resolve().parent

# The child: with "free", each detector class answers a text it has seen from memory.
CHILD = r"""
import sys
sys.path.insert(0, sys.argv[2])
from aiguard.classify import detectors
from aiguard.classify._engine import BuiltinDetector

def remembered(detect):
    seen = {}

    def remembered_detect(self, text):
        key = (id(self), text)
        if key not in seen:
            seen[key] = detect(self, text)
        return list(seen[key])

    return remembered_detect

if sys.argv[1] == "free":
    for cls in (BuiltinDetector, detectors.RegexDetector):
        cls.detect = remembered(cls.detect)
import bench_call
bench_call.main(["--json"])
"""

LABELS = {
    "detect_us": "detect(message), 250 chars",
    "protect_us": "guard.protect(message) incl. event",
    "added_us": "=> added by the guard per SDK call",
    "protect_after_sdk_us": "guard.protect right after an SDK call",
}


def _bench(mode: str) -> dict[str, float]:
    out = run_child(
        [sys.executable, "-c", CHILD, mode, str(HERE)], f"bench_call ({mode})", cwd=HERE
    )
    figures: dict[str, float] = json.loads(out)
    return figures


def measure(rounds: int) -> dict[str, float]:
    runs: dict[str, list[dict[str, float]]] = {"real": [], "free": []}
    for _ in range(rounds):
        for mode, results in runs.items():
            results.append(_bench(mode))
    figures: dict[str, float] = {}
    width = max(len(label) for label in LABELS.values())
    print(f"medians of {rounds} bench_call runs each, µs")
    print(f"{'operation'.ljust(width)}  {'as is':>9}  {'free detection':>14}")
    for key, label in LABELS.items():
        real = statistics.median(run[key] for run in runs["real"])
        free = statistics.median(run[key] for run in runs["free"])
        figures[f"real_{key}"], figures[f"free_{key}"] = real, free
        print(f"{label.ljust(width)}  {real:9.1f}  {free:14.1f}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="bench_call runs per mode")
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    return report(lambda: measure(args.rounds), args.json)


if __name__ == "__main__":
    sys.exit(main())
