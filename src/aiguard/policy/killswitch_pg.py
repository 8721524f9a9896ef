"""The kill switch in PostgreSQL: one `revoke` stops every process on every host.

`revoked` runs on every call (one primary-key SELECT, no cache); a read error is
raised, never taken for "not revoked", and `decide` turns it into a refusal.
"""

from __future__ import annotations

from datetime import datetime

from .._clock import utcnow
from ..errors import StoreError
from ..storage._faults import probe_name
from ..storage.postgres import PostgresPool, pg_migrate
from .killswitch import Revocation

__all__ = ["KILLSWITCH_PG_MIGRATIONS", "PostgresKillSwitch"]

KILLSWITCH_PG_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "revoked destinations",
        (
            """CREATE TABLE aiguard_revocation (
                destination text PRIMARY KEY,
                reason      text NOT NULL,
                at          text NOT NULL
            )""",
        ),
    ),
)


class PostgresKillSwitch:
    """A `KillSwitch` in PostgreSQL (a DSN, or a `PostgresPool` shared with other stores)."""

    def __init__(self, dsn: str | PostgresPool) -> None:
        self._pool = dsn if isinstance(dsn, PostgresPool) else PostgresPool(dsn)
        pg_migrate(self._pool, "killswitch", KILLSWITCH_PG_MIGRATIONS, error=StoreError)

    def revoke(self, destination: str, reason: str) -> Revocation:
        revocation = Revocation(destination, reason, utcnow())
        self._pool.run(
            lambda conn: conn.execute(
                "INSERT INTO aiguard_revocation (destination, reason, at) VALUES (%s, %s, %s) "
                "ON CONFLICT (destination) DO UPDATE "
                "SET reason = EXCLUDED.reason, at = EXCLUDED.at",
                (destination, reason, revocation.at.isoformat()),
            ),
            error=StoreError,
            operation="record a revocation",
        )
        return revocation

    def reinstate(self, destination: str) -> None:
        self._pool.run(
            lambda conn: conn.execute(
                "DELETE FROM aiguard_revocation WHERE destination = %s", (destination,)
            ),
            error=StoreError,
            operation="reinstate a destination",
        )

    def revoked(self, destination: str) -> Revocation | None:
        row = self._pool.run(
            lambda conn: conn.execute(
                "SELECT reason, at FROM aiguard_revocation WHERE destination = %s", (destination,)
            ).fetchone(),
            error=StoreError,
            operation="read the kill switch",
        )
        if row is None:
            return None
        return Revocation(destination, str(row[0]), datetime.fromisoformat(row[1]))

    def probe(self) -> None:
        """Write a revocation and read it back in a rolled-back transaction (`aiguard
        doctor`): no process ever sees the probe destination revoked."""
        name = probe_name()
        self._pool.probe(
            StoreError,
            "write and read back a probe revocation",
            (
                "INSERT INTO aiguard_revocation (destination, reason, at) VALUES (%s, %s, %s)",
                (name, "aiguard doctor probe", "1970-01-01T00:00:00+00:00"),
            ),
            ("SELECT 1 FROM aiguard_revocation WHERE destination = %s", (name,)),
        )

    def close(self) -> None:
        self._pool.close()
