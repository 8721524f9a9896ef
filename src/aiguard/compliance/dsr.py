"""Data-subject rights: access/portability export, erasure, re-identification, training-use ledger.

``guard.dsr.export(subject)`` gathers everything aiguard holds about a subject into one
JSON-ready document; ``guard.dsr.erase(subject)`` crypto-shreds the subject's vault
data, withdraws every consent and records an ``erasure`` event. The provenance log
holds only keyed digests, so it still verifies afterwards and needs no rewriting.
See docs/dsr.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import PolicyDenied, ProvenanceError, VaultError
from ..vault.tokens import TOKEN_RE, Scope
from .alerts import append_observed

if TYPE_CHECKING:
    from ..pipeline.host import GuardHost
    from ..storage.sqlite import SQLiteDatabase

__all__ = [
    "DETOKENIZE_SCOPE",
    "DataSubjectRights",
    "InMemoryTrainingLedger",
    "PostgresTrainingLedger",
    "Principal",
    "ReidentificationDenied",
    "SQLiteTrainingLedger",
    "TrainingLedger",
    "TrainingUse",
]

#: The scope a principal needs to call `Guard.detokenize`.
DETOKENIZE_SCOPE = "aiguard:detokenize"


class ReidentificationDenied(PolicyDenied):
    """A detokenization outside the call that issued the tokens was not authorized."""

    code = "reidentification_denied"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks: an id (recorded in the event) and the scopes granted to it."""

    id: str
    scopes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError("a principal needs a non-empty id")


@dataclass(frozen=True, slots=True)
class TrainingUse:
    """One use of a subject's data for training: which destination, dataset and model."""

    subject: str  # keyed digest, never the subject id
    tenant: str
    destination: str | None
    dataset: str | None = None
    model: str | None = None
    request_id: str | None = None
    records: int = 1
    at: str = field(default_factory=_now)


@runtime_checkable
class TrainingLedger(Protocol):
    """Answers "which datasets and models contain this person's data"."""

    def record(self, uses: Sequence[TrainingUse]) -> None: ...

    def for_subject(self, subject_digest: str) -> list[TrainingUse]: ...


class InMemoryTrainingLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uses: list[TrainingUse] = []

    def record(self, uses: Sequence[TrainingUse]) -> None:
        with self._lock:
            self._uses.extend(uses)

    def for_subject(self, subject_digest: str) -> list[TrainingUse]:
        with self._lock:
            return [use for use in self._uses if use.subject == subject_digest]


class SQLiteTrainingLedger:
    """The ledger in the guard's SQLite file (its own table, created on first use)."""

    def __init__(self, database: SQLiteDatabase) -> None:
        self._db = database
        with self._db.write() as conn:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS aiguard_training_use (
                    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
                    subject     TEXT NOT NULL,
                    tenant      TEXT NOT NULL,
                    destination TEXT,
                    dataset     TEXT,
                    model       TEXT,
                    request_id  TEXT,
                    records     INTEGER NOT NULL,
                    at          TEXT NOT NULL
                )"""
            )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS aiguard_training_use_by_subject "
                "ON aiguard_training_use (subject)"
            )

    def record(self, uses: Sequence[TrainingUse]) -> None:
        if not uses:
            return
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO aiguard_training_use (subject, tenant, destination, dataset, model,"
                " request_id, records, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        u.subject,
                        u.tenant,
                        u.destination,
                        u.dataset,
                        u.model,
                        u.request_id,
                        u.records,
                        u.at,
                    )
                    for u in uses
                ],
            )

    def for_subject(self, subject_digest: str) -> list[TrainingUse]:
        rows = (
            self._db.connection()
            .execute(
                "SELECT subject, tenant, destination, dataset, model, request_id, records, at "
                "FROM aiguard_training_use WHERE subject = ? ORDER BY seq",
                (subject_digest,),
            )
            .fetchall()
        )
        return [TrainingUse(*row) for row in rows]


TRAINING_PG_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "training-use ledger",
        (
            """CREATE TABLE aiguard_training_use (
                seq         bigserial PRIMARY KEY,
                subject     text NOT NULL,
                tenant      text NOT NULL,
                destination text,
                dataset     text,
                model       text,
                request_id  text,
                records     bigint NOT NULL,
                at          text NOT NULL
            )""",
            "CREATE INDEX aiguard_training_use_by_subject ON aiguard_training_use (subject)",
        ),
    ),
)


class PostgresTrainingLedger:
    """The ledger in PostgreSQL, beside the vault (a DSN or a shared `PostgresPool`)."""

    def __init__(self, pool: Any) -> None:
        from ..storage.postgres import PostgresPool, pg_migrate

        self._pool: PostgresPool = pool if isinstance(pool, PostgresPool) else PostgresPool(pool)
        pg_migrate(self._pool, "training_ledger", TRAINING_PG_MIGRATIONS)

    def record(self, uses: Sequence[TrainingUse]) -> None:
        if not uses:
            return
        rows = [
            (u.subject, u.tenant, u.destination, u.dataset, u.model, u.request_id, u.records, u.at)
            for u in uses
        ]

        def work(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO aiguard_training_use (subject, tenant, destination, dataset,"
                    " model, request_id, records, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )

        self._pool.run(work)

    def for_subject(self, subject_digest: str) -> list[TrainingUse]:
        rows = self._pool.run(
            lambda conn: conn.execute(
                "SELECT subject, tenant, destination, dataset, model, request_id, records, at "
                "FROM aiguard_training_use WHERE subject = %s ORDER BY seq",
                (subject_digest,),
            ).fetchall()
        )
        return [TrainingUse(*row) for row in rows]


class DataSubjectRights:
    """``guard.dsr``: export, erase, purge, the training ledger, explicit re-identification."""

    def __init__(self, guard: GuardHost, ledger: TrainingLedger | None = None) -> None:
        self._guard = guard
        self.ledger: TrainingLedger = ledger if ledger is not None else _default_ledger(guard)

    def _vault(self) -> Any:
        vault = self._guard.vault
        for method in ("export_subject", "erase_subject"):
            if not callable(getattr(vault, method, None)):
                raise VaultError(
                    f"the guard's vault ({type(vault).__name__}) cannot answer data-subject "
                    f"requests: it has no {method}()"
                )
        return vault

    def _tenants(self, subject: str) -> set[str]:
        tenants = {"default"}
        tenants.update(r.tenant for r in self._guard.consent.history(subject) if r.tenant)
        for event in _events(self._guard):
            if isinstance(event.get("tenant"), str):
                tenants.add(event["tenant"])
        return tenants

    def export(self, subject: str) -> dict[str, Any]:
        """One JSON-ready document: consent history, vault entries (decrypted), events, ledger."""
        _check_subject(subject)
        guard = self._guard
        entries = self._vault().export_subject(subject)
        tenants = self._tenants(subject) | {e["tenant"] for e in entries}
        digests = {guard.digest("subject", tenant, subject) for tenant in tenants}
        events = [e for e in _events(guard) if e.get("subject") in digests]
        uses = [asdict(u) for d in sorted(digests) for u in self.ledger.for_subject(d)]
        return {
            "schema": "aiguard.dsr-export/1",
            "subject": subject,
            "exported_at": _now(),
            "consent": [r.model_dump(mode="json") for r in guard.consent.history(subject)],
            "vault_entries": entries,
            "provenance_events": events,
            "training_uses": uses,
        }

    def erase(self, subject: str, *, request_ref: str | None = None) -> dict[str, Any]:
        """Crypto-shred the subject's vault data, withdraw its consents, record the erasure.

        Tokens of the subject then restore as ``[ERASED]``. Returns a summary (counts
        only). The ``erasure`` event carries the subject's keyed digest, never the id.
        """
        _check_subject(subject)
        guard = self._guard
        erased = int(self._vault().erase_subject(subject, marker=True))
        withdrawn = 0
        granted: set[tuple[str, str | None]] = set()
        for record in guard.consent.history(subject):
            key = (record.purpose, record.tenant)
            if record.action == "grant":
                granted.add(key)
            else:
                granted.discard(key)
        for purpose, tenant in sorted(granted, key=lambda k: (k[0], k[1] or "")):
            guard.consent.withdraw(subject, purpose, tenant=tenant)
            withdrawn += 1
        tenants = sorted(self._tenants(subject))
        uses = sum(
            len(self.ledger.for_subject(guard.digest("subject", t, subject))) for t in tenants
        )
        for tenant in tenants:
            append_observed(
                guard,
                {
                    "type": "erasure",
                    "tenant": tenant,
                    "subject": guard.digest("subject", tenant, subject),
                    "reasons": ["gdpr_art17" + (f": {request_ref}" if request_ref else "")],
                    "erasure": {
                        "vault_entries": erased,
                        "consents_withdrawn": withdrawn,
                        "training_uses": uses,
                    },
                    "status": "ok",
                },
            )
        return {
            "subject_digests": [guard.digest("subject", t, subject) for t in tenants],
            "vault_entries": erased,
            "consents_withdrawn": withdrawn,
            "training_uses": uses,
        }

    def purge(self) -> int:
        """Delete vault entries whose retention ran out; returns how many."""
        purge = getattr(self._guard.vault, "purge_expired", None)
        if not callable(purge):
            raise VaultError("the guard's vault has no purge_expired()")
        return int(purge())

    def record_training(
        self,
        subjects: Mapping[str, int],
        *,
        tenant: str,
        destination: str | None,
        dataset: str | None = None,
        model: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Add ledger entries: ``subjects`` maps subject ids to how many records each."""
        guard = self._guard
        self.ledger.record(
            [
                TrainingUse(
                    guard.digest("subject", tenant, subject),
                    tenant,
                    destination,
                    dataset,
                    model,
                    request_id,
                    count,
                )
                for subject, count in subjects.items()
            ]
        )

    def detokenize(
        self,
        text: str,
        *,
        principal: Principal,
        reason: str,
        tenant: str = "default",
        conversation: str | None = None,
    ) -> str:
        """Restore the tokens of one scope in ``text`` for an authorized principal.

        Needs `DETOKENIZE_SCOPE` and a stated reason; every call (allowed or not) is
        recorded as a ``reidentify`` event with the principal, scope digest, reason and
        token count, never the values.
        """
        guard = self._guard
        scope = Scope(tenant, conversation)
        allowed = isinstance(principal, Principal) and DETOKENIZE_SCOPE in principal.scopes
        stated = isinstance(reason, str) and bool(reason.strip())
        tokens = [m.group(0) for m in TOKEN_RE.finditer(text)] if isinstance(text, str) else []
        fields: dict[str, Any] = {
            "type": "reidentify",
            "principal": getattr(principal, "id", None),
            "tenant": tenant,
            "conversation": (
                guard.digest("conversation", tenant, conversation) if conversation else None
            ),
            "reasons": [reason.strip()] if stated else [],
            "tokens": sorted({t.strip("[]") for t in tokens}),
        }
        if not allowed or not stated:
            why = (
                f"the principal lacks the {DETOKENIZE_SCOPE!r} scope"
                if not allowed
                else "no reason was given"
            )
            append_observed(
                guard,
                {
                    **fields,
                    "decision": "deny",
                    "status": "denied",
                    "error": ReidentificationDenied.code,
                },
            )
            raise ReidentificationDenied(
                f"detokenization refused: {why}; re-identification needs a principal with "
                f"{DETOKENIZE_SCOPE!r} and a stated reason"
            )
        if not isinstance(text, str):
            raise TypeError("detokenize takes the text holding the tokens")

        def swap(match: Any) -> str:
            original = guard.vault.detokenize(scope, match.group(0))
            return match.group(0) if original is None else original

        restored = TOKEN_RE.sub(swap, text)
        append_observed(guard, {**fields, "decision": "allow", "status": "ok"})
        return restored


def _default_ledger(guard: GuardHost) -> TrainingLedger:
    from ..storage.sqlite import SQLiteDatabase

    database = getattr(guard.vault, "database", None)
    if isinstance(database, SQLiteDatabase):
        return SQLiteTrainingLedger(database)
    pool = getattr(guard.vault, "pool", None)
    if pool is not None and type(pool).__name__ == "PostgresPool":
        # Checked by name: importing aiguard.vault.postgres needs no psycopg, but keep
        # this path free of it for guards that never use PostgreSQL.
        return PostgresTrainingLedger(pool)
    return InMemoryTrainingLedger()


def _check_subject(subject: str) -> None:
    if not isinstance(subject, str) or not subject:
        raise ValueError("subject must be a non-empty string id")


def _events(guard: GuardHost) -> Iterator[dict[str, Any]]:
    """Event documents read back from the guard's sinks (memory, JSONL, SQLite, PostgreSQL).

    Raises `ProvenanceError` when the guard writes events but no sink can be read back
    (HTTP, logging, OpenTelemetry) or a readable one fails: an export that silently
    listed no events would claim the log holds nothing about the subject.
    """
    readers = [(sink, reader) for sink in guard.sinks if (reader := _reader_of(sink, guard))]
    if guard.sinks and not readers:
        kinds = ", ".join(sorted({type(sink).__name__ for sink in guard.sinks}))
        raise ProvenanceError(
            f"no provenance sink of this guard can be read back ({kinds}); add a JSONL, "
            "SQLite or PostgreSQL sink, or export the subject's events from where they go"
        )
    seen: set[str] = set()
    for sink, reader in readers:
        try:
            documents = list(reader())
        except Exception as exc:  # OSError, or a database driver's own (connection, SQL)
            # Named by type only: a driver's message can carry the DSN and its password.
            raise ProvenanceError(
                f"cannot read the provenance events back from the {type(sink).__name__}: "
                f"{type(exc).__name__}"
            ) from exc
        for document in documents:
            event_id = str(document.get("event_id"))
            if event_id not in seen:
                seen.add(event_id)
                yield document


def _reader_of(sink: Any, guard: GuardHost) -> Callable[[], Iterable[dict[str, Any]]] | None:
    """How to read ``sink``'s documents back, or None for a sink that cannot be read."""
    from ..provenance.postgres import PostgresSink
    from ..provenance.sinks import JsonlSink
    from ..provenance.sqlite_sink import SqliteSink

    records = getattr(sink, "records", None)
    if isinstance(records, list):
        return lambda: [dict(r.document) for r in records]
    log = getattr(sink, "log", None) or guard.log.name
    if isinstance(sink, JsonlSink):

        def jsonl() -> Iterator[dict[str, Any]]:
            guard.flush()
            return _jsonl(sink.path)

        return jsonl
    if isinstance(sink, SqliteSink):
        from ..provenance.sqlite_sink import read_sqlite

        def sqlite() -> Iterator[dict[str, Any]]:
            guard.flush()
            return (dict(r.document) for r in read_sqlite(sink.path, log=log))

        return sqlite
    if isinstance(sink, PostgresSink):
        from ..provenance.postgres import read_postgres

        def postgres() -> Iterator[dict[str, Any]]:
            guard.flush()
            return (
                dict(r.document)
                for r in read_postgres(sink.dsn, log=log, table_prefix=sink.table_prefix)
            )

        return postgres
    return None


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                document = json.loads(line)
            except ValueError:
                continue  # a torn line; `aiguard verify` reports it
            if isinstance(document, dict):
                yield document
