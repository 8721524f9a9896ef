"""How every benchmark script reports: a table on stdout, or with ``--json`` the table on
stderr and the figures on stdout as one JSON object (what run_all.py reads)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any


def report(measure: Callable[[], dict[str, Any]], as_json: bool) -> int:
    """Run ``measure`` (which prints its table and returns its figures); exit code 0."""
    if not as_json:
        measure()
        return 0
    with contextlib.redirect_stdout(sys.stderr):
        figures = measure()
    print(json.dumps(figures))
    return 0


def run_child(command: list[str], what: str, **options: Any) -> str:
    """Run ``command`` (options as for `subprocess.run`) and return its stdout; raise
    RuntimeError with the end of its output, named ``what``, when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, **options)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout
