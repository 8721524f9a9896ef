"""Appending events to a hash chain and handing them to sinks.

Each record's ``digest`` is ``SHA-256(0x00 || canonical(record without digest))`` (the
RFC 6962 leaf hash, so a Merkle tree can later be built over the same leaves) and its
``prev`` is the predecessor's digest. The chain starts with a genesis record that names
the log, so records copied from another log do not verify here.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import ProvenanceError
from ..storage._faults import translating
from .canonical import _trusted_bytes, canonical_bytes, checked_fields
from .checkpoint import MerkleFrontier, Signer
from .events import SCHEMA

__all__ = [
    "GENESIS_PREV",
    "BatchSink",
    "EventRecord",
    "ProvenanceLog",
    "Receipt",
    "ResumableSink",
    "Sealer",
    "SequencingSink",
    "Sink",
    "hashed_bytes",
    "leaf_digest",
    "new_request_id",
    "record_intact",
    "rfc3339_now",
    "seal_document",
]

GENESIS_PREV = "0" * 64
_log = logging.getLogger("aiguard.provenance")


_LEAF_PREFIX = hashlib.sha256(b"\x00")


def leaf_digest(canonical_without_digest: bytes) -> str:
    return hashlib.sha256(b"\x00" + canonical_without_digest).hexdigest()


_DIGEST_SUFFIX_LEN = len(',"digest":"') + 64 + len('"}')


def seal_document(
    document: Mapping[str, Any], seq: int, prev: str, *, checked: bool = False
) -> EventRecord:
    """Place a document at ``seq`` after ``prev``: the record and its exact line.

    The line is the RFC 8785 bytes that were hashed with the digest appended as the
    last member: ``{...canonical body...,"digest":"<hex>"}``. So the hashed bytes are
    the line without that member, recoverable exactly, and encoding happens once.
    ``checked`` skips the domain check for documents built only from strings, integers
    in range, booleans and None (aiguard's own events), where it cannot fail.
    """
    body = {key: value for key, value in document.items() if key != "digest"}
    return _seal_in_place(body, seq, prev, checked)


def _seal_in_place(body: dict[str, Any], seq: int, prev: str, checked: bool) -> EventRecord:
    # The log owns the documents it prepared, so it seals them without copying.
    body.pop("digest", None)
    body["seq"] = seq
    body["prev"] = prev
    hashed = _trusted_bytes(body) if checked else canonical_bytes(body)
    digest, line = _digest_and_line(hashed)
    body["digest"] = digest
    return EventRecord(body, line)


def _digest_and_line(hashed: bytes) -> tuple[str, bytes]:
    """The leaf digest of canonical bytes, and the stored line: those bytes with
    ``,"digest":"<hex>"`` as the last member (what `hashed_bytes` takes apart)."""
    leaf = _LEAF_PREFIX.copy()
    leaf.update(hashed)
    digest = leaf.hexdigest()
    return digest, b"".join((hashed[:-1], b',"digest":"', digest.encode(), b'"}'))


def hashed_bytes(line: bytes) -> bytes | None:
    """The canonical bytes a stored line's digest covers, or None if it is not a sealed line."""
    if len(line) <= _DIGEST_SUFFIX_LEN or not line.endswith(b'"}'):
        return None
    cut = len(line) - _DIGEST_SUFFIX_LEN
    if line[cut : cut + 11] != b',"digest":"':
        return None
    return line[:cut] + b"}"


def record_intact(record: EventRecord) -> bool:
    """The record's line hashes to its digest and says what its document says."""
    hashed = hashed_bytes(record.line)
    if hashed is None:
        return False
    digest = record.document.get("digest")
    return (
        isinstance(digest, str)
        and leaf_digest(hashed) == digest
        and (record.line[-66:-2].decode("ascii", "replace") == digest)
    )


_second_cache: list[tuple[int, str]] = [(-1, "")]


def _second_prefix(second: int) -> str:
    cached_second, prefix = _second_cache[0]
    if cached_second != second:
        # Formatting a datetime costs more than the rest of the event header; once a second.
        prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        _second_cache[0] = (second, prefix)
    return prefix


def rfc3339_now() -> str:
    """UTC time with microseconds, e.g. ``2026-11-26T06:13:31.540784Z``."""
    now_us = time.time_ns() // 1000
    return f"{_second_prefix(now_us // 1_000_000)}{now_us % 1_000_000:06d}Z"


#: The UUID variant nibble (binary 10xx) from a random hex digit's two low bits.
_VARIANT = dict(zip("0123456789abcdef", "89ab89ab89ab89ab", strict=True))
_RANDOM_DIGITS = 19


def _random_blocks() -> Iterator[str]:
    """UUIDv7 tails (``7xxx-Vxxx-xxxxxxxxxxxx``: version, 74 random bits, variant V).

    128 ids' worth of OS randomness per syscall: a syscall per event would release the
    GIL on the call path and hand it to the writer thread, thousands of times a second.
    """
    digits = os.urandom(_RANDOM_DIGITS * 64).hex()
    return iter(
        [
            f"7{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:]}"
            for r in (digits[i : i + _RANDOM_DIGITS] for i in range(0, len(digits), 19))
        ]
    )


#: Shared by all threads: a list iterator hands each block out once, atomically.
_blocks = [_random_blocks()]


def _forget_entropy() -> None:
    # A forked child must not hand out the parent's remaining random digits again.
    _blocks[0] = _random_blocks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_entropy)


def _millis_hex() -> str:
    """A UUIDv7's first 48 bits: Unix milliseconds, 12 hex digits."""
    return f"{(time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF:012x}"


def uuid7() -> str:
    """A time-ordered UUIDv7 string (RFC 9562), so event ids sort by creation time."""
    ms = _millis_hex()
    return f"{ms[:8]}-{ms[8:]}-{_random_tail()}"


def new_request_id() -> str:
    """A request id: ``req_`` and a UUIDv7's 32 hex digits (time-ordered, like events)."""
    return f"req_{_millis_hex()}{_random_tail().replace('-', '')}"


def _random_tail() -> str:
    tail = next(_blocks[0], None)
    if tail is None:
        _blocks[0] = _random_blocks()
        tail = next(_blocks[0])
    return tail


def _stamp() -> tuple[str, str]:
    """An event id (UUIDv7) and its RFC 3339 time, from one clock reading.

    The id has 48 bits of Unix milliseconds, version 7, then 74 random bits around the
    variant.
    """
    now_us = time.time_ns() // 1000
    ms = f"{(now_us // 1000) & 0xFFFF_FFFF_FFFF:012x}"
    tail = _random_tail()
    prefix = _second_prefix(now_us // 1_000_000)
    return f"{ms[:8]}-{ms[8:]}-{tail}", f"{prefix}{now_us % 1_000_000:06d}Z"


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


@runtime_checkable
class BatchSink(Sink, Protocol):
    """A sink that takes several records at once (group commit: one flush for the batch)."""

    def emit_batch(self, records: Sequence[EventRecord]) -> None: ...


#: Turns an unsealed document into a record at a position: ``seal(document, seq, prev)``.
Sealer = Callable[[dict[str, Any], int, str], EventRecord]


@runtime_checkable
class SequencingSink(Sink, Protocol):
    """A shared store that assigns positions itself, so several processes append to one log.

    ``append_unsealed`` locks the log's head (e.g. ``SELECT ... FOR UPDATE`` on
    PostgreSQL), seals each document after it with ``seal(document, seq, prev)``, stores
    the records' exact bytes and returns them. The log then mirrors them to other sinks.
    """

    def append_unsealed(
        self, log: str, documents: Sequence[dict[str, Any]], seal: Sealer
    ) -> list[EventRecord]: ...


_NOT_WRITTEN = "the provenance event was not written"


class Receipt:
    """Handed back by `ProvenanceLog.append`; ``wait()`` returns the record once every
    required sink holds it (at once for a synchronous log)."""

    __slots__ = ("_document", "_error", "_record", "_signal")

    def __init__(
        self,
        signal: threading.Condition | None = None,
        document: dict[str, Any] | None = None,
    ) -> None:
        self._signal = signal
        #: The document waiting in the writer's queue (a receipt is its own queue item).
        self._document = document
        self._record: EventRecord | None = None
        self._error: str | None = None

    def _resolve(self, record: EventRecord | None, error: str | None = None) -> None:
        # Error first: `done` reads the record, and a record must not look final early.
        self._error = error if record is not None else (error or _NOT_WRITTEN)
        self._record = record
        self._document = None

    def done(self) -> bool:
        return self._record is not None or self._error is not None

    def wait(self, timeout: float | None = None) -> EventRecord:
        """The written record; raises `ProvenanceError` if a required sink did not take it."""
        if not self.done() and self._signal is not None:
            with self._signal:
                self._signal.wait_for(self.done, timeout)
        if not self.done():
            raise ProvenanceError(
                f"the provenance event was not written within {timeout} s; the writer is "
                "behind or a sink hangs"
            )
        if self._error is not None or self._record is None:
            raise ProvenanceError(self._error or _NOT_WRITTEN)
        return self._record


@dataclass
class _SinkState:
    sink: Sink
    required: bool
    #: Records the sink has not taken yet, oldest first; they go out before newer ones.
    backlog: deque[EventRecord] = field(default_factory=deque)
    failures: int = 0
    last_error: str | None = None
    batches: bool = False

    def __post_init__(self) -> None:
        # Protocol isinstance checks are slow; decide once per sink.
        self.batches = isinstance(self.sink, BatchSink)

    @property
    def healthy(self) -> bool:
        # Records in flight are not a failure; records a failed attempt left behind are.
        return not (self.backlog and self.last_error is not None)

    @property
    def label(self) -> str:
        return type(self.sink).__name__


_STOP = object()


class ProvenanceLog:
    """One hash chain, fed to every sink in order.

    * Synchronous by default: ``append`` seals and writes before it returns.
      ``background=True`` moves canonicalizing, hashing and writing to a writer thread
      behind a bounded queue (``when_full``: ``"block"`` waits, ``"fail"`` raises), with
      group commit: each sink takes a whole batch at once.
    * Each sink is required (its ``required`` attribute, default True) or best effort.
      A sink that fails keeps the records it missed in a backlog, retried in order before
      anything newer; while a required sink has a backlog the log is unhealthy and
      `check` raises, so new calls fail closed before anything is sent.
    * With a ``signer``, a signed checkpoint record (a Merkle root over every record
      before it, in a C2SP signed note) is appended every ``checkpoint_every`` records,
      every ``checkpoint_interval`` seconds and on close, and the latest note is also
      written to ``checkpoint_file`` for publishing elsewhere.
    """

    def __init__(
        self,
        name: str,
        sinks: Sequence[Sink] = (),
        *,
        required: bool = True,
        signer: Signer | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval: float | None = 60.0,
        checkpoint_file: str | os.PathLike[str] | None = None,
        background: bool = False,
        queue_size: int = 10_000,
        when_full: str = "block",
        batch_size: int = 512,
        retry_interval: float = 1.0,
    ) -> None:
        if not name or "\n" in name:
            raise ValueError("a log name must be a non-empty single line")
        if when_full not in {"block", "fail"}:
            raise ValueError("when_full must be 'block' or 'fail'")
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.name = name
        self.sinks = list(sinks)
        self._states = [_SinkState(s, bool(getattr(s, "required", required))) for s in sinks]
        sequencers = [s for s in self.sinks if isinstance(s, SequencingSink)]
        if len(sequencers) > 1:
            raise ValueError("a log can have at most one sequencing (shared) sink")
        self._sequencer = sequencers[0] if sequencers else None
        #: Set while the shared sink's last append failed; `check` probes it again.
        self._sequencer_error: str | None = None
        if self._sequencer is not None and signer is not None:
            raise ValueError(
                "signed checkpoints need one writer per chain; a shared (sequencing) sink "
                "interleaves several processes, so sign its log with `aiguard verify` tooling"
            )
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.checkpoint_file = Path(checkpoint_file) if checkpoint_file is not None else None
        self._when_full = when_full
        self._batch_size = batch_size
        self._retry_interval = retry_interval
        self._lock = threading.RLock()
        self._seq = -1
        self._prev = GENESIS_PREV
        self._frontier = MerkleFrontier()
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._closed = False
        self._writer_error: str | None = None
        self.latest_checkpoint: str | None = None
        self._resume()
        self._queue: deque[Any] | None = None
        self._queue_size = queue_size
        self._wakeup = threading.Condition()
        self._writer_idle = False
        self._producers_waiting = 0
        self._written = threading.Condition()
        self._thread: threading.Thread | None = None
        for sink in self.sinks:
            attach = getattr(sink, "attach", None)
            if callable(attach):
                attach(self)
        #: ``sink.on_append(document)`` hooks, run on the appending thread: what a sink
        #: needs from the caller's context (a tracing parent) is gone on the writer thread.
        self._on_append: tuple[Callable[[Mapping[str, Any]], None], ...] = tuple(
            hook for sink in self.sinks if callable(hook := getattr(sink, "on_append", None))
        )
        if background:
            self._queue = deque()
            self._thread = threading.Thread(
                target=self._run, name=f"aiguard-provenance-{name}", daemon=True
            )
            self._thread.start()
            atexit.register(_close_at_exit, weakref.ref(self))

    # -- start-up ----------------------------------------------------------------------

    def _resume(self) -> None:
        head: EventRecord | None = None
        for sink in self.sinks:
            if isinstance(sink, ResumableSink):
                head = sink.head()
                if head is not None:
                    break
        with self._lock:
            if head is None:
                if self._sequencer is None:
                    self._write([self._prepare({"type": "genesis", **self._genesis_fields()})])
                return
            if head.document.get("log") != self.name:
                raise ProvenanceError(
                    f"the sink already holds log {head.document.get('log')!r}, not "
                    f"{self.name!r}; use another file or the same log name"
                )
            if not record_intact(head):
                raise ProvenanceError(
                    f"the last record of log {self.name!r} (seq {head.seq}) does not match "
                    "its digest; refusing to extend a damaged chain. Run `aiguard verify`."
                )
            self._seq, self._prev = head.seq, head.digest
            if self.signer is not None:
                self._rebuild_frontier()
            recovered = [
                getattr(sink, "recovered", None)
                for sink in self.sinks
                if getattr(sink, "recovered", None)
            ]
            for info in recovered:
                self._write([self._prepare({"type": "recovery", "recovery": info})])

    def _rebuild_frontier(self) -> None:
        """Continue the Merkle tree: the last checkpoint stores its compact range."""
        tail: list[EventRecord] | None = None
        for sink in self.sinks:
            reader = getattr(sink, "tail_from_checkpoint", None)
            if callable(reader):
                tail = list(reader())
                break
        if tail is None:
            raise ProvenanceError(
                "signed checkpoints on a resumed log need a sink that reads back its tail "
                "(JsonlSink, InMemorySink)"
            )
        frontier = MerkleFrontier()
        starts_at_checkpoint = bool(tail) and tail[0].document.get("type") == "checkpoint"
        if starts_at_checkpoint:
            frontier = MerkleFrontier.from_state(tail[0].document["checkpoint"]["frontier"])
        elif tail and tail[0].seq != 0:
            raise ProvenanceError("the sink's tail does not start at a checkpoint or genesis")
        for record in tail:
            frontier.append(bytes.fromhex(record.digest))
        if frontier.size != self._seq + 1:
            raise ProvenanceError(
                f"log {self.name!r}: the tail read back ends at {frontier.size - 1}, "
                f"not at the head {self._seq}; refusing to extend it"
            )
        self._frontier = frontier
        self._since_checkpoint = len(tail) - 1 if starts_at_checkpoint else len(tail)

    def _genesis_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"nonce": os.urandom(16).hex()}
        if self.signer is not None:
            fields["signer"] = {
                "name": self.signer.name,
                "key_id": self.signer.key_id.hex(),
                "vkey": self.signer.verifier.vkey,
            }
        return fields

    # -- appending -----------------------------------------------------------------

    @property
    def head_seq(self) -> int:
        return self._seq

    @property
    def background(self) -> bool:
        """True when a writer thread seals and writes, so `append` only queues."""
        return self._queue is not None

    def _prepare(self, fields: Mapping[str, Any], *, check: bool = False) -> dict[str, Any]:
        if check:
            document = checked_fields(fields)
        else:
            # `type(...) is not dict` first: comparing each value with {} costs a µs.
            document = {
                key: value
                for key, value in fields.items()
                if value is not None and (type(value) is not dict or value)
            }
        document.pop("digest", None)
        document["schema"] = SCHEMA
        document["log"] = self.name
        document["event_id"], document["time"] = _stamp()
        return document

    def append(self, fields: Mapping[str, Any], *, trusted: bool = False) -> Receipt:
        """Chain ``fields`` as the next record; the receipt tells when it is written.

        A synchronous log raises `ProvenanceError` at once when a required sink did not
        take the record (it stays in that sink's backlog and is delivered later). A
        document outside the canonical domain (floats, integers beyond ±(2^53-1),
        non-ASCII keys, other types) raises `CanonicalError` here, before it is queued.
        ``trusted`` is for aiguard's own events, whose values are strings, safe integers,
        booleans and None by construction: they skip that check. Do not change a
        document's nested values after appending it: a background writer encodes them
        later.
        """
        if self._closed:
            raise ProvenanceError(f"provenance log {self.name!r} is closed")
        # Checked here, so a bad document is the caller's error, not the writer thread's.
        document = self._prepare(fields, check=not trusted)
        for hook in self._on_append:
            hook(document)
        if self._queue is not None:
            receipt = Receipt(self._written, document)
            self._enqueue(receipt)
            return receipt
        receipt = Receipt()
        with self._lock:
            records = self._write([document])
        error = self._required_failure()
        receipt._resolve(records[0], error)
        if error is not None:
            raise ProvenanceError(error)
        return receipt

    def _enqueue(self, item: Any, *, force: bool = False) -> None:
        # Lock-free unless the queue is full or the writer sleeps: deque appends are atomic,
        # and the lock and wake-up would cost the caller more than building the event.
        queue = self._queue
        assert queue is not None
        if len(queue) >= self._queue_size and not force:
            self._wait_for_room()
        queue.append(item)
        if self._writer_idle:
            # The writer publishes "idle" before its last look at the queue, so either it
            # saw this item or it is told about it here.
            with self._wakeup:
                self._wakeup.notify_all()

    def _wait_for_room(self) -> None:
        with self._wakeup:
            if len(self._queue or ()) < self._queue_size:
                return
            if self._when_full == "fail":
                raise ProvenanceError(
                    f"the provenance queue of log {self.name!r} is full; the call fails "
                    "closed (when_full='fail'). A sink is slow or down."
                )
            self._producers_waiting += 1
            try:
                self._wakeup.wait_for(lambda: len(self._queue or ()) < self._queue_size)
            finally:
                self._producers_waiting -= 1

    def check(self) -> None:
        """Raise `ProvenanceError` while a required sink has records it has not taken."""
        error = self._required_failure()
        if error is not None and self._queue is None:
            # Synchronous logs retry here; a background writer retries on its own timer.
            with self._lock:
                for state in self._states:
                    self._drain(state)
            error = self._required_failure()
        if error is None and self._sequencer_error is not None:
            # A shared (sequencing) sink keeps no backlog: the record of a failed append
            # was never sealed. Probe it; while it is down, refuse before sending.
            probe = getattr(self._sequencer, "head", None)
            try:
                if callable(probe):
                    probe()
            except Exception as exc:
                error = f"the shared provenance sink is unreachable ({type(exc).__name__})."
            else:
                self._sequencer_error = None
        if error is not None:
            raise ProvenanceError(error + " New calls are refused until it recovers.")

    @property
    def healthy(self) -> bool:
        return self._required_failure() is None

    def _required_failure(self) -> str | None:
        if self._writer_error is not None:
            return f"the provenance writer stopped: {self._writer_error}"
        for state in self._states:
            if state.required and not state.healthy:
                return (
                    f"required provenance sink {state.label} has {len(state.backlog)} "
                    f"undelivered record(s) ({state.last_error}); they are kept and delivered "
                    "when it recovers. Fix the sink, or make it best effort (required = false)"
                )
        return None

    def _seal(self, document: dict[str, Any], seq: int, prev: str) -> EventRecord:
        # `append` checked the document's domain (or aiguard built it).
        return _seal_in_place(document, seq, prev, True)

    def _write(self, documents: list[dict[str, Any]]) -> list[EventRecord]:
        """Seal, deliver, and checkpoint when due. Caller holds the lock (or is the writer)."""
        if self._sequencer is not None:
            try:
                records = self._sequencer.append_unsealed(self.name, documents, self._seal)
            except Exception as exc:
                # Remembered so that `check` refuses new calls before they are sent.
                self._sequencer_error = f"{type(exc).__name__}: {exc}"
                raise
            self._sequencer_error = None
            if records:
                self._seq, self._prev = records[-1].seq, records[-1].digest
            self._deliver(records, skip=self._sequencer)
            return records
        records = []
        seq, prev = self._seq, self._prev
        grow = self._frontier.append if self.signer is not None else None
        # `_seal_in_place` inlined: this loop is the writer's whole per-event cost.
        encode, seal, record_of = _trusted_bytes, _digest_and_line, EventRecord
        for document in documents:
            # `append` checked the domain (or aiguard built the document); `_prepare`
            # removed any "digest".
            seq += 1
            document["seq"] = seq
            document["prev"] = prev
            prev, line = seal(encode(document))
            document["digest"] = prev
            records.append(record_of(document, line))
            if grow is not None:
                grow(bytes.fromhex(prev))
        # Only now: a batch that failed half way leaves the head where it was.
        self._seq, self._prev = seq, prev
        self._since_checkpoint += len(records)
        self._deliver(records)
        if self.signer is not None and self._since_checkpoint >= self.checkpoint_every:
            self._checkpoint()
        return records

    def _checkpoint(self) -> None:
        assert self.signer is not None
        if self._since_checkpoint == 0:
            return
        # Only records every sink already holds durably are covered by a signature.
        self._flush_sinks()
        size = self._seq + 1
        state = self._frontier.state()
        root = self._frontier.root()
        note = self.signer.sign_checkpoint(self.name, size, root)
        document = self._prepare(
            {
                "type": "checkpoint",
                "checkpoint": {
                    "size": size,
                    "root": base64.b64encode(root).decode(),
                    "frontier": state,
                    "key_id": self.signer.key_id.hex(),
                    "note": note,
                },
            }
        )
        record = self._seal(document, self._seq + 1, self._prev)
        self._seq, self._prev = record.seq, record.digest
        self._frontier.append(bytes.fromhex(record.digest))
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._deliver([record])
        self._flush_sinks()
        self.latest_checkpoint = note
        if self.checkpoint_file is not None and self._required_failure() is None:
            with translating(
                ProvenanceError,
                component="the checkpoint file",
                target=os.fspath(self.checkpoint_file),
                operation="write the latest checkpoint",
                key="[provenance] checkpoint_file",
            ):
                tmp = self.checkpoint_file.with_name(self.checkpoint_file.name + ".tmp")
                tmp.write_text(note, encoding="utf-8")
                os.replace(tmp, self.checkpoint_file)

    def _deliver(self, records: Sequence[EventRecord], skip: Sink | None = None) -> None:
        for state in self._states:
            if state.sink is skip:
                continue
            state.backlog.extend(records)
            self._drain(state)

    def _drain(self, state: _SinkState) -> None:
        if not state.backlog:
            return
        pending = list(state.backlog)
        try:
            if state.batches:
                state.sink.emit_batch(pending)  # type: ignore[attr-defined]
            else:
                for record in pending:
                    state.sink.emit(record)
                    state.backlog.popleft()
        except Exception as exc:
            state.failures += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            _log.error("provenance sink %s failed: %s", state.label, state.last_error)
            return
        state.backlog.clear()
        state.last_error = None

    def _flush_sinks(self) -> None:
        for state in self._states:
            if state.healthy:
                try:
                    state.sink.flush()
                except Exception as exc:
                    state.last_error = f"flush: {type(exc).__name__}: {exc}"
                    _log.error("provenance sink %s failed to flush: %s", state.label, exc)

    # -- the background writer --------------------------------------------------------

    def _run(self) -> None:
        pending = self._queue
        assert pending is not None
        while True:
            timeout = self._retry_interval
            if self.signer is not None and self.checkpoint_interval is not None:
                due = self._last_checkpoint + self.checkpoint_interval - time.monotonic()
                timeout = max(0.0, min(timeout, due))
            if not pending:
                with self._wakeup:
                    self._writer_idle = True
                    if not pending:
                        self._wakeup.wait(timeout)
                    self._writer_idle = False
            popleft = pending.popleft
            items = [popleft() for _ in range(min(len(pending), self._batch_size))]
            if self._producers_waiting:
                with self._wakeup:
                    self._wakeup.notify_all()  # producers blocked on a full queue
            batch: list[Receipt] = items
            markers: list[threading.Event] = []
            stop = False
            if not all(type(item) is Receipt for item in items):
                batch = [item for item in items if type(item) is Receipt]
                markers = [item for item in items if isinstance(item, threading.Event)]
                stop = any(item is _STOP for item in items)
            try:
                with self._lock:
                    self._tick(batch)
            except Exception as exc:  # the writer must never die silently
                self._writer_error = f"{type(exc).__name__}: {exc}"
                _log.exception("provenance writer failed")
                for receipt in batch:
                    receipt._resolve(None, self._writer_error)
            if batch:
                with self._written:
                    self._written.notify_all()
            for marker in markers:
                marker.set()
            if stop and not pending:
                return

    def _tick(self, batch: list[Receipt]) -> None:
        for state in self._states:
            self._drain(state)
        if batch:
            records = self._write([receipt._document for receipt in batch])  # type: ignore[misc]
            error = self._required_failure()
            for receipt, record in zip(batch, records, strict=True):
                receipt._resolve(record, error)
        if (
            self.signer is not None
            and self.checkpoint_interval is not None
            and time.monotonic() - self._last_checkpoint >= self.checkpoint_interval
        ):
            self._checkpoint()

    # -- flushing and closing ---------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until everything appended so far is written, then flush every sink."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            if threading.current_thread() is self._thread:
                return
            marker = threading.Event()
            self._enqueue(marker, force=True)
            if not marker.wait(timeout):
                raise ProvenanceError(f"provenance log {self.name!r} did not flush in {timeout} s")
        with self._lock:
            for state in self._states:
                self._drain(state)
            self._flush_sinks()

    def close(self) -> None:
        """Write what is queued, seal it with a final checkpoint, close the sinks."""
        if self._closed:
            return
        if self._queue is not None and self._thread is not None:
            self._enqueue(_STOP, force=True)
            self._thread.join()
        with self._lock:
            for state in self._states:
                self._drain(state)
            if self.signer is not None:
                self._checkpoint()
            self._flush_sinks()
            self._closed = True
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:
                    _log.error("provenance sink %s failed to close: %s", type(sink).__name__, exc)


def _close_at_exit(ref: weakref.ReferenceType[ProvenanceLog]) -> None:
    log = ref()
    if log is not None:
        log.close()
