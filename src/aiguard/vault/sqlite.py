"""The SQLite vault: the embedded default, shared by every thread and process on a host.

Tokens are the ones `InMemoryVault` issues for the same keys (same blind index, same
token derivation), so switching backends changes where entries live, not what they
look like. What is stored per entry: the scope key, the token, a keyed blind index,
the kind, the data-key version, a random nonce, the AEAD ciphertext, the owner of the
data key and a keyed reference to the subject. Never a plaintext value or a raw
subject id. Keys live wrapped in ``aiguard_vault_key`` (see docs/keys.md).

Every process that opens the file must use the same root; the vault refuses a file
written under other keys instead of issuing tokens nobody can restore.
"""

from __future__ import annotations

import hmac
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from ..errors import VaultError
from ..storage._faults import probe_name
from ..storage._retry import retrying
from ..storage.sqlite import SQLiteDatabase
from ._core import EntryRow, IssueRequest, KeyedVault, KeyRow, NewEntry, Replay
from ._crypto import VaultKeys, key_check
from .keys import KeyProvider

__all__ = ["VAULT_MIGRATIONS", "SQLiteVault"]

# The key hierarchy's schema, versioned in its own table so the shared migrations in
# aiguard.storage.sqlite (and the files older aiguard versions opened) stay as they are.
VAULT_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "data keys per subject and scope, retention, erasure tombstones",
        (
            "ALTER TABLE aiguard_vault_entry ADD COLUMN dek_owner TEXT",
            "ALTER TABLE aiguard_vault_entry ADD COLUMN expires_at TEXT",
            "ALTER TABLE aiguard_vault_entry ADD COLUMN erased INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX aiguard_vault_by_expiry ON aiguard_vault_entry (expires_at)"
            " WHERE expires_at IS NOT NULL",
            """CREATE TABLE aiguard_vault_key (
                tenant     TEXT    NOT NULL,
                purpose    TEXT    NOT NULL,
                owner      TEXT    NOT NULL,
                version    INTEGER NOT NULL,
                wrapped    BLOB    NOT NULL,
                wrapped_by TEXT    NOT NULL,
                created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                PRIMARY KEY (tenant, purpose, owner, version)
            )""",
            "CREATE INDEX aiguard_vault_key_by_owner ON aiguard_vault_key (owner)",
            "INSERT OR IGNORE INTO aiguard_meta (name, value) VALUES ('vault.data_version', 1)",
        ),
    ),
    (
        2,
        "erasure generation (lets processes cache decrypted originals safely)",
        ("INSERT OR IGNORE INTO aiguard_meta (name, value) VALUES ('vault.generation', 0)",),
    ),
)

# Raised in the transaction of every erasure, scope drop and purge (see _s_generation).
_BUMP = "UPDATE aiguard_meta SET value = value + 1 WHERE name = 'vault.generation'"
# SQLite's default limit on bound parameters is 32766 (999 before 3.32); stay far below.
_CHUNK = 400

_TRANSIENT = (sqlite3.OperationalError,)
_ENTRY = "kind, key_version, nonce, ciphertext, dek_owner, erased, created_at"


def _migrate_vault(db: SQLiteDatabase) -> int:
    conn = db.connection()
    conn.execute(
        "CREATE TABLE IF NOT EXISTS aiguard_vault_schema (version INTEGER PRIMARY KEY, "
        "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    known = VAULT_MIGRATIONS[-1][0]
    current = int(
        conn.execute("SELECT COALESCE(MAX(version), 0) FROM aiguard_vault_schema").fetchone()[0]
    )
    if current > known:
        raise VaultError(
            f"the vault schema is version {current}, this aiguard knows up to {known}; "
            "upgrade aiguard"
        )
    if current == known:
        return current
    with db.write() as conn:
        current = int(
            conn.execute("SELECT COALESCE(MAX(version), 0) FROM aiguard_vault_schema").fetchone()[0]
        )
        for version, description, statements in VAULT_MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO aiguard_vault_schema VALUES (?, ?, "
                    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    (version, description),
                )
                current = version
    return current


def _entry(row: tuple[Any, ...]) -> EntryRow:
    kind, version, nonce, ciphertext, owner, erased, created = row
    return EntryRow(
        str(kind), int(version), bytes(nonce), bytes(ciphertext), owner, bool(erased), str(created)
    )


def _key(row: tuple[Any, ...]) -> KeyRow:
    tenant, purpose, owner, version, wrapped, wrapped_by = row
    return KeyRow(
        str(tenant), str(purpose), str(owner), int(version), bytes(wrapped), str(wrapped_by)
    )


_KEY = "tenant, purpose, owner, version, wrapped, wrapped_by"


class SQLiteVault(KeyedVault):
    """A `Vault` in a SQLite file: deterministic tokens per scope, shared across processes.

    >>> vault = SQLiteVault("aiguard.db", LocalKeyFileProvider("aiguard.root.key"))
    >>> token = vault.tokenize(Scope("acme"), "email", "jane@example.com", "cust-42")

    ``database`` is a path or an open `SQLiteDatabase` shared with the other stores;
    ``keys`` a `KeyProvider` root key or the `VaultKeys` of a shared secret.
    ``retention`` makes new entries expire (see `purge_expired`). Known tokens are
    cached in process (erasure in this process clears the cache; see docs/keys.md).
    """

    def __init__(
        self,
        database: SQLiteDatabase | str | os.PathLike[str],
        keys: VaultKeys | KeyProvider,
        *,
        retention: timedelta | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(keys, retention=retention)
        self._owns_db = not isinstance(database, SQLiteDatabase)
        self._db = (
            database
            if isinstance(database, SQLiteDatabase)
            else SQLiteDatabase(database, timeout=timeout)
        )
        self._seen = threading.local()  # per thread: (PRAGMA data_version, generation)
        try:
            with self._db.guarded(VaultError, "open the vault"):
                _migrate_vault(self._db)
                if isinstance(keys, VaultKeys):
                    self._check_keys(keys)
                self._open_keys()
        except BaseException:
            if self._owns_db:
                self._db.close()
            raise

    @property
    def database(self) -> SQLiteDatabase:
        return self._db

    def _check_keys(self, keys: VaultKeys) -> None:
        name = f"vault.key_check.v{keys.version}"
        expected = key_check(keys)
        conn = self._db.connection()
        row = conn.execute("SELECT value FROM aiguard_meta WHERE name = ?", (name,)).fetchone()
        if row is None:
            with self._db.write() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO aiguard_meta (name, value) VALUES (?, ?)",
                    (name, expected),
                )
                row = conn.execute(
                    "SELECT value FROM aiguard_meta WHERE name = ?", (name,)
                ).fetchone()
        if not hmac.compare_digest(bytes(row[0]), expected):
            raise VaultError(
                f"the vault in {self._db.path} was written with other keys; open it with the "
                "key file that belongs to it (aiguard.key beside the database)"
            )

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._db.guarded(VaultError, "read the vault"):
            return retrying(
                _TRANSIENT, lambda: self._db.connection().execute(sql, params).fetchall()
            )

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        def attempt() -> Any:
            with self._db.write() as conn:
                return work(conn)

        with self._db.guarded(VaultError, "write the vault"):
            return retrying(_TRANSIENT, attempt)

    # -- storage ---------------------------------------------------------------------

    def _s_get_key(self, tenant: str, purpose: str, owner: str, version: int) -> KeyRow | None:
        rows = self._read(
            f"SELECT {_KEY} FROM aiguard_vault_key WHERE tenant = ? AND purpose = ? "
            "AND owner = ? AND version = ?",
            (tenant, purpose, owner, version),
        )
        return _key(rows[0]) if rows else None

    def _s_add_key(self, row: KeyRow) -> KeyRow:
        def work(conn: sqlite3.Connection) -> KeyRow:
            conn.execute(
                f"INSERT OR IGNORE INTO aiguard_vault_key ({_KEY}) VALUES (?, ?, ?, ?, ?, ?)",
                tuple(row),
            )
            stored = conn.execute(
                f"SELECT {_KEY} FROM aiguard_vault_key WHERE tenant = ? AND purpose = ? "
                "AND owner = ? AND version = ?",
                (row.tenant, row.purpose, row.owner, row.version),
            ).fetchone()
            return _key(stored)

        result: KeyRow = self._write(work)
        return result

    def _s_latest_kek(self, tenant: str) -> KeyRow | None:
        rows = self._read(
            f"SELECT {_KEY} FROM aiguard_vault_key WHERE tenant = ? AND purpose = 'kek' "
            "ORDER BY version DESC LIMIT 1",
            (tenant,),
        )
        return _key(rows[0]) if rows else None

    def _s_transform_keys(
        self, plan: Callable[[list[KeyRow], int], tuple[list[KeyRow], list[KeyRow], int]]
    ) -> int:
        def work(conn: sqlite3.Connection) -> int:
            rows = [_key(r) for r in conn.execute(f"SELECT {_KEY} FROM aiguard_vault_key")]
            version = self._version_in(conn)
            writes, deletes, new_version = plan(rows, version)
            for row in deletes:
                conn.execute(
                    "DELETE FROM aiguard_vault_key WHERE tenant = ? AND purpose = ? "
                    "AND owner = ? AND version = ?",
                    (row.tenant, row.purpose, row.owner, row.version),
                )
            for row in writes:
                conn.execute(
                    f"INSERT OR REPLACE INTO aiguard_vault_key ({_KEY}) VALUES (?, ?, ?, ?, ?, ?)",
                    tuple(row),
                )
            conn.execute(
                "UPDATE aiguard_meta SET value = ? WHERE name = 'vault.data_version'",
                (new_version,),
            )
            return len(writes)

        count: int = self._write(work)
        return count

    @staticmethod
    def _version_in(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT value FROM aiguard_meta WHERE name = 'vault.data_version'"
        ).fetchone()
        return 1 if row is None else int(row[0])

    def _s_data_version(self) -> int:
        with self._db.guarded(VaultError, "read the vault"):
            return retrying(_TRANSIENT, lambda: self._version_in(self._db.connection()))

    def _s_find(self, scope_key: str, index: bytes) -> str | None:
        rows = self._read(
            "SELECT token FROM aiguard_vault_entry WHERE scope = ? AND blind_index = ?",
            (scope_key, index),
        )
        return str(rows[0][0]) if rows else None

    def _s_entry(self, scope_key: str, token: str) -> EntryRow | None:
        rows = self._read(
            f"SELECT {_ENTRY} FROM aiguard_vault_entry WHERE scope = ? AND token = ?",
            (scope_key, token),
        )
        return _entry(rows[0]) if rows else None

    def _s_entries(self, scope_key: str, tokens: Sequence[str]) -> dict[str, EntryRow]:
        rows = self._read_in(
            f"SELECT token, {_ENTRY} FROM aiguard_vault_entry WHERE scope = ? AND token IN ({{}})",
            (scope_key,),
            tokens,
        )
        return {str(row[0]): _entry(row[1:]) for row in rows}

    def _s_issue(
        self,
        scope_key: str,
        index: bytes,
        candidates: Iterable[str],
        make: Callable[[str], NewEntry],
    ) -> str:
        candidates = Replay(iter(candidates))  # a retried transaction starts over

        def work(conn: sqlite3.Connection) -> str:
            # Another process or thread may have issued it since the caller's read.
            found = conn.execute(
                "SELECT token FROM aiguard_vault_entry WHERE scope = ? AND blind_index = ?",
                (scope_key, index),
            ).fetchone()
            if found is not None:
                return str(found[0])
            for token in candidates:
                taken = conn.execute(
                    "SELECT 1 FROM aiguard_vault_entry WHERE scope = ? AND token = ?",
                    (scope_key, token),
                ).fetchone()
                if taken is None:
                    break
            else:  # pragma: no cover - 2^-130 territory
                raise VaultError("could not issue a unique token in this scope")
            new = make(token)
            # Free under the write lock just now, so the insert cannot be ignored.
            conn.execute(_INSERT_ENTRY, _entry_params(scope_key, index, new))
            return token

        token: str = self._write(work)
        return token

    def _s_find_many(self, scope_key: str, indexes: Sequence[bytes]) -> dict[bytes, str]:
        rows = self._read_in(
            "SELECT blind_index, token FROM aiguard_vault_entry WHERE scope = ? "
            "AND blind_index IN ({})",
            (scope_key,),
            indexes,
        )
        return {bytes(index): str(token) for index, token in rows}

    def _read_in(self, sql: str, params: tuple[Any, ...], values: Sequence[Any]) -> list[Any]:
        """The rows of ``sql``, whose last condition is ``IN ({})``, for all of ``values``:
        read in chunks of as many parameters as SQLite takes."""
        rows: list[Any] = []
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            rows.extend(self._read(sql.format(", ".join("?" * len(chunk))), (*params, *chunk)))
        return rows

    def _s_issue_many(self, scope_key: str, requests: Sequence[IssueRequest]) -> dict[bytes, str]:
        """All of a batch's new entries in one transaction, one ``executemany`` per round.

        Each round inserts every pending value under its next candidate token (``INSERT
        OR IGNORE``), then reads back the tokens stored for the batch's blind indexes:
        a value another writer stored first keeps that writer's token; a value whose
        candidate belonged to another value goes to the next round, one size longer.
        """
        # A retry after a transient error redoes the whole transaction (nothing was
        # committed), so the candidate tokens must be iterable again from the start.
        replayable = [(index, Replay(candidates), make) for index, candidates, make in requests]

        def work(conn: sqlite3.Connection) -> dict[bytes, str]:
            issued: dict[bytes, str] = {}
            pending = [(index, iter(candidates), make) for index, candidates, make in replayable]
            while pending:
                rows = []
                for index, tokens, make in pending:
                    token = next(tokens, None)
                    if token is None:  # pragma: no cover - 2^-130 territory
                        raise VaultError("could not issue a unique token in this scope")
                    rows.append(_entry_params(scope_key, index, make(token)))
                conn.executemany(_INSERT_ENTRY, rows)
                wanted = [index for index, _tokens, _make in pending]
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    issued.update(
                        (bytes(index), str(token))
                        for index, token in conn.execute(
                            "SELECT blind_index, token FROM aiguard_vault_entry WHERE scope = ?"
                            f" AND blind_index IN ({', '.join('?' * len(chunk))})",
                            (scope_key, *chunk),
                        )
                    )
                pending = [request for request in pending if request[0] not in issued]
            return issued

        result: dict[bytes, str] = self._write(work)
        return result

    def _s_get_keys(
        self, tenant: str, purpose: str, owners: Sequence[str], version: int
    ) -> dict[str, KeyRow]:
        rows = self._read_in(
            f"SELECT {_KEY} FROM aiguard_vault_key WHERE tenant = ? AND purpose = ? "
            "AND version = ? AND owner IN ({})",
            (tenant, purpose, version),
            owners,
        )
        return {row.owner: row for row in map(_key, rows)}

    def _s_add_keys(self, rows: Sequence[KeyRow]) -> dict[str, KeyRow]:
        if not rows:
            return {}

        def work(conn: sqlite3.Connection) -> dict[str, KeyRow]:
            conn.executemany(
                f"INSERT OR IGNORE INTO aiguard_vault_key ({_KEY}) VALUES (?, ?, ?, ?, ?, ?)",
                [tuple(row) for row in rows],
            )
            stored: dict[str, KeyRow] = {}
            first = rows[0]
            for start in range(0, len(rows), _CHUNK):
                owners = [row.owner for row in rows[start : start + _CHUNK]]
                for found in conn.execute(
                    f"SELECT {_KEY} FROM aiguard_vault_key WHERE tenant = ? AND purpose = ? "
                    f"AND version = ? AND owner IN ({', '.join('?' * len(owners))})",
                    (first.tenant, first.purpose, first.version, *owners),
                ):
                    row = _key(found)
                    stored[row.owner] = row
            return stored

        result: dict[str, KeyRow] = self._write(work)
        return result

    def _s_generation(self) -> int | None:
        with self._db.guarded(VaultError, "read the vault"):
            return self._generation()

    def _generation(self) -> int:
        # PRAGMA data_version changes when another connection commits to the file, so
        # the stored generation is only read again after someone else wrote something.
        conn = self._db.connection()
        data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        seen = getattr(self._seen, "state", None)
        if seen is not None and seen[0] == data_version and seen[2] is conn:
            return int(seen[1])
        row = conn.execute("SELECT value FROM aiguard_meta WHERE name = 'vault.generation'")
        found = row.fetchone()
        generation = 0 if found is None else int(found[0])
        self._seen.state = (data_version, generation, conn)
        return generation

    def _s_subject_rows(self, subject_ref: bytes) -> list[tuple[str, str, EntryRow]]:
        rows = self._read(
            f"SELECT scope, token, {_ENTRY} FROM aiguard_vault_entry WHERE subject_ref = ? "
            "ORDER BY created_at",
            (subject_ref,),
        )
        return [(str(r[0]), str(r[1]), _entry(r[2:])) for r in rows]

    def _s_erase(self, subject_ref: bytes, owner: str, marker: bool) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute(_BUMP)
            conn.execute(
                "DELETE FROM aiguard_vault_key WHERE purpose = 'dek' AND owner = ?", (owner,)
            )
            if marker:
                # A tombstone keeps only scope, token and kind: the blind index becomes
                # random bytes, so nothing left can confirm a guessed value.
                cursor = conn.execute(
                    "UPDATE aiguard_vault_entry SET erased = 1, nonce = x'', ciphertext = x'',"
                    " blind_index = randomblob(32), subject_ref = NULL, dek_owner = NULL,"
                    " expires_at = NULL WHERE subject_ref = ?",
                    (subject_ref,),
                )
            else:
                cursor = conn.execute(
                    "DELETE FROM aiguard_vault_entry WHERE subject_ref = ?", (subject_ref,)
                )
            return int(cursor.rowcount)

        count: int = self._write(work)
        self._vacuum_hint()
        return count

    def _vacuum_hint(self) -> None:
        # Deleted pages may keep old bytes until they are reused; the values were only
        # ever ciphertext, but the WAL is checkpointed so the freed pages are rewritten.
        self._db.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _s_drop_scope(self, scope_key: str, owner: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute(_BUMP)
            conn.execute(
                "DELETE FROM aiguard_vault_key WHERE purpose = 'dek' AND owner = ?", (owner,)
            )
            return int(
                conn.execute(
                    "DELETE FROM aiguard_vault_entry WHERE scope = ?", (scope_key,)
                ).rowcount
            )

        count: int = self._write(work)
        return count

    def _s_purge(self, now: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute(_BUMP)
            return int(
                conn.execute(
                    "DELETE FROM aiguard_vault_entry WHERE expires_at IS NOT NULL "
                    "AND expires_at <= ?",
                    (now,),
                ).rowcount
            )

        count: int = self._write(work)
        return count

    def probe(self) -> None:
        """Write an entry and read it back in a rolled-back transaction (`aiguard doctor`)."""
        name = probe_name()
        self._db.probe(
            VaultError,
            "write and read back a probe entry",
            (
                "INSERT INTO aiguard_vault_entry (scope, token, blind_index, kind, key_version,"
                " nonce, ciphertext, created_at) VALUES (?, ?, ?, 'probe', 0, x'00', x'00', "
                "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (name, name, name.encode()),
            ),
            ("SELECT 1 FROM aiguard_vault_entry WHERE scope = ? AND token = ?", (name, name)),
        )

    def __len__(self) -> int:
        rows = self._read("SELECT COUNT(*) FROM aiguard_vault_entry WHERE erased = 0", ())
        return int(rows[0][0])

    def close(self) -> None:
        """Close the database if this vault opened it (a shared one is closed by its owner)."""
        if self._owns_db:
            self._db.close()


_INSERT_ENTRY = (
    "INSERT OR IGNORE INTO aiguard_vault_entry (scope, token, blind_index, kind, key_version,"
    " nonce, ciphertext, created_at, subject_ref, dek_owner, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _entry_params(scope_key: str, index: bytes, new: NewEntry) -> tuple[Any, ...]:
    return (
        scope_key,
        new.token,
        index,
        new.kind,
        new.key_version,
        new.nonce,
        new.ciphertext,
        new.created_at,
        new.subject_ref,
        new.dek_owner,
        new.expires_at,
    )


def _insert_first_free(
    conn: sqlite3.Connection,
    scope_key: str,
    index: bytes,
    candidates: Iterable[str],
    make: Callable[[str], NewEntry],
) -> str:
    """Insert under the first candidate token still free; another writer's token wins."""
    for token in candidates:
        new = make(token)
        cursor = conn.execute(_INSERT_ENTRY, _entry_params(scope_key, index, new))
        if cursor.rowcount == 1:
            return token
        # The blind index is stored already (use its token), or the token belongs to
        # another value (try the next, longer candidate).
        found = conn.execute(
            "SELECT token FROM aiguard_vault_entry WHERE scope = ? AND blind_index = ?",
            (scope_key, index),
        ).fetchone()
        if found is not None:
            return str(found[0])
    raise VaultError("could not issue a unique token in this scope")  # pragma: no cover
