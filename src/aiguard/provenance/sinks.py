"""Built-in sinks: in memory (tests) and a JSONL file (the embedded default)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ProvenanceError
from ..storage._faults import translating
from .chain import EventRecord

if TYPE_CHECKING:
    from .chain import ProvenanceLog

__all__ = ["InMemorySink", "JsonlSink", "log_segments"]

FSYNC_POLICIES = ("never", "interval", "always")


class InMemorySink:
    """Keeps every record in a list; thread-safe. Made for tests and demos.

    Reading it first waits for the log's background writer (if any), so a test sees
    every event appended before the read.
    """

    def __init__(self, *, required: bool = True) -> None:
        self.required = required
        self._lock = threading.Lock()
        self._records: list[EventRecord] = []
        self._owner: weakref.ReferenceType[ProvenanceLog] | None = None

    def attach(self, log: ProvenanceLog) -> None:
        self._owner = weakref.ref(log)

    def _settle(self) -> None:
        owner = self._owner() if self._owner is not None else None
        writer = owner._thread if owner is not None else None
        if writer is not None and writer.is_alive() and threading.current_thread() is not writer:
            assert owner is not None
            owner.flush()

    def emit(self, record: EventRecord) -> None:
        with self._lock:
            self._records.append(record)

    def emit_batch(self, records: Sequence[EventRecord]) -> None:
        with self._lock:
            self._records.extend(records)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def head(self) -> EventRecord | None:
        with self._lock:
            return self._records[-1] if self._records else None

    def tail_from_checkpoint(self) -> list[EventRecord]:
        with self._lock:
            records = list(self._records)
        for index in range(len(records) - 1, -1, -1):
            if records[index].document.get("type") == "checkpoint":
                return records[index:]
        return records

    @property
    def records(self) -> list[EventRecord]:
        self._settle()
        with self._lock:
            return list(self._records)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The event documents, oldest first (genesis included)."""
        return [dict(record.document) for record in self.records]

    def calls(self) -> list[dict[str, Any]]:
        """Events about calls (allowed, refused or failed), without the log's own records."""
        return [e for e in self.events if e["type"] in {"call", "refusal", "error", "protect"}]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.records)


def _lock_exclusively(handle: Any, path: Path, key: str = "[provenance] jsonl") -> None:
    if sys.platform == "win32":  # pragma: no cover - advisory locks are POSIX here
        return
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise ProvenanceError(
            f"{path} is locked: it is being written by another process, and a JSONL log "
            "has one writer. Give each process its own file (e.g. provenance-{pid}.jsonl) "
            f"and log name, or use a shared sink (PostgreSQL); policy key {key}"
        ) from exc


class JsonlSink:
    """Appends one canonical JSON line per record to a file; one writing process per file.

    ``fsync``: ``"always"`` makes every batch durable before the writer goes on (with a
    background log that is group commit: one fsync per batch), ``"interval"`` syncs at
    most every ``fsync_interval`` seconds, ``"never"`` leaves it to the OS (records
    survive a killed process, not a power cut). Opening an existing log continues its
    chain; a torn last record (the writer died mid-line) is moved to ``<file>.torn`` and
    cut off, and the log records a ``recovery`` event. Damage anywhere else is never
    repaired: the log refuses to extend it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: str | bool = "never",
        fsync_interval: float = 1.0,
        max_bytes: int | None = None,
        required: bool = True,
        key: str = "[provenance] jsonl",
    ) -> None:
        if isinstance(fsync, bool):
            fsync = "always" if fsync else "never"
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        if max_bytes is not None and max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        self.path = Path(path)
        self.required = required
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._max_bytes = max_bytes
        self._last_sync = time.monotonic()
        self._lock = threading.Lock()
        self.recovered: dict[str, Any] | None = None
        self.key = key
        with self._faults("open the log"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a failed write leaves nothing in a buffer to be written later,
            # so the file can be cut back to the last whole record (see emit_batch).
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
            _lock_exclusively(self._file, self.path, self.key)
            self._repair_torn_tail()

    def _faults(self, operation: str) -> Any:
        return translating(
            ProvenanceError,
            component="the JSONL provenance sink",
            target=os.fspath(self.path),
            operation=operation,
            key=self.key,
        )

    @property
    def segments(self) -> list[Path]:
        """Rotated files of this log, oldest first (the active file is not among them)."""
        return log_segments(self.path)[:-1]

    def _rotate(self) -> None:
        """Close the active file under the next segment name and start an empty one.

        The chain simply continues: the new file's first record links to the old file's
        last, so the segments verify as one log (`verify_file` finds them).
        """
        self._file.flush()
        os.fsync(self._file.fileno())
        numbers = [_segment_number(p, self.path) for p in self.segments]
        target = _segment_path(self.path, max(numbers, default=0) + 1)
        os.replace(self.path, target)
        old = self._file
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
        _lock_exclusively(self._file, self.path, self.key)
        old.close()

    def _repair_torn_tail(self) -> None:
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            cut = _last_newline(handle, size)
            handle.seek(cut)
            torn = handle.read()
        quarantine = self.path.with_name(self.path.name + ".torn")
        with open(quarantine, "ab") as out:
            out.write(torn + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.truncate(self.path, cut)
        self.recovered = {
            "reason": "torn last record cut off at start-up",
            "torn_bytes": len(torn),
            "torn_sha256": hashlib.sha256(torn).hexdigest(),
            "quarantine": quarantine.name,
            "offset": cut,
        }

    def head(self) -> EventRecord | None:
        last = None
        for candidate in reversed(log_segments(self.path)):
            last = _last_line(candidate)
            if last is not None:
                break
        if last is None:
            return None
        try:
            document = json.loads(last)
        except ValueError as exc:
            raise ProvenanceError(
                f"{self.path}: the last record is not valid JSON (the file is damaged); run "
                f"`aiguard verify` and restore it, or point {self.key} at a new file"
            ) from exc
        return EventRecord(document, last.rstrip(b"\n"))

    def tail_from_checkpoint(self) -> list[EventRecord]:
        """Records from the last checkpoint (inclusive) to the end, read backwards."""
        lines: list[bytes] = []
        found = False
        for segment in reversed(log_segments(self.path)):
            for line in _lines_backwards(segment):
                lines.append(line)
                if b'"type":"checkpoint"' in line:
                    found = True
                    break
            if found:
                break
        lines.reverse()
        return [EventRecord(json.loads(line), line) for line in lines]

    def emit(self, record: EventRecord) -> None:
        self.emit_batch((record,))

    def emit_batch(self, records: Sequence[EventRecord]) -> None:
        lines = [record.line for record in records]
        lines.append(b"")  # the last line's newline, without copying the batch again
        data = b"\n".join(lines)
        with self._lock, self._faults("append records"):
            if self._max_bytes is not None and self._file.tell() >= self._max_bytes:
                self._rotate()
            start = self._file.tell()
            try:
                self._write_all(data)
            except OSError:
                # A full disk or an I/O error can leave part of a line behind; cut it
                # off so the backlog's replay continues the file at a record boundary.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._file.fileno(), start)
                    # The offset moved with the partial write; put it back at the end so
                    # the next batch measures its start from the file as it is.
                    self._file.seek(0, os.SEEK_END)
                raise
            if self._fsync == "always" or (
                self._fsync == "interval"
                and time.monotonic() - self._last_sync >= self._fsync_interval
            ):
                os.fsync(self._file.fileno())
                self._last_sync = time.monotonic()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError(errno.EIO, "the log file accepted no bytes")
            view = view[written:]

    def flush(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._last_sync = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()


def _segment_path(active: Path, number: int) -> Path:
    return active.with_name(f"{active.stem}.{number:06d}{active.suffix}")


def _segment_number(segment: Path, active: Path) -> int:
    middle = segment.name[len(active.stem) + 1 : len(segment.name) - len(active.suffix)]
    return int(middle) if middle.isdigit() else -1


def log_segments(active: str | os.PathLike[str]) -> list[Path]:
    """A JSONL log's files in chain order: rotated segments oldest first, then the active
    file (``events.jsonl`` rotates to ``events.000001.jsonl``, ``events.000002.jsonl``…)."""
    path = Path(active)
    rotated = [
        p
        for p in path.parent.glob(f"{path.stem}.*{path.suffix}")
        if _segment_number(p, path) >= 0 and p != path
    ]
    rotated.sort(key=lambda p: _segment_number(p, path))
    return [*rotated, path] if path.exists() or not rotated else rotated


def _last_newline(handle: Any, size: int) -> int:
    """Offset just after the last newline before ``size`` (0 when there is none)."""
    position = size
    block = 4096
    while position > 0:
        step = min(block, position)
        position -= step
        handle.seek(position)
        chunk = handle.read(step)
        index = chunk.rfind(b"\n")
        if index != -1:
            return int(position + index + 1)
    return 0


def _lines_backwards(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    """Complete lines of a file, last first, without the newline; reads in blocks."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        rest = b""
        while position > 0:
            step = min(block, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + rest
            parts = chunk.split(b"\n")
            rest = parts[0]
            for part in reversed(parts[1:]):
                if part:
                    yield part
        if rest:
            yield rest


def _last_line(path: Path) -> bytes | None:
    try:
        if path.stat().st_size == 0:
            return None
    except FileNotFoundError:
        return None
    for line in _lines_backwards(path):
        return line + b"\n"
    return None
