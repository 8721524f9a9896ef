"""Run one fuzz target under atheris (libFuzzer): ``python fuzz/run.py sse [libFuzzer args]``.

Targets: sse, json_walk, token_scanner, policy_loader (fuzz/targets.py). Seeds live in
fuzz/corpus/<target>/. See docs/fuzzing.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["aiguard"]):
        import targets

    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        raise SystemExit(f"usage: run.py {{{','.join(targets.TARGETS)}}} [libFuzzer options]")
    target = targets.TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
