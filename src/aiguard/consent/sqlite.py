"""The SQLite consent store: append-only records shared by every process on a host.

`current` reads the file on every call, with no cache, so a withdrawal written by any
process is enforced by every other on its very next call. The decision itself is
`effective_grant`, the same function the in-memory store uses, over the records in
the order they were written.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime
from typing import Any

from ..errors import StoreError
from ..storage._faults import probe_name
from ..storage.sqlite import SQLiteDatabase
from .store import AppendOnlyConsentStore, ConsentRecord, effective_grant, utcnow

__all__ = ["SQLiteConsentStore"]

_COLUMNS = "record_id, action, subject, purpose, tenant, at, expires_at, terms_version, proof"


class SQLiteConsentStore(AppendOnlyConsentStore):
    """A `ConsentStore` in a SQLite file (a path, or a `SQLiteDatabase` shared with others)."""

    def __init__(self, database: SQLiteDatabase | str | os.PathLike[str]) -> None:
        self._owns_db = not isinstance(database, SQLiteDatabase)
        self._db = database if isinstance(database, SQLiteDatabase) else SQLiteDatabase(database)

    @property
    def database(self) -> SQLiteDatabase:
        return self._db

    def _append(self, record: ConsentRecord) -> ConsentRecord:
        with self._db.guarded(StoreError, "record consent"), self._db.write() as conn:
            conn.execute(
                f"INSERT INTO aiguard_consent ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.record_id,
                    record.action,
                    record.subject,
                    record.purpose,
                    record.tenant,
                    record.at.isoformat(),
                    None if record.expires_at is None else record.expires_at.isoformat(),
                    record.terms_version,
                    json.dumps(record.proof, sort_keys=True),
                ),
            )
        return record

    def current(
        self, subject: str, purpose: str, *, tenant: str | None = None, at: datetime | None = None
    ) -> ConsentRecord | None:
        # Records of other tenants can never apply, so they are filtered in SQL; the
        # rest of the rule stays in effective_grant, shared with the in-memory store.
        with self._db.guarded(StoreError, "read consent records"):
            rows = self._rows(subject, purpose, tenant)
        return effective_grant([_record(row) for row in rows], purpose, tenant, at or utcnow())

    def _rows(self, subject: str, purpose: str, tenant: str | None) -> list[Any]:
        return (
            self._db.connection()
            .execute(
                f"SELECT {_COLUMNS} FROM aiguard_consent WHERE subject = ? AND purpose = ? "
                "AND (tenant IS NULL OR tenant = ?) ORDER BY seq",
                (subject, purpose, tenant),
            )
            .fetchall()
        )

    def history(self, subject: str) -> list[ConsentRecord]:
        with self._db.guarded(StoreError, "read consent records"):
            rows = self._history_rows(subject)
        return [_record(row) for row in rows]

    def _history_rows(self, subject: str) -> list[Any]:
        return (
            self._db.connection()
            .execute(
                f"SELECT {_COLUMNS} FROM aiguard_consent WHERE subject = ? ORDER BY seq",
                (subject,),
            )
            .fetchall()
        )

    def probe(self) -> None:
        """Append a record and read it back in a rolled-back transaction (`aiguard doctor`);
        the append-only table never keeps it."""
        name = probe_name()
        self._db.probe(
            StoreError,
            "write and read back a probe consent record",
            (
                f"INSERT INTO aiguard_consent ({_COLUMNS}) VALUES "
                "(?, 'grant', ?, ?, NULL, ?, NULL, NULL, '{}')",
                (name, name, name, "1970-01-01T00:00:00+00:00"),
            ),
            ("SELECT 1 FROM aiguard_consent WHERE record_id = ?", (name,)),
        )

    def close(self) -> None:
        """Close the database if this store opened it."""
        if self._owns_db:
            self._db.close()


def _record(row: sqlite3.Row | tuple[Any, ...]) -> ConsentRecord:
    # Validated on the way out: a row edited into nonsense raises instead of deciding.
    record_id, action, subject, purpose, tenant, at, expires_at, terms_version, proof = row
    return ConsentRecord(
        record_id=record_id,
        action=action,
        subject=subject,
        purpose=purpose,
        tenant=tenant,
        at=datetime.fromisoformat(at),
        expires_at=None if expires_at is None else datetime.fromisoformat(expires_at),
        terms_version=terms_version,
        proof=json.loads(proof),
    )
