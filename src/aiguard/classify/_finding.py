"""The value object every detector returns, and the protocol detectors implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .levels import Level

__all__ = ["Detector", "Finding"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A span ``text[start:end]`` of some kind and level. It holds no copy of the value.

    ``score`` is the detector's confidence in [0, 1]: 1.0 for a value whose checksum
    or structure proves it, lower when only the shape and nearby context words agree.
    """

    start: int
    end: int
    kind: str
    level: Level
    detector: str = "pattern"
    score: float = 1.0

    def __len__(self) -> int:
        return self.end - self.start


@runtime_checkable
class Detector(Protocol):
    """Finds spans of personal data or secrets in a string."""

    def detect(self, text: str) -> list[Finding]:
        """Return findings in any order; overlaps are resolved by the caller."""
        ...
