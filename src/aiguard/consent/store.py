"""Consent as append-only records: a grant, and later perhaps its withdrawal.

Nothing is updated in place: withdrawing appends a record, so the history of what the
subject agreed to, when, under which terms, stays provable.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from .._clock import utcnow

__all__ = ["ConsentRecord", "ConsentStore", "InMemoryConsentStore", "utcnow"]


class ConsentRecord(BaseModel):
    """One consent event. ``tenant=None`` means the grant holds in every tenant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record_id: str = Field(default_factory=lambda: f"cr_{uuid.uuid4().hex}")
    action: Literal["grant", "withdraw"]
    subject: str
    purpose: str
    tenant: str | None = None
    at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    terms_version: str | None = None
    #: Where and how consent was given (form id, IP pseudonym, checkbox text hash, ...).
    proof: dict[str, str] = Field(default_factory=dict)

    def active_at(self, moment: datetime) -> bool:
        return self.action == "grant" and (self.expires_at is None or moment < self.expires_at)


@runtime_checkable
class ConsentStore(Protocol):
    """Where consent records live. Built-ins: in memory; SQLite and PostgreSQL later."""

    def grant(
        self,
        subject: str,
        purpose: str,
        *,
        tenant: str | None = None,
        expires_at: datetime | None = None,
        terms_version: str | None = None,
        **proof: str,
    ) -> ConsentRecord:
        """Record that ``subject`` agreed to ``purpose``; returns the new record."""
        ...

    def withdraw(self, subject: str, purpose: str, *, tenant: str | None = None) -> ConsentRecord:
        """Record a withdrawal; later calls for that purpose are denied."""
        ...

    def current(
        self, subject: str, purpose: str, *, tenant: str | None = None, at: datetime | None = None
    ) -> ConsentRecord | None:
        """The grant in force for (subject, purpose, tenant) now or ``at``, else None."""
        ...

    def history(self, subject: str) -> list[ConsentRecord]:
        """Every record for the subject, oldest first."""
        ...


class AppendOnlyConsentStore:
    """Shared ``grant`` / ``withdraw``: a store only has to append records durably."""

    def _append(self, record: ConsentRecord) -> ConsentRecord:
        raise NotImplementedError

    def grant(
        self,
        subject: str,
        purpose: str,
        *,
        tenant: str | None = None,
        expires_at: datetime | None = None,
        terms_version: str | None = None,
        **proof: str,
    ) -> ConsentRecord:
        _check_ids(subject, purpose)
        return self._append(
            ConsentRecord(
                action="grant",
                subject=subject,
                purpose=purpose,
                tenant=tenant,
                expires_at=expires_at,
                terms_version=terms_version,
                proof=dict(proof),
            )
        )

    def withdraw(self, subject: str, purpose: str, *, tenant: str | None = None) -> ConsentRecord:
        _check_ids(subject, purpose)
        return self._append(
            ConsentRecord(action="withdraw", subject=subject, purpose=purpose, tenant=tenant)
        )


class InMemoryConsentStore(AppendOnlyConsentStore):
    """Thread-safe in-memory consent store (tests, demos, single-process apps)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[ConsentRecord]] = {}

    def _append(self, record: ConsentRecord) -> ConsentRecord:
        with self._lock:
            self._records.setdefault(record.subject, []).append(record)
        return record

    def current(
        self, subject: str, purpose: str, *, tenant: str | None = None, at: datetime | None = None
    ) -> ConsentRecord | None:
        with self._lock:
            records = list(self._records.get(subject, ()))
        return effective_grant(records, purpose, tenant, at or utcnow())

    def history(self, subject: str) -> list[ConsentRecord]:
        with self._lock:
            return list(self._records.get(subject, ()))


def effective_grant(
    records: list[ConsentRecord], purpose: str, tenant: str | None, moment: datetime
) -> ConsentRecord | None:
    """The latest record that applies decides: a withdrawal after a grant revokes it.

    A withdrawal without a tenant withdraws everywhere; a tenant-scoped withdrawal only
    revokes grants that could apply in that tenant.
    """
    decided: ConsentRecord | None = None
    for record in records:
        if record.purpose != purpose or record.at > moment:
            continue
        if record.tenant is not None and record.tenant != tenant:
            continue
        decided = record
    if decided is None or not decided.active_at(moment):
        return None
    return decided


def _check_ids(subject: str, purpose: str) -> None:
    if not subject or not isinstance(subject, str):
        raise ValueError("subject must be a non-empty string id")
    if not purpose or not isinstance(purpose, str):
        raise ValueError("purpose must be a non-empty string such as 'model_training'")


def snapshot(record: ConsentRecord | None) -> Mapping[str, str | None]:
    """What a provenance event keeps of a consent record: ids and terms, no proof values."""
    if record is None:
        return {}
    return {
        "record_id": record.record_id,
        "terms_version": record.terms_version,
        "granted_at": record.at.isoformat().replace("+00:00", "Z"),
    }
