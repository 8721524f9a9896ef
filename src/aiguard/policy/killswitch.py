"""The kill switch: revoke a destination at once, for every later call."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..consent.store import utcnow

__all__ = ["InMemoryKillSwitch", "KillSwitch", "Revocation"]


class Revocation:
    __slots__ = ("at", "destination", "reason")

    def __init__(self, destination: str, reason: str, at: datetime) -> None:
        self.destination = destination
        self.reason = reason
        self.at = at


@runtime_checkable
class KillSwitch(Protocol):
    """Holds revoked destinations; shared backends make a revocation reach every process."""

    def revoke(self, destination: str, reason: str) -> Revocation: ...

    def reinstate(self, destination: str) -> None: ...

    def revoked(self, destination: str) -> Revocation | None: ...


class InMemoryKillSwitch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revoked: dict[str, Revocation] = {}

    def revoke(self, destination: str, reason: str) -> Revocation:
        revocation = Revocation(destination, reason, utcnow())
        with self._lock:
            self._revoked[destination] = revocation
        return revocation

    def reinstate(self, destination: str) -> None:
        with self._lock:
            self._revoked.pop(destination, None)

    def revoked(self, destination: str) -> Revocation | None:
        with self._lock:
            return self._revoked.get(destination)
