"""What one call costs in CPU instructions (callgrind): a figure that repeats.

Run: python benchmarks/bench_instructions.py [--against REV] [--src DIR] [--budget OP=K] [--json]

Wall-clock figures on a shared machine move by 10-50 % between runs of the same code,
so a change of a few percent cannot be seen in them. Instructions counted by valgrind's
callgrind can: with a fixed hash seed and fixed vault keys, detect and protect repeat to
within 1k instructions and an SDK call to within about 0.4 % (8k of 2,000k). Each
operation of
bench_call.py (detect, ``guard.protect``, an OpenAI-SDK call through the guard and the
same call without it, against the fake model) runs in a child interpreter under
callgrind twice, with a short and a long loop after the same warm-up; the difference
divided by the extra iterations is the cost of one operation, free of start-up and
import costs.

``--budget OP=K`` (repeatable) makes the script a regression guard: it exits 1 when
operation OP costs more than K thousand instructions, e.g. ``--budget protect=1050
--budget sdk_added=2015``. Wall-clock limits cannot be checked this way on a shared
machine; instruction counts can, since they repeat (bench_call fixes the vault's keys,
so every process issues the same tokens).

``--against REV`` also measures the code of git revision REV (checked out as a
temporary worktree) in the same run and prints both with the change. ``--src DIR``
measures the aiguard package under DIR (a ``src`` directory) instead of this
checkout's. Needs valgrind on PATH (``apt-get install valgrind``); without it the
script says so and reports nothing. About 90 seconds per operation and checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Operation -> (short loop, long loop) iterations. SDK calls cost seven times a protect.
LOOPS = {
    "detect": (200, 600),
    "protect": (100, 300),
    "sdk_guarded": (40, 120),
    "sdk_plain": (40, 120),
}
WARMUP = 50

# The child: the same guard, message and clients as bench_call.py, one operation looped.
CHILD = r"""
import sys
sys.path.insert(0, sys.argv[3])
import aiguard
from aiguard.testing import FakeModel
from bench_call import MESSAGE, setup

# An editable install must not shadow the checkout being measured.
assert aiguard.__file__.startswith(sys.argv[4]), (aiguard.__file__, sys.argv[4])
guard, ctx = setup()
what, count = sys.argv[1], int(sys.argv[2])
if what == "detect":
    def op():
        guard.detect(MESSAGE)
elif what == "protect":
    def op():
        guard.protect(MESSAGE, ctx)
else:
    import openai
    fake = FakeModel()
    client_type = type(guard.http_client(transport=fake.transport))
    http_client = (
        guard.http_client(transport=fake.transport)
        if what == "sdk_guarded"
        else client_type(transport=fake.transport)
    )
    client = openai.OpenAI(
        http_client=http_client, base_url="https://api.openai.com/v1", api_key="k", max_retries=0
    )
    messages = [{"role": "user", "content": MESSAGE}]
    if what == "sdk_guarded":
        def op():
            with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
                client.chat.completions.create(model="gpt-4o", messages=messages)
    else:  # as bench_call's plain call: no guard, so no guard.context either
        def op():
            client.chat.completions.create(model="gpt-4o", messages=messages)
for _ in range(WARMUP):
    op()
for _ in range(count):
    op()
""".replace("WARMUP", str(WARMUP))

_COLLECTED = re.compile(r"Collected : (\d+)")


def _instructions(src: Path, what: str, count: int, script: Path) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(src)}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(script),
            what,
            str(count),
            str(HERE),
            str(src.resolve()),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {what} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_operation(src: Path, script: Path) -> dict[str, float]:
    """Instructions per operation for the aiguard package under ``src``."""
    out: dict[str, float] = {}
    for what, (short, long) in LOOPS.items():
        low = _instructions(src, what, short, script)
        high = _instructions(src, what, long, script)
        out[what] = (high - low) / (long - short)
    out["sdk_added"] = out["sdk_guarded"] - out["sdk_plain"]
    return out


def _worktree(rev: str, into: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(into), rev],
        check=True,
        capture_output=True,
    )
    return into / "src"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="REV", help="also measure git revision REV")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the src dir to measure")
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    parser.add_argument(
        "--budget",
        type=_budget,
        action="append",
        default=[],
        metavar="OP=K",
        help="exit 1 when OP costs more than K thousand instructions (repeatable); OP is "
        f"one of {', '.join(LABELS)}",
    )
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}

    def run() -> dict[str, float]:
        figures.update(measure(args.src, args.against))
        return figures

    return report(run, args.json) or over_budget(figures, dict(args.budget))


def _budget(text: str) -> tuple[str, float]:
    op, sep, limit = text.partition("=")
    if not sep or op not in LABELS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write OP=K with OP one of {', '.join(LABELS)} (e.g. protect=1050)"
        )
    try:
        return op, float(limit)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: K is thousands of instructions, a number (e.g. protect=1050)"
        ) from None


def over_budget(figures: dict[str, float], budgets: dict[str, float]) -> int:
    """1 (and a line on stderr per operation) when an operation costs more than its budget."""
    if budgets and not figures:
        print("over budget: nothing was measured (is valgrind installed?)", file=sys.stderr)
        return 1
    over = [(op, figures[f"{op}_kir"], k) for op, k in budgets.items() if figures[f"{op}_kir"] > k]
    for op, cost, k in over:
        message = f"over budget: {op} costs {cost:,.1f}k instructions, budget {k:,.1f}k"
        print(message, file=sys.stderr)
    return 1 if over else 0


LABELS = {
    "detect": "detect(message), 250 chars",
    "protect": "guard.protect(message) incl. event",
    "sdk_guarded": "SDK call through guard (fake model)",
    "sdk_plain": "SDK call without guard (fake model)",
    "sdk_added": "=> added by the guard per call",
}


def measure(src: Path, against: str | None) -> dict[str, float]:
    """Print the table and return the figures (instructions per operation, thousands)."""
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing measured")
        return {}
    with tempfile.TemporaryDirectory(prefix="aiguard-ir-") as tmp:
        script = Path(tmp) / "child.py"
        script.write_text(CHILD)
        current = per_operation(src, script)
        base: dict[str, float] | None = None
        if against is not None:
            tree = Path(tmp) / "base"
            try:
                base = per_operation(_worktree(against, tree), script)
            finally:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                    capture_output=True,
                )
    width = max(len(label) for label in LABELS.values())
    if base is None:
        print(f"{'operation'.ljust(width)}  k instructions/op")
        for key, label in LABELS.items():
            print(f"{label.ljust(width)}  {current[key] / 1000:10.1f}")
    else:
        print(f"{'operation'.ljust(width)}  {against:>10}  {'this':>10}  change")
        for key, label in LABELS.items():
            change = (current[key] - base[key]) / base[key] * 100
            print(
                f"{label.ljust(width)}  {base[key] / 1000:10.1f}  {current[key] / 1000:10.1f}"
                f"  {change:+6.1f}%"
            )
    figures = {f"{key}_kir": round(value / 1000, 1) for key, value in current.items()}
    if base is not None:
        figures.update({f"base_{key}_kir": round(value / 1000, 1) for key, value in base.items()})
    return figures


if __name__ == "__main__":
    sys.exit(main())
