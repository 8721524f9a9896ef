"""A psycopg connection pool per process, and schema migrations under an advisory lock.

The plumbing every PostgreSQL store shares (vault, consent records, kill switch,
training ledger); it knows no store's tables.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import AIGuardError, VaultError
from ._faults import mask_dsn, store_fault
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


class _Final(Exception):
    """Carries an error that must not be retried (it already waited its whole timeout)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


class PostgresPool:
    """A psycopg connection pool per process (a forked child opens its own).

    ``connect_timeout`` (seconds) bounds opening a connection, and how long a call
    waits for one from the pool (``timeout`` overrides the latter); after that one
    direct connection is tried, bounded by ``connect_timeout`` too, so a server that
    does not answer fails a call within about twice ``connect_timeout``.
    ``statement_timeout`` (seconds, None: the server's) is set on every connection
    unless the DSN sets its own; a cancelled statement is not retried. ``key`` names
    the policy key of the DSN in error messages.
    """

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 8,
        timeout: float | None = None,
        application_name: str = "aiguard",
        connect_timeout: float = 5.0,
        statement_timeout: float | None = 5.0,
        key: str = "[keys] dsn",
    ) -> None:
        self._pg = _psycopg()
        self.dsn = dsn
        self._max_size = max_size
        self.connect_timeout = connect_timeout
        self._timeout = connect_timeout if timeout is None else timeout
        self.statement_timeout = statement_timeout
        self.application_name = application_name
        self.key = key
        self._lock = threading.Lock()
        self._in_use = 0  # connections this process has checked out right now
        self._pid = -1
        self._pool: Any = None
        self.transient: tuple[type[BaseException], ...] = (self._pg.OperationalError,)

    @property
    def masked_dsn(self) -> str:
        return mask_dsn(self.dsn)

    def _configure(self, conn: Any) -> None:
        if self.statement_timeout is not None and "statement_timeout" not in self.dsn:
            # An integer of milliseconds formatted by us: nothing to inject.
            conn.execute(f"SET statement_timeout = {max(1, int(self.statement_timeout * 1000))}")

    def _get(self) -> Any:
        if self._pid != os.getpid() or self._pool is None:
            with self._lock:
                if self._pid != os.getpid() or self._pool is None:
                    from psycopg_pool import ConnectionPool

                    kwargs: dict[str, Any] = {
                        "autocommit": True,
                        "application_name": self.application_name,
                    }
                    if "connect_timeout" not in self.dsn:
                        # libpq counts whole seconds and treats anything below 2 as 2.
                        kwargs["connect_timeout"] = max(2, round(self.connect_timeout))
                    # An inherited pool's sockets belong to the parent; never touch them.
                    self._pool = ConnectionPool(
                        self.dsn,
                        min_size=1,
                        max_size=self._max_size,
                        timeout=self._timeout,
                        kwargs=kwargs,
                        configure=self._configure,
                        open=True,
                    )
                    self._pid = os.getpid()
        return self._pool

    def run(
        self,
        work: Callable[[Any], T],
        *,
        error: type[AIGuardError] = VaultError,
        operation: str = "query the vault",
    ) -> T:
        """Run ``work(connection)``, retrying transient errors (a dropped connection, a
        restarted server) a few times; after that, on a timeout, or on any other
        database error, raises ``error`` naming the masked DSN, the operation and the
        policy key (driver messages can quote parameters, so only their class and
        SQLSTATE are named), so the call fails closed."""
        from psycopg_pool import PoolTimeout

        def attempt() -> T:
            try:
                with self._get().connection() as conn:
                    with self._lock:
                        self._in_use += 1
                    try:
                        return work(conn)
                    finally:
                        with self._lock:
                            self._in_use -= 1
            except PoolTimeout as exc:
                with self._lock:
                    exhausted = self._in_use >= self._max_size
                if exhausted:
                    # Every connection is busy with other calls: the server is fine, so
                    # neither a connection of our own nor a new pool is the answer.
                    raise _Final(exc) from exc
                return self._direct(work, exc)
            except self._pg.errors.QueryCanceled as exc:
                raise _Final(exc) from exc

        try:
            return retrying(self.transient, attempt)
        except _Final as wrapped:
            exc: BaseException = wrapped.error
        except self._pg.Error as caught:
            exc = caught
        raise store_fault(
            error,
            exc,
            component="the PostgreSQL database",
            target=self.masked_dsn,
            operation=operation,
            key=self.key,
        )

    def probe(
        self,
        error: type[AIGuardError],
        operation: str,
        write: tuple[str, tuple[Any, ...]],
        read: tuple[str, tuple[Any, ...]],
    ) -> None:
        """Write a row and read it back in a transaction that is always rolled back
        (what `aiguard doctor` runs; no other session ever sees the row)."""

        def work(conn: Any) -> Any:
            with conn.transaction(force_rollback=True):
                conn.execute(*write)
                return conn.execute(*read).fetchone()

        if self.run(work, error=error, operation=operation) is None:
            raise error(f"{self.masked_dsn}: a probe row written could not be read back")

    def _direct(self, work: Callable[[Any], T], timed_out: BaseException) -> T:
        """After the pool found no connection in time: one connection of our own.

        The pool retries a server that was down with a growing backoff, so it can sit
        idle for seconds after the server is back; and its timeout hides why it could
        not connect. One direct attempt (bounded by ``connect_timeout``) either names
        the real fault (refused, timed out, authentication) or, when the server is back,
        serves this call and replaces the pool so the next calls connect at once.
        """
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": self.application_name}
        if "connect_timeout" not in self.dsn:
            kwargs["connect_timeout"] = max(2, round(self.connect_timeout))
        try:
            conn = self._pg.connect(self.dsn, **kwargs)
        except self._pg.Error as exc:
            raise _Final(exc) from timed_out
        try:
            self._configure(conn)
            result = work(conn)
        finally:
            conn.close()
        self._replace_pool()
        return result

    def _replace_pool(self) -> None:
        with self._lock:
            old, self._pool = self._pool, None
        if old is not None and self._pid == os.getpid():
            # Its workers may be sleeping in a reconnect backoff; do not wait for them.
            threading.Thread(target=old.close, kwargs={"timeout": 1.0}, daemon=True).start()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None


def pg_migrate(
    pool: PostgresPool,
    component: str,
    migrations: Sequence[tuple[int, str, tuple[str, ...]]],
    *,
    error: type[AIGuardError] = VaultError,
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

    return pool.run(work, error=error, operation=f"open the {component} tables")
