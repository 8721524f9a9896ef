"""Helpers shared by the database sinks: reading stored bytes back, checking links.

A database sink stores each record's exact canonical bytes and never re-encodes them;
these helpers turn those bytes back into `EventRecord`s and decide whether a record
may be stored after what a table already holds.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ProvenanceError
from .chain import GENESIS_PREV, EventRecord

__all__ = ["Placement", "record_fields", "record_from_stored", "sealed_check"]


def record_from_stored(raw: bytes, seq: int, log: str) -> EventRecord:
    """The record held in ``raw``; bytes that do not parse still come back, so verify fails.

    Raising here would stop `verify_records` with an exception instead of a report
    naming the bad record, so unreadable bytes yield a document carrying only the
    position the table claims. It has no digest, so verification fails at that seq.
    """
    try:
        document = json.loads(raw)
    except ValueError:  # also covers bytes that are not UTF-8
        document = None
    if not isinstance(document, dict):
        return EventRecord({"log": log, "seq": seq, "unreadable": True}, raw)
    return EventRecord(document, raw)


def record_fields(record: EventRecord) -> tuple[str, int, str, str]:
    """(log, seq, prev, digest) of a record about to be stored, checked for shape."""
    document = record.document
    log, seq = document.get("log"), document.get("seq")
    prev, digest = document.get("prev"), document.get("digest")
    if not (
        isinstance(log, str)
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq >= 0
        and isinstance(prev, str)
        and isinstance(digest, str)
    ):
        raise ProvenanceError(
            "a record without log, seq, prev and digest cannot be stored; "
            "records must come from a ProvenanceLog"
        )
    return log, seq, prev, digest


class Placement:
    """Where a record goes relative to what the store holds for its log.

    * the next position, linked to the stored head: stored;
    * a position already holding the same bytes: a harmless repeat (a retry after an
      ambiguous failure), skipped;
    * a position holding other bytes, or a record that does not link to its stored
      predecessor: a second writer forked the chain, refused;
    * a position after a gap (an earlier record never reached this sink): stored, so
      the sink keeps what it was given; verification reports the gap.
    """

    STORE = "store"
    REPEAT = "repeat"
    GAP = "gap"

    @staticmethod
    def decide(
        record: EventRecord,
        seq: int,
        prev: str,
        head_size: int,
        head_digest: str | None,
        stored_at_seq: bytes | None,
        where: str,
    ) -> str:
        if seq < head_size:
            if stored_at_seq is not None and bytes(stored_at_seq) == record.line:
                return Placement.REPEAT
            if stored_at_seq is None:
                # A hole below the head: an earlier gap being filled late. Never
                # rewrite history; the record that should be here is already lost.
                raise ProvenanceError(
                    f"{where}: seq {seq} is below the stored head ({head_size - 1}) and was "
                    "skipped earlier; a late record cannot fill a gap in the chain"
                )
            raise ProvenanceError(
                f"{where}: seq {seq} already holds a different record; another writer "
                "appended to this log (use one ProvenanceLog per log, or a SequencingSink "
                "such as PostgresSink to share a log between processes)"
            )
        expected_prev = GENESIS_PREV if head_size == 0 else head_digest
        if seq == head_size:
            if prev != expected_prev:
                raise ProvenanceError(
                    f"{where}: the record at seq {seq} does not link to the stored record "
                    "before it; another writer forked this log"
                )
            return Placement.STORE
        return Placement.GAP


def sealed_check(record: EventRecord, log: str, seq: int, prev: str) -> None:
    """The sealer must place the document where it was asked to; refuse anything else."""
    document: Any = record.document
    if (
        document.get("log") != log
        or document.get("seq") != seq
        or document.get("prev") != prev
        or not isinstance(document.get("digest"), str)
    ):
        raise ProvenanceError(
            f"the sealer returned a record for log {document.get('log')!r} seq "
            f"{document.get('seq')!r}, but log {log!r} seq {seq} after the stored head was "
            "asked for; nothing was stored"
        )
