"""Why the guard's work costs more inside an SDK call than in a loop: simulated caches.

Run: python benchmarks/bench_cache.py [--json]

bench_call times ``guard.protect`` in a tight loop and again right after a plain SDK
call, and the second figure is about 1.5 times the first with the same instructions.
This script counts where that goes with valgrind's cachegrind, which simulates the
caches (32 KiB L1 instruction and data caches, a 1 MiB unified L2 as the last level,
as on this project's machines) and the branch predictor. Three loops run in a child
interpreter after the same warm-up:

- ``protect``: ``guard.protect`` of bench_call's message, over and over;
- ``sdk``: a plain OpenAI-SDK call against the fake model, over and over;
- ``sdk+protect``: the plain SDK call, then ``guard.protect``.

Each runs with a short and a long loop; the difference per extra iteration is one
iteration's cost, free of start-up. ``sdk+protect`` minus ``sdk`` is what ``protect``
costs inside a call, set beside ``protect`` alone. The functions that take the most
extra L2 misses inside the call are listed too: they say what was evicted. Needs
valgrind; about five minutes.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _report import report, run_child

HERE = Path(__file__).resolve().parent
LOOPS = (50, 250)
CACHES = ("--I1=32768,8,64", "--D1=32768,8,64", "--LL=1048576,16,64")

CHILD = r"""
import sys
sys.path.insert(0, sys.argv[3])
import openai
from aiguard.testing import FakeModel
from bench_call import MESSAGE, setup

guard, ctx = setup()
fake = FakeModel()
plain = openai.OpenAI(
    http_client=type(guard.http_client(transport=fake.transport))(transport=fake.transport),
    base_url="https://api.openai.com/v1", api_key="k", max_retries=0,
)
messages = [{"role": "user", "content": MESSAGE}]

def sdk():
    plain.chat.completions.create(model="gpt-4o", messages=messages)

def protect():
    guard.protect(MESSAGE, ctx)

def both():
    sdk()
    protect()

for _ in range(50):
    both()
op = {"protect": protect, "sdk": sdk, "sdk+protect": both}[sys.argv[1]]
for _ in range(int(sys.argv[2])):
    op()
"""

MODES = ("protect", "sdk", "sdk+protect")
EVENTS = {
    "Ir": "instructions",
    "I1mr": "L1 instruction misses",
    "D1mr": "L1 data read misses",
    "ILmr": "L2 misses, instructions",
    "DLmr": "L2 misses, data reads",
    "DLmw": "L2 misses, data writes",
    "Bcm": "mispredicted branches",
    "Bim": "mispredicted indirect jumps",
}

Counts = dict[tuple[str, str], list[int]]


def _run(mode: str, count: int, script: Path, out: Path) -> tuple[list[str], Counts]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    run_child(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=yes",
            "--branch-sim=yes",
            *CACHES,
            f"--cachegrind-out-file={out}",
            sys.executable,
            str(script),
            mode,
            str(count),
            str(HERE),
        ],
        f"cachegrind run of {mode}",
        env=env,
    )
    return _parse(out)


def _parse(path: Path) -> tuple[list[str], Counts]:
    """Per (file, function) totals of a cachegrind output file."""
    events: list[str] = []
    counts: Counts = {}
    where = ("", "")
    for line in path.read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("fl="):
            where = (line[3:].rsplit("/", 1)[-1], where[1])
        elif line.startswith("fn="):
            where = (where[0], line[3:])
        elif line[:1].isdigit():
            values = [int(v) for v in line.split()[1:]]
            total = counts.setdefault(where, [0] * len(events))
            for i, value in enumerate(values):
                total[i] += value
    return events, counts


def _per_iteration(short: Counts, long: Counts, width: int) -> dict[tuple[str, str], list[float]]:
    zero = [0] * width
    span = LOOPS[1] - LOOPS[0]
    out = {}
    for key in set(short) | set(long):
        pairs = zip(short.get(key, zero), long.get(key, zero), strict=True)
        out[key] = [(b - a) / span for a, b in pairs]
    return out


def measure() -> dict[str, float]:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing measured")
        return {}
    with tempfile.TemporaryDirectory(prefix="aiguard-cache-") as name:
        tmp = Path(name)
        script = tmp / "child.py"
        script.write_text(CHILD)
        jobs = [(mode, count) for mode in MODES for count in LOOPS]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            results = list(
                pool.map(lambda job: _run(*job, script, tmp / f"{job[0]}.{job[1]}.out"), jobs)
            )
    events = results[0][0]
    index = {event: i for i, event in enumerate(events)}
    runs = dict(zip(jobs, (counts for _, counts in results), strict=True))
    per = {
        mode: _per_iteration(runs[(mode, LOOPS[0])], runs[(mode, LOOPS[1])], len(events))
        for mode in MODES
    }
    totals = {
        mode: [sum(values[i] for values in per[mode].values()) for i in range(len(events))]
        for mode in MODES
    }
    in_call = [after - sdk for after, sdk in zip(totals["sdk+protect"], totals["sdk"], strict=True)]
    width = max(len(label) for label in EVENTS.values())
    print("per guard.protect of bench_call's message")
    print(f"{'event'.ljust(width)}  {'in a loop':>10}  {'in a call':>10}")
    figures: dict[str, float] = {}
    for event, label in EVENTS.items():
        alone, inside = totals["protect"][index[event]], in_call[index[event]]
        print(f"{label.ljust(width)}  {alone:10.0f}  {inside:10.0f}")
        figures[f"loop_{event}"] = round(alone)
        figures[f"call_{event}"] = round(inside)

    def l2(values: list[float]) -> float:
        return values[index["ILmr"]] + values[index["DLmr"]] + values[index["DLmw"]]

    extra: collections.Counter[str] = collections.Counter()
    zero = [0.0] * len(events)
    for key in set(per["sdk+protect"]) | set(per["sdk"]) | set(per["protect"]):
        gained = (
            l2(per["sdk+protect"].get(key, zero))
            - l2(per["sdk"].get(key, zero))
            - l2(per["protect"].get(key, zero))
        )
        extra[f"{key[0]}:{key[1]}"] += gained
    print("\nextra L2 misses per protect inside the call, by function (top 10)")
    for where, gained in extra.most_common(10):
        print(f"{gained:8.0f}  {where}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    return report(measure, args.json)


if __name__ == "__main__":
    sys.exit(main())
