"""The PostgreSQL consent store: append-only records shared by every process and host.

Like the SQLite store it reads on every call, with no cache, so a withdrawal written
anywhere is enforced everywhere on the next call; the decision is `effective_grant`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..errors import StoreError
from ..storage._faults import probe_name
from ..storage.postgres import PostgresPool, pg_migrate
from .store import AppendOnlyConsentStore, ConsentRecord, effective_grant, utcnow

__all__ = ["CONSENT_PG_MIGRATIONS", "PostgresConsentStore"]

CONSENT_PG_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "append-only consent records",
        (
            """CREATE TABLE aiguard_consent (
                seq           bigserial PRIMARY KEY,
                record_id     text NOT NULL UNIQUE,
                action        text NOT NULL CHECK (action IN ('grant', 'withdraw')),
                subject       text NOT NULL,
                purpose       text NOT NULL,
                tenant        text,
                at            text NOT NULL,
                expires_at    text,
                terms_version text,
                proof         text NOT NULL
            )""",
            "CREATE INDEX aiguard_consent_by_subject ON aiguard_consent (subject, purpose, seq)",
        ),
    ),
)

_COLUMNS = "record_id, action, subject, purpose, tenant, at, expires_at, terms_version, proof"


class PostgresConsentStore(AppendOnlyConsentStore):
    """A `ConsentStore` in PostgreSQL (a DSN, or a `PostgresPool` shared with other stores)."""

    def __init__(self, dsn: str | PostgresPool) -> None:
        self._pool = dsn if isinstance(dsn, PostgresPool) else PostgresPool(dsn)
        pg_migrate(self._pool, "consent", CONSENT_PG_MIGRATIONS, error=StoreError)

    def _append(self, record: ConsentRecord) -> ConsentRecord:
        self._pool.run(
            lambda conn: conn.execute(
                f"INSERT INTO aiguard_consent ({_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
            ),
            error=StoreError,
            operation="record consent",
        )
        return record

    def current(
        self, subject: str, purpose: str, *, tenant: str | None = None, at: datetime | None = None
    ) -> ConsentRecord | None:
        rows = self._pool.run(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM aiguard_consent WHERE subject = %s AND purpose = %s "
                "AND (tenant IS NULL OR tenant = %s) ORDER BY seq",
                (subject, purpose, tenant),
            ).fetchall(),
            error=StoreError,
            operation="read consent records",
        )
        return effective_grant([_record(r) for r in rows], purpose, tenant, at or utcnow())

    def history(self, subject: str) -> list[ConsentRecord]:
        rows = self._pool.run(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM aiguard_consent WHERE subject = %s ORDER BY seq",
                (subject,),
            ).fetchall(),
            error=StoreError,
            operation="read consent records",
        )
        return [_record(r) for r in rows]

    def probe(self) -> None:
        """Append a record and read it back in a rolled-back transaction (`aiguard doctor`);
        the append-only table never keeps it."""
        name = probe_name()
        self._pool.probe(
            StoreError,
            "write and read back a probe consent record",
            (
                f"INSERT INTO aiguard_consent ({_COLUMNS}) VALUES "
                "(%s, 'grant', %s, %s, NULL, %s, NULL, NULL, '{}')",
                (name, name, name, "1970-01-01T00:00:00+00:00"),
            ),
            ("SELECT 1 FROM aiguard_consent WHERE record_id = %s", (name,)),
        )

    def close(self) -> None:
        self._pool.close()


def _record(row: Any) -> ConsentRecord:
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
