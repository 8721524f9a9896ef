"""A psycopg connection pool per process, and schema migrations under an advisory lock.

The plumbing every PostgreSQL store shares (vault, consent records, kill switch,
training ledger); it knows no store's tables.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import VaultError
from ._retry import retrying

__all__ = ["PostgresPool", "pg_migrate"]

T = TypeVar("T")


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401 - checked here so the error names the extra
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise VaultError(
            'the PostgreSQL stores need psycopg 3 with its pool: pip install "aiguard[postgres]"'
        ) from None
    return psycopg


class PostgresPool:
    """A psycopg connection pool per process (a forked child opens its own)."""

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 8,
        timeout: float = 10.0,
        application_name: str = "aiguard",
    ) -> None:
        self._pg = _psycopg()
        self.dsn = dsn
        self._max_size = max_size
        self._timeout = timeout
        self.application_name = application_name
        self._lock = threading.Lock()
        self._pid = -1
        self._pool: Any = None
        self.transient: tuple[type[BaseException], ...] = (self._pg.OperationalError,)

    def _get(self) -> Any:
        if self._pid != os.getpid() or self._pool is None:
            with self._lock:
                if self._pid != os.getpid() or self._pool is None:
                    from psycopg_pool import ConnectionPool

                    # An inherited pool's sockets belong to the parent; never touch them.
                    self._pool = ConnectionPool(
                        self.dsn,
                        min_size=1,
                        max_size=self._max_size,
                        timeout=self._timeout,
                        kwargs={"autocommit": True, "application_name": self.application_name},
                        open=True,
                    )
                    self._pid = os.getpid()
        return self._pool

    def run(self, work: Callable[[Any], T]) -> T:
        """Run ``work(connection)``, retrying transient errors (a dropped connection, a
        restarted server) a few times; after that, or on any other database error,
        raises `VaultError` naming the error class only (driver messages can quote
        parameters), so the call fails closed."""
        from psycopg_pool import PoolTimeout

        def attempt() -> T:
            with self._get().connection() as conn:
                return work(conn)

        try:
            return retrying(self.transient, attempt)
        except (self._pg.Error, PoolTimeout) as exc:
            state = getattr(exc, "sqlstate", None)
            raise VaultError(
                f"PostgreSQL failed ({type(exc).__name__}"
                + (f", SQLSTATE {state}" if state else "")
                + "); nothing was sent. Check that the database is reachable"
            ) from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None


def pg_migrate(
    pool: PostgresPool, component: str, migrations: Sequence[tuple[int, str, tuple[str, ...]]]
) -> int:
    """Apply ``component``'s missing migrations in one transaction under an advisory lock."""
    known = migrations[-1][0]

    def work(conn: Any) -> int:
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('aiguard_schema:' || %s))", (component,)
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS aiguard_pg_schema (component text NOT NULL, "
                "version int NOT NULL, description text NOT NULL, applied_at timestamptz "
                "NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
            )
            row = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM aiguard_pg_schema WHERE component = %s",
                (component,),
            ).fetchone()
            current = int(row[0])
            if current > known:
                raise VaultError(
                    f"the {component} schema is version {current}, this aiguard knows up to "
                    f"{known}; upgrade aiguard (it never downgrades a schema)"
                )
            for version, description, statements in migrations:
                if version > current:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO aiguard_pg_schema (component, version, description) "
                        "VALUES (%s, %s, %s)",
                        (component, version, description),
                    )
                    current = version
            return current

    return pool.run(work)
