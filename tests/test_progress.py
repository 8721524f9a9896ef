"""The one progress bar of the commands: same style everywhere, redrawn only on change."""

from __future__ import annotations

import io

from aiguard.cli._progress import ProgressBar


def test_known_total_draws_a_bar_with_bytes_and_records() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)
    bar("reading", 0, 2_000_000, 0)
    bar("reading", 1, 2_000_000, 1)  # same permille: not redrawn
    bar("reading", 2_000_000, 2_000_000, 10)
    bar.done()
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 2
    assert frames[-1] == ("reading   [" + "#" * 30 + "] 100.0%  2.0/2.0 MB  10 records\n")


def test_unknown_total_counts_records_and_phases_start_new_lines() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)
    bar("verifying", 0, 0, 10_000)
    bar("reading", 0, 0, 5_000)
    bar.done()
    assert out.getvalue() == "\rverifying  10,000 records\n\rreading    5,000 records\n"
