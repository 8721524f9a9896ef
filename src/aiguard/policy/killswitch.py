"""The kill switch: revoke a destination at once, for every later call."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import Protocol, runtime_checkable

from .._clock import utcnow
from ..errors import StoreError
from ..storage._faults import probe_name
from ..storage.sqlite import SQLiteDatabase

__all__ = ["InMemoryKillSwitch", "KillSwitch", "Revocation", "SQLiteKillSwitch"]


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


class SQLiteKillSwitch:
    """Revocations in a SQLite file, so one process's `revoke` stops every process.

    `revoked` runs on every call: it is one primary-key SELECT on this thread's own
    connection, with no cache, which is what makes a revocation take effect on the
    very next call everywhere. A read error is raised, never taken for "not revoked".
    """

    def __init__(self, database: SQLiteDatabase | str | os.PathLike[str]) -> None:
        self._owns_db = not isinstance(database, SQLiteDatabase)
        self._db = database if isinstance(database, SQLiteDatabase) else SQLiteDatabase(database)

    @property
    def database(self) -> SQLiteDatabase:
        return self._db

    def revoke(self, destination: str, reason: str) -> Revocation:
        revocation = Revocation(destination, reason, utcnow())
        with self._db.guarded(StoreError, "record a revocation"), self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO aiguard_revocation (destination, reason, at) "
                "VALUES (?, ?, ?)",
                (destination, reason, revocation.at.isoformat()),
            )
        return revocation

    def reinstate(self, destination: str) -> None:
        with self._db.guarded(StoreError, "reinstate a destination"), self._db.write() as conn:
            conn.execute("DELETE FROM aiguard_revocation WHERE destination = ?", (destination,))

    def revoked(self, destination: str) -> Revocation | None:
        with self._db.guarded(StoreError, "read the kill switch"):
            row = (
                self._db.connection()
                .execute(
                    "SELECT reason, at FROM aiguard_revocation WHERE destination = ?",
                    (destination,),
                )
                .fetchone()
            )
        if row is None:
            return None
        return Revocation(destination, str(row[0]), datetime.fromisoformat(row[1]))

    def probe(self) -> None:
        """Write a revocation and read it back in a rolled-back transaction (`aiguard
        doctor`): no process ever sees the probe destination revoked."""
        name = probe_name()
        self._db.probe(
            StoreError,
            "write and read back a probe revocation",
            (
                "INSERT INTO aiguard_revocation (destination, reason, at) VALUES (?, ?, ?)",
                (name, "aiguard doctor probe", "1970-01-01T00:00:00+00:00"),
            ),
            ("SELECT 1 FROM aiguard_revocation WHERE destination = ?", (name,)),
        )

    def close(self) -> None:
        """Close the database if this kill switch opened it."""
        if self._owns_db:
            self._db.close()
