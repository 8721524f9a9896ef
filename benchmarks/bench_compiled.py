"""What compiling the hot modules with mypyc does to bench_call's figures.

Run: python benchmarks/bench_compiled.py [--rounds N] [--instructions] [--json]

The call path is pure Python, and the question a compiled scanner would answer is how
much of a call's cost is the interpreter. mypyc (it ships with mypy, a dev dependency)
compiles the same source, already ``mypy --strict`` clean, to C extensions: no second
implementation to keep in step. This script copies ``src/aiguard`` into a temporary
directory, compiles `COMPILED` there, checks that the compiled detectors find exactly
what the interpreted ones find on bench_call's message and on the detection corpus,
then runs bench_call.py against each build in turn (``--rounds`` times, interleaved;
the table shows medians) and, with ``--instructions``, bench_instructions.py too.

Needs a C compiler and the Python headers; about a minute to build, 20 s per round.
It measures; aiguard does not ship a compiled build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _report import report, run_child

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: The modules a protected call spends its Python time in: detection, the pipeline, the
#: vault's digests, the event's encoding. Left out because mypyc 2.4 cannot build them:
#: ``classify/_finding.py`` (its runtime-checkable Protocol fails at import),
#: ``provenance/chain.py`` (an attribute ``_thread`` becomes C's ``__thread`` keyword)
#: and ``policy/model.py`` (the generated C misnames ``pydantic.main``).
COMPILED = (
    "aiguard/classify/_engine.py",
    "aiguard/classify/_validators.py",
    "aiguard/classify/_decode.py",
    "aiguard/classify/_normalize.py",
    "aiguard/classify/detectors.py",
    "aiguard/pipeline/call.py",
    "aiguard/vault/_crypto.py",
    "aiguard/_hmac.py",
    "aiguard/provenance/canonical.py",
)

# Run in each build: the findings on bench_call's message and the corpus, as JSON.
_FINDINGS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import aiguard
from bench_call import MESSAGE, setup
from corpus import generate

guard, _ctx = setup()
texts = [MESSAGE] + [sample.text for sample in generate(7, "dense", 300)]
print(json.dumps({
    "module": aiguard.classify._engine.__file__,
    "findings": [[(f.start, f.end, f.kind) for f in guard.detect(text)] for text in texts],
}))
"""


def build(into: Path) -> Path:
    """A copy of the package under ``into`` with `COMPILED` compiled; returns ``into``."""
    shutil.copytree(ROOT / "src" / "aiguard", into / "aiguard")
    run_child([sys.executable, "-m", "mypyc", *COMPILED], "mypyc", cwd=into)
    return into


def _run(args: list[str], src: Path | None) -> str:
    env = dict(os.environ)
    if src is not None:
        # PYTHONPATH comes before an editable install's path, so the copy is imported.
        env["PYTHONPATH"] = str(src)
    return run_child([sys.executable, *args], " ".join(args), cwd=HERE, env=env)


def same_findings(compiled: Path, tmp: Path) -> int:
    """Check both builds find the same spans; the number of texts compared."""
    script = tmp / "findings.py"
    script.write_text(_FINDINGS)
    plain = json.loads(_run([str(script), str(HERE)], None))
    native = json.loads(_run([str(script), str(HERE)], compiled))
    if not native["module"].endswith(".so") or plain["module"].endswith(".so"):
        raise RuntimeError(f"the builds are not what they should be: {plain} / {native}")
    if plain["findings"] != native["findings"]:
        raise RuntimeError("the compiled detectors find something else than the source")
    return len(plain["findings"])


LABELS = {
    "detect_us": "detect(message), 250 chars",
    "protect_us": "guard.protect(message) incl. event",
    "added_us": "=> added by the guard per SDK call",
    "protect_after_sdk_us": "guard.protect right after an SDK call",
}
INSTRUCTION_LABELS = {
    "detect_kir": "detect, k instructions",
    "protect_kir": "guard.protect, k instructions",
    "sdk_added_kir": "added per SDK call, k instructions",
}


def measure(rounds: int, instructions: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="aiguard-mypyc-") as name:
        tmp = Path(name)
        compiled = build(tmp / "build")
        texts = same_findings(compiled, tmp)
        runs: dict[str, list[dict[str, float]]] = {"source": [], "mypyc": []}
        for _ in range(rounds):
            runs["source"].append(json.loads(_run(["bench_call.py", "--json"], None)))
            runs["mypyc"].append(json.loads(_run(["bench_call.py", "--json"], compiled)))
        rows = {
            key: (
                statistics.median(run[key] for run in runs["source"]),
                statistics.median(run[key] for run in runs["mypyc"]),
            )
            for key in LABELS
        }
        labels = dict(LABELS)
        if instructions:
            source = json.loads(_run(["bench_instructions.py", "--json"], None))
            native = json.loads(
                _run(["bench_instructions.py", "--json", "--src", str(compiled)], None)
            )
            rows.update({key: (source[key], native[key]) for key in INSTRUCTION_LABELS})
            labels.update(INSTRUCTION_LABELS)
    width = max(len(label) for label in labels.values())
    print(f"same findings on {texts} texts; µs are medians of {rounds} bench_call runs each")
    print(f"{'operation'.ljust(width)}  {'source':>9}  {'mypyc':>9}  change")
    for key, label in labels.items():
        before, after = rows[key]
        print(
            f"{label.ljust(width)}  {before:9.1f}  {after:9.1f}  "
            f"{(after - before) / before * 100:+6.1f}%"
        )
    figures = {f"source_{key}": value[0] for key, value in rows.items()}
    figures.update({f"mypyc_{key}": value[1] for key, value in rows.items()})
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="bench_call runs per build")
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (callgrind)"
    )
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    return report(lambda: measure(args.rounds, args.instructions), args.json)


if __name__ == "__main__":
    sys.exit(main())
