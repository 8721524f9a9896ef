"""Built-in sinks: in memory (tests) and a JSONL file (the embedded default)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ProvenanceError
from .chain import EventRecord

__all__ = ["InMemorySink", "JsonlSink"]


class InMemorySink:
    """Keeps every record in a list; thread-safe. Made for tests and demos."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[EventRecord] = []

    def emit(self, record: EventRecord) -> None:
        with self._lock:
            self._records.append(record)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def head(self) -> EventRecord | None:
        with self._lock:
            return self._records[-1] if self._records else None

    @property
    def records(self) -> list[EventRecord]:
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
        with self._lock:
            return len(self._records)


class JsonlSink:
    """Appends one canonical JSON line per record to a file.

    Opening an existing log continues its chain. ``fsync=True`` makes each record
    durable before the call returns, at the cost of a disk flush per call.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the sink's life

    def head(self) -> EventRecord | None:
        last = _last_line(self.path)
        if last is None:
            return None
        if not last.endswith(b"\n"):
            raise ProvenanceError(
                f"{self.path} ends with a torn (incomplete) record; run `aiguard verify "
                f"{self.path}` and move the file aside before writing to it again"
            )
        try:
            document = json.loads(last)
        except ValueError:
            raise ProvenanceError(
                f"{self.path}: the last record is not valid JSON; run `aiguard verify`"
            ) from None
        return EventRecord(document, last.rstrip(b"\n"))

    def emit(self, record: EventRecord) -> None:
        with self._lock:
            self._file.write(record.line + b"\n")
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())

    def flush(self) -> None:
        with self._lock:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                self._file.close()


def _last_line(path: Path) -> bytes | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(path, "rb") as handle:
        block = 4096
        data = b""
        position = size
        while position > 0:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
            # Look for the newline that ends the line *before* the last one.
            cut = data.rfind(b"\n", 0, len(data) - 1)
            if cut != -1:
                return data[cut + 1 :]
            block *= 2
        return data
