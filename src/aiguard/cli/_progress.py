"""The one progress bar every command draws on stderr (dataset, report, verify).

    preparing [#########---------------------]  30.0%  78.1/260.0 MB  1,234,567 records
    verifying  1,234,567 records                  (a database log: no total is known)

Redrawn in place on one line, only when the shown figure changes; a new phase starts
on a new line. Commands draw it only when stderr is a terminal unless told otherwise.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``bar(phase, done, total, records)``; ``total <= 0`` means unknown (records only)."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._phase: str | None = None
        self._shown: tuple[int, int] | None = None

    def __call__(self, phase: str, done: int, total: int, records: int) -> None:
        if phase != self._phase:
            if self._phase is not None:
                self.stream.write("\n")
            self._phase, self._shown = phase, None
        if total > 0:
            permille = min(1000, max(0, done) * 1000 // total)
            key = (permille, -1)
            if key == self._shown:
                return
            filled = self.WIDTH * permille // 1000
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = (
                f"{phase:<9} [{bar}] {permille / 10:5.1f}%  "
                f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB  {records:,} records"
            )
        else:
            key = (-1, records)
            if key == self._shown:
                return
            text = f"{phase:<9}  {records:,} records"
        self._shown = key
        self.stream.write("\r" + text)
        self.stream.flush()

    def done(self) -> None:
        """End the line, if anything was drawn."""
        if self._phase is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._phase = None
