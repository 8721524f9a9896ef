"""PostgreSQL vault, and the connection pool and migrations the PostgreSQL stores share.

Several processes or hosts share one vault: a new token is an ``INSERT ... ON
CONFLICT DO NOTHING`` against ``UNIQUE (scope, blind_index)``, so the database itself
guarantees one token per value however many writers race. Statements run in
autocommit on pooled connections (psycopg 3 + psycopg_pool); transient errors are
retried a few times (tenacity), then raised, so the call fails closed.

psycopg is imported when a store is created: ``pip install "aiguard[postgres]"``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from ..errors import VaultError
from ..storage._faults import probe_name
from ..storage.postgres import PostgresPool, pg_migrate
from ._core import EntryRow, IssueRequest, KeyedVault, KeyRow, NewEntry
from ._crypto import VaultKeys
from .keys import KeyProvider

__all__ = ["PostgresPool", "PostgresVault", "VAULT_PG_MIGRATIONS", "pg_migrate"]


T = TypeVar("T")


VAULT_PG_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "vault entries, wrapped keys, data-key version",
        (
            """CREATE TABLE aiguard_vault_entry (
                scope       text    NOT NULL,
                token       text    NOT NULL,
                blind_index bytea   NOT NULL,
                kind        text    NOT NULL,
                key_version int     NOT NULL,
                nonce       bytea   NOT NULL,
                ciphertext  bytea   NOT NULL,
                dek_owner   text,
                subject_ref bytea,
                erased      boolean NOT NULL DEFAULT false,
                created_at  text    NOT NULL,
                expires_at  text,
                PRIMARY KEY (scope, token),
                UNIQUE (scope, blind_index)
            )""",
            "CREATE INDEX aiguard_vault_by_subject ON aiguard_vault_entry (subject_ref)"
            " WHERE subject_ref IS NOT NULL",
            "CREATE INDEX aiguard_vault_by_expiry ON aiguard_vault_entry (expires_at)"
            " WHERE expires_at IS NOT NULL",
            """CREATE TABLE aiguard_vault_key (
                tenant     text  NOT NULL,
                purpose    text  NOT NULL,
                owner      text  NOT NULL,
                version    int   NOT NULL,
                wrapped    bytea NOT NULL,
                wrapped_by text  NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (tenant, purpose, owner, version)
            )""",
            "CREATE INDEX aiguard_vault_key_by_owner ON aiguard_vault_key (owner)",
            "CREATE TABLE aiguard_vault_meta (name text PRIMARY KEY, value bigint NOT NULL)",
            "INSERT INTO aiguard_vault_meta VALUES ('data_version', 1)",
        ),
    ),
)

_ENTRY = "kind, key_version, nonce, ciphertext, dek_owner, erased, created_at"
_KEY = "tenant, purpose, owner, version, wrapped, wrapped_by"


def _entry(row: Sequence[Any]) -> EntryRow:
    kind, version, nonce, ciphertext, owner, erased, created = row
    return EntryRow(
        str(kind), int(version), bytes(nonce), bytes(ciphertext), owner, bool(erased), str(created)
    )


def _key(row: Sequence[Any]) -> KeyRow:
    tenant, purpose, owner, version, wrapped, wrapped_by = row
    return KeyRow(
        str(tenant), str(purpose), str(owner), int(version), bytes(wrapped), str(wrapped_by)
    )


class PostgresVault(KeyedVault):
    """A `Vault` in PostgreSQL, shared by every process and host that opens the DSN.

    >>> vault = PostgresVault("postgresql://app@db/aiguard", EnvKeyProvider())

    Async code can call `atokenize` / `adetokenize`, which run the blocking driver in
    a worker thread so the event loop never waits on the database.
    """

    def __init__(
        self,
        dsn: str | PostgresPool,
        keys: VaultKeys | KeyProvider,
        *,
        retention: timedelta | None = None,
        max_connections: int = 8,
    ) -> None:
        super().__init__(keys, retention=retention)
        self._pool = (
            dsn if isinstance(dsn, PostgresPool) else PostgresPool(dsn, max_size=max_connections)
        )
        pg_migrate(self._pool, "vault", VAULT_PG_MIGRATIONS)
        self._open_keys()

    @property
    def pool(self) -> PostgresPool:
        return self._pool

    def probe(self) -> None:
        """Write an entry and read it back in a rolled-back transaction (`aiguard doctor`)."""
        name = probe_name()
        self._pool.probe(
            VaultError,
            "write and read back a probe entry",
            (
                "INSERT INTO aiguard_vault_entry (scope, token, blind_index, kind, key_version,"
                " nonce, ciphertext, created_at) VALUES (%s, %s, %s, 'probe', 0, '\\x00', "
                "'\\x00', now()::text)",
                (name, name, name.encode()),
            ),
            ("SELECT 1 FROM aiguard_vault_entry WHERE scope = %s AND token = %s", (name, name)),
        )

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self._pool.run(lambda conn: conn.execute(sql, params).fetchone())

    def _s_get_key(self, tenant: str, purpose: str, owner: str, version: int) -> KeyRow | None:
        row = self._one(
            f"SELECT {_KEY} FROM aiguard_vault_key WHERE tenant = %s AND purpose = %s "
            "AND owner = %s AND version = %s",
            (tenant, purpose, owner, version),
        )
        return None if row is None else _key(row)

    def _s_add_key(self, row: KeyRow) -> KeyRow:
        def work(conn: Any) -> KeyRow:
            conn.execute(
                f"INSERT INTO aiguard_vault_key ({_KEY}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                tuple(row),
            )
            stored = conn.execute(
                f"SELECT {_KEY} FROM aiguard_vault_key WHERE tenant = %s AND purpose = %s "
                "AND owner = %s AND version = %s",
                (row.tenant, row.purpose, row.owner, row.version),
            ).fetchone()
            return _key(stored)

        return self._pool.run(work)

    def _s_latest_kek(self, tenant: str) -> KeyRow | None:
        row = self._one(
            f"SELECT {_KEY} FROM aiguard_vault_key WHERE tenant = %s AND purpose = 'kek' "
            "ORDER BY version DESC LIMIT 1",
            (tenant,),
        )
        return None if row is None else _key(row)

    def _s_transform_keys(
        self, plan: Callable[[list[KeyRow], int], tuple[list[KeyRow], list[KeyRow], int]]
    ) -> int:
        def work(conn: Any) -> int:
            with conn.transaction():
                # Writers creating keys wait until the re-wrap is committed.
                conn.execute("LOCK TABLE aiguard_vault_key IN EXCLUSIVE MODE")
                rows = [_key(r) for r in conn.execute(f"SELECT {_KEY} FROM aiguard_vault_key")]
                version = int(
                    conn.execute(
                        "SELECT value FROM aiguard_vault_meta WHERE name = 'data_version'"
                    ).fetchone()[0]
                )
                writes, deletes, new_version = plan(rows, version)
                for row in deletes:
                    conn.execute(
                        "DELETE FROM aiguard_vault_key WHERE tenant = %s AND purpose = %s "
                        "AND owner = %s AND version = %s",
                        (row.tenant, row.purpose, row.owner, row.version),
                    )
                for row in writes:
                    conn.execute(
                        f"INSERT INTO aiguard_vault_key ({_KEY}) VALUES (%s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (tenant, purpose, owner, version) DO UPDATE SET "
                        "wrapped = EXCLUDED.wrapped, wrapped_by = EXCLUDED.wrapped_by",
                        tuple(row),
                    )
                conn.execute(
                    "UPDATE aiguard_vault_meta SET value = %s WHERE name = 'data_version'",
                    (new_version,),
                )
                return len(writes)

        return self._pool.run(work)

    def _s_data_version(self) -> int:
        row = self._one("SELECT value FROM aiguard_vault_meta WHERE name = 'data_version'", ())
        return int(row[0])

    def _s_find(self, scope_key: str, index: bytes) -> str | None:
        row = self._one(
            "SELECT token FROM aiguard_vault_entry WHERE scope = %s AND blind_index = %s",
            (scope_key, index),
        )
        return None if row is None else str(row[0])

    def _s_entry(self, scope_key: str, token: str) -> EntryRow | None:
        row = self._one(
            f"SELECT {_ENTRY} FROM aiguard_vault_entry WHERE scope = %s AND token = %s",
            (scope_key, token),
        )
        return None if row is None else _entry(row)

    def _s_entries(self, scope_key: str, tokens: Sequence[str]) -> dict[str, EntryRow]:
        rows = self._pool.run(
            lambda conn: conn.execute(
                f"SELECT token, {_ENTRY} FROM aiguard_vault_entry WHERE scope = %s "
                "AND token = ANY(%s)",
                (scope_key, list(tokens)),
            ).fetchall()
        )
        return {str(row[0]): _entry(row[1:]) for row in rows}

    def _s_issue(
        self,
        scope_key: str,
        index: bytes,
        candidates: Iterable[str],
        make: Callable[[str], NewEntry],
    ) -> str:
        def work(conn: Any) -> str:
            for token in candidates:
                new = make(token)
                inserted = conn.execute(
                    "INSERT INTO aiguard_vault_entry (scope, token, blind_index, kind, key_version,"
                    " nonce, ciphertext, dek_owner, subject_ref, created_at, expires_at) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                    " RETURNING token",
                    (
                        scope_key,
                        token,
                        index,
                        new.kind,
                        new.key_version,
                        new.nonce,
                        new.ciphertext,
                        new.dek_owner,
                        new.subject_ref,
                        new.created_at,
                        new.expires_at,
                    ),
                ).fetchone()
                if inserted is not None:
                    return token
                # Either another writer stored this value first (use its token), or the
                # token belongs to another value (try the next, longer candidate).
                found = conn.execute(
                    "SELECT token FROM aiguard_vault_entry WHERE scope = %s AND blind_index = %s",
                    (scope_key, index),
                ).fetchone()
                if found is not None:
                    return str(found[0])
            raise VaultError("could not issue a unique token in this scope")  # pragma: no cover

        return self._pool.run(work)

    def _s_find_many(self, scope_key: str, indexes: Sequence[bytes]) -> dict[bytes, str]:
        rows = self._pool.run(
            lambda conn: conn.execute(
                "SELECT blind_index, token FROM aiguard_vault_entry WHERE scope = %s "
                "AND blind_index = ANY(%s)",
                (scope_key, list(indexes)),
            ).fetchall()
        )
        return {bytes(index): str(token) for index, token in rows}

    def _s_issue_many(self, scope_key: str, requests: Sequence[IssueRequest]) -> dict[bytes, str]:
        """Rounds of one multi-row ``INSERT ... ON CONFLICT DO NOTHING``.

        Each round inserts every pending value under its next candidate token; values
        another writer stored meanwhile take that writer's token; the rest (a token
        taken by another value) go to the next round with a longer candidate. The
        unique constraints make concurrent writers agree without locks of our own.
        """
        issued: dict[bytes, str] = {}
        # Sorted by blind index, so concurrent batches take row locks in one order.
        pending = sorted(
            ((index, iter(candidates), make) for index, candidates, make in requests),
            key=lambda request: request[0],
        )
        while pending:
            batch: list[tuple[bytes, str, NewEntry]] = []
            for index, tokens, make in pending:
                token = next(tokens, None)
                if token is None:  # pragma: no cover - 2^-130 territory
                    raise VaultError("could not issue a unique token in this scope")
                batch.append((index, token, make(token)))
            inserted = self._pool.run(
                functools.partial(_insert_batch, scope_key=scope_key, batch=batch)
            )
            issued.update((index, token) for index, token, _new in batch if index in inserted)
            rest = [index for index, _token, _new in batch if index not in inserted]
            if rest:
                issued.update(self._s_find_many(scope_key, rest))
            pending = [request for request in pending if request[0] not in issued]
        return issued

    def _s_get_keys(
        self, tenant: str, purpose: str, owners: Sequence[str], version: int
    ) -> dict[str, KeyRow]:
        rows = self._pool.run(
            lambda conn: conn.execute(
                f"SELECT {_KEY} FROM aiguard_vault_key WHERE tenant = %s AND purpose = %s "
                "AND version = %s AND owner = ANY(%s)",
                (tenant, purpose, version, list(owners)),
            ).fetchall()
        )
        return {row.owner: row for row in map(_key, rows)}

    def _s_add_keys(self, rows: Sequence[KeyRow]) -> dict[str, KeyRow]:
        if not rows:
            return {}
        first = rows[0]
        self._pool.run(
            lambda conn: conn.execute(
                f"INSERT INTO aiguard_vault_key ({_KEY}) SELECT %s, %s, owner, %s, wrapped, "
                "wrapped_by FROM unnest(%s::text[], %s::bytea[], %s::text[]) "
                "AS t(owner, wrapped, wrapped_by) ON CONFLICT DO NOTHING",
                (
                    first.tenant,
                    first.purpose,
                    first.version,
                    [row.owner for row in rows],
                    [row.wrapped for row in rows],
                    [row.wrapped_by for row in rows],
                ),
            )
        )
        return self._s_get_keys(
            first.tenant, first.purpose, [row.owner for row in rows], first.version
        )

    def _s_subject_rows(self, subject_ref: bytes) -> list[tuple[str, str, EntryRow]]:
        rows = self._pool.run(
            lambda conn: conn.execute(
                f"SELECT scope, token, {_ENTRY} FROM aiguard_vault_entry WHERE subject_ref = %s "
                "ORDER BY created_at",
                (subject_ref,),
            ).fetchall()
        )
        return [(str(r[0]), str(r[1]), _entry(r[2:])) for r in rows]

    def _s_erase(self, subject_ref: bytes, owner: str, marker: bool) -> int:
        def work(conn: Any) -> int:
            with conn.transaction():
                conn.execute(
                    "DELETE FROM aiguard_vault_key WHERE purpose = 'dek' AND owner = %s", (owner,)
                )
                if marker:
                    cursor = conn.execute(
                        "UPDATE aiguard_vault_entry SET erased = true, nonce = '\\x'::bytea,"
                        " ciphertext = '\\x'::bytea, blind_index = uuid_send(gen_random_uuid())"
                        " || uuid_send(gen_random_uuid()), subject_ref = NULL, dek_owner = NULL,"
                        " expires_at = NULL WHERE subject_ref = %s",
                        (subject_ref,),
                    )
                else:
                    cursor = conn.execute(
                        "DELETE FROM aiguard_vault_entry WHERE subject_ref = %s", (subject_ref,)
                    )
                return int(cursor.rowcount)

        return self._pool.run(work)

    def _s_drop_scope(self, scope_key: str, owner: str) -> int:
        def work(conn: Any) -> int:
            with conn.transaction():
                conn.execute(
                    "DELETE FROM aiguard_vault_key WHERE purpose = 'dek' AND owner = %s", (owner,)
                )
                return int(
                    conn.execute(
                        "DELETE FROM aiguard_vault_entry WHERE scope = %s", (scope_key,)
                    ).rowcount
                )

        return self._pool.run(work)

    def _s_purge(self, now: str) -> int:
        return self._pool.run(
            lambda conn: int(
                conn.execute(
                    "DELETE FROM aiguard_vault_entry WHERE expires_at IS NOT NULL "
                    "AND expires_at <= %s",
                    (now,),
                ).rowcount
            )
        )

    async def atokenize(self, scope: Any, kind: str, value: str, subject: str | None = None) -> str:
        return await asyncio.to_thread(self.tokenize, scope, kind, value, subject)

    async def adetokenize(self, scope: Any, token: str) -> str | None:
        return await asyncio.to_thread(self.detokenize, scope, token)

    def __len__(self) -> int:
        row = self._one("SELECT COUNT(*) FROM aiguard_vault_entry WHERE NOT erased", ())
        return int(row[0])

    def close(self) -> None:
        self._pool.close()


def _insert_batch(
    conn: Any, scope_key: str, batch: Sequence[tuple[bytes, str, NewEntry]]
) -> set[bytes]:
    """Insert a round of new entries in one statement; the blind indexes that went in."""
    entries = [new for _index, _token, new in batch]
    rows = conn.execute(
        "INSERT INTO aiguard_vault_entry (scope, token, blind_index, kind, key_version, nonce,"
        " ciphertext, dek_owner, subject_ref, created_at, expires_at)"
        " SELECT %s, * FROM unnest(%s::text[], %s::bytea[], %s::text[], %s::int[], %s::bytea[],"
        " %s::bytea[], %s::text[], %s::bytea[], %s::text[], %s::text[])"
        " ON CONFLICT DO NOTHING RETURNING blind_index",
        (
            scope_key,
            [token for _index, token, _new in batch],
            [index for index, _token, _new in batch],
            [new.kind for new in entries],
            [new.key_version for new in entries],
            [new.nonce for new in entries],
            [new.ciphertext for new in entries],
            [new.dek_owner for new in entries],
            [new.subject_ref for new in entries],
            [new.created_at for new in entries],
            [new.expires_at for new in entries],
        ),
    ).fetchall()
    return {bytes(row[0]) for row in rows}
