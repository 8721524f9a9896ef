"""Appending events to a hash chain and handing them to sinks.

Each record's ``digest`` is ``SHA-256(0x00 || canonical(record without digest))`` (the
RFC 6962 leaf hash, so a Merkle tree can later be built over the same leaves) and its
``prev`` is the predecessor's digest. The chain starts with a genesis record that names
the log, so records copied from another log do not verify here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from ..errors import ProvenanceError
from .canonical import canonical_bytes
from .events import SCHEMA

__all__ = ["GENESIS_PREV", "EventRecord", "ProvenanceLog", "Sink", "leaf_digest", "rfc3339_now"]

GENESIS_PREV = "0" * 64
_log = logging.getLogger("aiguard.provenance")


def leaf_digest(canonical_without_digest: bytes) -> str:
    return hashlib.sha256(b"\x00" + canonical_without_digest).hexdigest()


def rfc3339_now() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}Z"


def uuid7() -> str:
    """A time-ordered UUIDv7 string, so event ids sort by creation time."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as written: the document and the exact canonical bytes of it."""

    document: Mapping[str, Any]
    line: bytes

    @property
    def seq(self) -> int:
        return int(self.document["seq"])

    @property
    def digest(self) -> str:
        return str(self.document["digest"])


@runtime_checkable
class Sink(Protocol):
    """Receives every record, in order. ``emit`` returning means the record is kept."""

    def emit(self, record: EventRecord) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class ResumableSink(Sink, Protocol):
    """A sink that knows the last record it holds, so a restarted log continues its chain."""

    def head(self) -> EventRecord | None: ...


class ProvenanceLog:
    """One hash chain, fed to every sink; thread-safe, one writer at a time."""

    def __init__(self, name: str, sinks: Sequence[Sink] = (), *, required: bool = True) -> None:
        if not name or "\n" in name:
            raise ValueError("a log name must be a non-empty single line")
        self.name = name
        self.sinks = list(sinks)
        #: A sink failure raises `ProvenanceError` (fail closed) unless this is False.
        self.required = required
        self._lock = threading.Lock()
        self._seq = -1
        self._prev = GENESIS_PREV
        head = self._resume_head()
        if head is None:
            self._append_locked({"type": "genesis", "nonce": os.urandom(16).hex()})
        else:
            if head.document.get("log") != name:
                raise ProvenanceError(
                    f"the sink already holds log {head.document.get('log')!r}, not {name!r}; "
                    "use another file or the same log name"
                )
            self._seq, self._prev = head.seq, head.digest

    def _resume_head(self) -> EventRecord | None:
        for sink in self.sinks:
            if isinstance(sink, ResumableSink):
                head = sink.head()
                if head is not None:
                    return head
        return None

    @property
    def head_seq(self) -> int:
        return self._seq

    def append(self, fields: Mapping[str, Any]) -> EventRecord:
        """Chain ``fields`` as the next record and emit it to every sink."""
        with self._lock:
            return self._append_locked(fields)

    def _append_locked(self, fields: Mapping[str, Any]) -> EventRecord:
        document: dict[str, Any] = {
            key: value for key, value in fields.items() if value is not None and value != {}
        }
        document.update(
            schema=SCHEMA,
            log=self.name,
            seq=self._seq + 1,
            prev=self._prev,
            event_id=uuid7(),
            time=rfc3339_now(),
        )
        document.pop("digest", None)
        digest = leaf_digest(canonical_bytes(document))
        document["digest"] = digest
        record = EventRecord(document, canonical_bytes(document))
        failures = []
        for sink in self.sinks:
            try:
                sink.emit(record)
            except Exception as exc:
                failures.append(f"{type(sink).__name__}: {type(exc).__name__}")
                _log.error("provenance sink %s failed: %s", type(sink).__name__, exc)
        if len(failures) < len(self.sinks) or not self.sinks:
            # Some sink holds the record: the chain advances so those sinks stay valid;
            # a failed sink shows a gap, which is exactly what happened to it.
            self._seq += 1
            self._prev = digest
        if failures and self.required:
            raise ProvenanceError(
                "a required provenance sink did not record the event ("
                + ", ".join(failures)
                + "); the call was not completed. Check the sink, then retry."
            )
        return record

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
