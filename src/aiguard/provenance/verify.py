"""Verifying a provenance log: every record intact, in order, chained, from genesis on."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .canonical import CanonicalError, canonical_bytes
from .chain import GENESIS_PREV, EventRecord, leaf_digest

__all__ = ["VerifyFailure", "VerifyReport", "verify_file", "verify_lines", "verify_records"]


@dataclass(frozen=True, slots=True)
class VerifyFailure:
    """The first record that does not verify: its 1-based line, its sequence number, why."""

    line: int
    seq: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    records: int
    log: str | None = None
    head_seq: int | None = None
    head_digest: str | None = None
    failure: VerifyFailure | None = None
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        if self.ok:
            return (
                f"OK: {self.records} records of log {self.log!r} verify "
                f"(head seq {self.head_seq}, digest {str(self.head_digest)[:16]}…); "
                "without signed checkpoints, records dropped from the end cannot be detected"
            )
        failure = self.failure
        assert failure is not None
        seq = "?" if failure.seq is None else failure.seq
        return f"FAILED at line {failure.line} (seq {seq}): {failure.reason}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "records": self.records,
            "log": self.log,
            "head_seq": self.head_seq,
            "head_digest": self.head_digest,
        }
        if self.failure is not None:
            out["failure"] = {
                "line": self.failure.line,
                "seq": self.failure.seq,
                "reason": self.failure.reason,
            }
        return out


class _Checker:
    def __init__(self) -> None:
        self.log: str | None = None
        self.prev = GENESIS_PREV
        self.expected_seq = 0
        self.count = 0

    def check(
        self, number: int, raw: bytes | None, document: Mapping[str, Any]
    ) -> VerifyFailure | None:
        seq_value = document.get("seq")
        seq = seq_value if isinstance(seq_value, int) and not isinstance(seq_value, bool) else None

        def fail(reason: str) -> VerifyFailure:
            return VerifyFailure(number, seq, reason)

        digest = document.get("digest")
        if not isinstance(digest, str):
            return fail("record has no digest field")
        body = {key: value for key, value in document.items() if key != "digest"}
        try:
            encoded = canonical_bytes(body)
            if raw is not None and raw != canonical_bytes(dict(document)):
                return fail("record bytes are not in canonical form (the line was edited)")
        except CanonicalError as exc:
            return fail(f"record is outside the event domain: {exc}")
        if not hmac.compare_digest(leaf_digest(encoded), digest):
            return fail("digest does not match the record's content (the record was changed)")
        if seq is None:
            return fail("record has no integer seq")
        if self.count == 0:
            if document.get("type") != "genesis" or seq != 0:
                return fail("the log does not start with its genesis record (seq 0)")
            self.log = str(document.get("log"))
        elif document.get("log") != self.log:
            return fail(f"record belongs to log {document.get('log')!r}, not {self.log!r}")
        if seq != self.expected_seq:
            if seq < self.expected_seq:
                return fail(f"expected seq {self.expected_seq}; records were reordered or repeated")
            return fail(f"expected seq {self.expected_seq}; records are missing before this one")
        if document.get("prev") != self.prev:
            return fail("prev does not match the digest of the record before it")
        self.prev = digest
        self.expected_seq += 1
        self.count += 1
        return None

    def report(self, failure: VerifyFailure | None) -> VerifyReport:
        return VerifyReport(
            ok=failure is None and self.count > 0,
            records=self.count,
            log=self.log,
            head_seq=self.expected_seq - 1 if self.count else None,
            head_digest=self.prev if self.count else None,
            failure=failure
            if failure or self.count
            else VerifyFailure(1, None, "the log is empty"),
        )


def verify_lines(lines: Iterable[bytes]) -> VerifyReport:
    """Verify raw JSONL lines, each with its trailing newline (the last may lack it)."""
    checker = _Checker()
    items = list(lines)
    for number, raw in enumerate(items, start=1):
        if not raw.endswith(b"\n"):  # only the last line can lack it
            return checker.report(
                VerifyFailure(
                    number,
                    None,
                    "torn last line: the record is incomplete (the writer stopped mid-record)",
                )
            )
        body = raw.rstrip(b"\n")
        try:
            document = json.loads(body)
        except ValueError:
            return checker.report(VerifyFailure(number, None, "line is not valid JSON"))
        if not isinstance(document, dict):
            return checker.report(VerifyFailure(number, None, "line is not a JSON object"))
        failure = checker.check(number, body, document)
        if failure is not None:
            return checker.report(failure)
    return checker.report(None)


def verify_file(path: str | Path) -> VerifyReport:
    """Verify a JSONL provenance file; raises OSError when it cannot be read."""
    with open(path, "rb") as handle:
        return verify_lines(handle.readlines())


def verify_records(records: Iterable[EventRecord | Mapping[str, Any]]) -> VerifyReport:
    """Verify records or event documents held in memory (e.g. from `InMemorySink`)."""
    checker = _Checker()
    for number, item in enumerate(records, start=1):
        if isinstance(item, EventRecord):
            raw: bytes | None = item.line
            document = item.document
        else:
            raw, document = None, item
        failure = checker.check(number, raw, document)
        if failure is not None:
            return checker.report(failure)
    return checker.report(None)
