"""Bounded retries for transient database errors (a lock held too long, a dropped connection).

A few quick retries ride out a server restart or a failover; after that the error is
raised, and the pipeline turns it into a refused call (fail closed), never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

__all__ = ["ATTEMPTS", "retrying"]

T = TypeVar("T")

ATTEMPTS = 4


def retrying(transient: tuple[type[BaseException], ...], work: Callable[[], T]) -> T:
    """Run ``work``, retrying it up to `ATTEMPTS` times in all on ``transient`` errors."""
    for attempt in Retrying(
        retry=retry_if_exception_type(transient),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(multiplier=0.02, max=0.5),
        reraise=True,
    ):
        with attempt:
            return work()
    raise AssertionError("unreachable")  # pragma: no cover - reraise=True always raises
