"""The SQLite vault: the embedded default, shared by every thread and process on a host.

Tokens are the ones `InMemoryVault` issues for the same keys (same blind index, same
token derivation, same associated data), so switching backends changes where entries
live, not what they look like. What is stored per entry: the scope key, the token, a
keyed blind index, the kind, the key version, a random nonce, the AEAD ciphertext, and
a keyed reference to the subject. Never a plaintext value or a raw subject id.

Every process that opens the file must use the same keys; `Guard.from_toml` reads
them from ``aiguard.key`` beside the database, and the vault refuses a file written
under other keys instead of issuing tokens nobody can restore.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from datetime import datetime, timezone

from cryptography.exceptions import InvalidTag

from .._sqlite import SQLiteDatabase
from ..errors import VaultError
from ._crypto import (
    VaultKeys,
    _lp,
    _make_cipher,
    blind_index,
    entry_aad,
    key_check,
    token_candidates,
)
from .tokens import Scope

__all__ = ["SQLiteVault"]


class SQLiteVault:
    """A `Vault` in a SQLite file: deterministic tokens per scope, shared across processes.

    >>> vault = SQLiteVault("aiguard.db", VaultKeys.derive(secret))
    >>> token = vault.tokenize(Scope("acme"), "email", "jane@example.com")

    ``database`` is a path or an open `SQLiteDatabase` shared with the other stores.
    Errors are raised, never swallowed: the pipeline turns them into a refused call.
    """

    def __init__(self, database: SQLiteDatabase | str | os.PathLike[str], keys: VaultKeys) -> None:
        self._owns_db = not isinstance(database, SQLiteDatabase)
        self._db = database if isinstance(database, SQLiteDatabase) else SQLiteDatabase(database)
        self._keys = keys
        self._cipher = _make_cipher(keys.data_key)
        self._subject_key = hmac.new(
            keys.index_key, b"aiguard/v1/subject-ref", hashlib.sha256
        ).digest()
        self._check_keys()

    @property
    def database(self) -> SQLiteDatabase:
        return self._db

    @property
    def key_version(self) -> int:
        return self._keys.version

    def _check_keys(self) -> None:
        name = f"vault.key_check.v{self._keys.version}"
        expected = key_check(self._keys)
        conn = self._db.connection()
        row = conn.execute("SELECT value FROM aiguard_meta WHERE name = ?", (name,)).fetchone()
        if row is None:
            with self._db.write() as conn:
                row = conn.execute(
                    "SELECT value FROM aiguard_meta WHERE name = ?", (name,)
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO aiguard_meta (name, value) VALUES (?, ?)", (name, expected)
                    )
                    return
        if not hmac.compare_digest(bytes(row[0]), expected):
            raise VaultError(
                f"the vault in {self._db.path} was written with other keys; open it with the "
                "key file that belongs to it (aiguard.key beside the database)"
            )

    def _subject_ref(self, subject: str | None) -> bytes | None:
        if subject is None:
            return None
        return hmac.new(self._subject_key, _lp(subject), hashlib.sha256).digest()

    def tokenize(self, scope: Scope, kind: str, value: str, subject: str | None = None) -> str:
        index = blind_index(self._keys, scope, kind, value, subject)
        found = self._lookup(self._db.connection(), scope, index)
        if found is not None:
            return found
        with self._db.write() as conn:
            # Another process or thread may have issued it since the read above.
            found = self._lookup(conn, scope, index)
            if found is not None:
                return found
            for token in token_candidates(self._keys, scope, kind, index):
                taken = conn.execute(
                    "SELECT 1 FROM aiguard_vault_entry WHERE scope = ? AND token = ?",
                    (scope.key, token),
                ).fetchone()
                if taken is None:
                    break
            else:  # pragma: no cover - 2^-130 territory
                raise VaultError("could not issue a unique token in this scope")
            nonce = os.urandom(12)
            aad = entry_aad(scope, token, kind, self._keys.version)
            ciphertext = self._cipher.encrypt(nonce, value.encode("utf-8"), aad)
            conn.execute(
                "INSERT INTO aiguard_vault_entry (scope, token, blind_index, kind, key_version,"
                " nonce, ciphertext, created_at, subject_ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    scope.key,
                    token,
                    index,
                    kind,
                    self._keys.version,
                    nonce,
                    ciphertext,
                    datetime.now(timezone.utc).isoformat(),
                    self._subject_ref(subject),
                ),
            )
        return token

    @staticmethod
    def _lookup(conn: sqlite3.Connection, scope: Scope, index: bytes) -> str | None:
        row = conn.execute(
            "SELECT token FROM aiguard_vault_entry WHERE scope = ? AND blind_index = ?",
            (scope.key, index),
        ).fetchone()
        return None if row is None else str(row[0])

    def detokenize(self, scope: Scope, token: str) -> str | None:
        row = (
            self._db.connection()
            .execute(
                "SELECT kind, key_version, nonce, ciphertext FROM aiguard_vault_entry "
                "WHERE scope = ? AND token = ?",
                (scope.key, token),
            )
            .fetchone()
        )
        if row is None:
            return None
        kind, version, nonce, ciphertext = row
        if version != self._keys.version:
            raise VaultError(
                f"a vault entry was written with key version {version}, but this vault holds "
                f"version {self._keys.version}; open it with the keys of that version"
            )
        aad = entry_aad(scope, token, str(kind), int(version))
        try:
            return self._cipher.decrypt(bytes(nonce), bytes(ciphertext), aad).decode("utf-8")
        except InvalidTag:
            raise VaultError(
                "a vault entry failed authentication; the vault may have been tampered with"
            ) from None

    def erase_subject(self, subject: str) -> int:
        """Delete every entry issued for ``subject`` (erasure request); returns how many.

        Their tokens then stay literal wherever they appear. Entries written before schema
        version 2 carry no subject reference and are not found here.
        """
        with self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM aiguard_vault_entry WHERE subject_ref = ?",
                (self._subject_ref(subject),),
            )
            return cursor.rowcount

    def __len__(self) -> int:
        row = self._db.connection().execute("SELECT COUNT(*) FROM aiguard_vault_entry").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database if this vault opened it (a shared one is closed by its owner)."""
        if self._owns_db:
            self._db.close()
