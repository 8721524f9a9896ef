"""A sink that delivers provenance records to an HTTP collector (a SIEM), through a spool.

``emit`` appends the records to a local spool and fsyncs it before returning, so an
accepted record survives a crash or a long collector outage. A background thread reads
the spool and POSTs the records in batches as newline-delimited JSON
(``application/x-ndjson``, each line the record's exact canonical bytes, so the
collector can verify the chain). A failed POST is retried a bounded number of times
with exponential backoff (tenacity); after that the sink reports itself unhealthy,
pauses and tries the same batch again: records are never dropped. Only a 2xx answer
advances the durable "delivered" offset; after a restart, everything past it is sent.

Delivery is at least once: if the collector stored a batch but its answer was lost,
the batch is sent again. Each batch carries an ``Idempotency-Key`` header (the SHA-256
of its body) and every line its ``log``, ``seq`` and ``digest``, so the collector can
drop repeats.

Spool layout in ``spool_dir``: segment files ``000000000001.ndjson``, ... (a new one
once the current one exceeds ``segment_bytes``; fully delivered ones are deleted),
``delivered.json`` (the segment and offset delivered so far, replaced atomically) and
``spool.lock`` (one sink per directory at a time; POSIX only).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import tenacity

from ..errors import ProvenanceError
from ..storage._faults import store_fault, translating
from .chain import EventRecord

__all__ = ["HttpSink"]

_log = logging.getLogger("aiguard.provenance")
_CURSOR = "delivered.json"
_SUFFIX = ".ndjson"


class _Rejected(Exception):
    """The collector answered, but not with a 2xx status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the collector answered HTTP {status}")
        self.status = status


class _StopWhenSet(tenacity.stop.stop_base):
    """Ends the retries of a batch at once when the sink is closing."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.event.is_set()


class HttpSink:
    """Spools records durably and delivers them to ``url`` from a background thread.

    ``batch_size`` records per POST; ``timeout`` seconds per request. A batch is tried
    ``max_attempts`` times, waiting ``backoff`` seconds doubled each time up to
    ``max_backoff``; then the sink is unhealthy and retries every ``max_backoff``
    seconds until the collector accepts it. ``transport`` replaces the network (e.g.
    ``httpx.MockTransport`` in tests). Best effort by default: the spool already keeps
    the records, so a down collector does not need to fail calls.
    """

    def __init__(
        self,
        url: str,
        *,
        spool_dir: str | os.PathLike[str],
        headers: Mapping[str, str] | None = None,
        batch_size: int = 100,
        timeout: float = 5.0,
        required: bool = False,
        transport: httpx.BaseTransport | None = None,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        segment_bytes: int = 16 * 1024 * 1024,
        key: str = "[[provenance.sinks]] spool_dir",
    ) -> None:
        if batch_size < 1 or max_attempts < 1:
            raise ValueError("batch_size and max_attempts must be at least 1")
        self.url = url
        self.required = required
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.segment_bytes = segment_bytes
        self.spool_dir = Path(spool_dir)
        self.key = key
        self._pid = os.getpid()
        with self._faults("open the spool", (OSError, ValueError, KeyError)):
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = _lock_directory(self.spool_dir, self.key)
            try:
                self._recover()
            except BaseException:
                self._lock_file.close()
                raise
        self._client = httpx.Client(
            transport=transport, timeout=timeout, headers=dict(headers or {})
        )
        self._healthy = True
        self._failures = 0
        #: The latest delivery attempt failed (set before each backoff, cleared when a
        #: batch goes through): `close` stops waiting then instead of sitting out the
        #: retries against a collector that does not answer.
        self._attempt_failed = False
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._closed = False
        self._reader: tuple[int, IO[bytes]] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"aiguard-http-sink:{url}", daemon=True
        )
        self._thread.start()

    def _faults(self, operation: str, catch: tuple[type[BaseException], ...]) -> Any:
        return translating(
            ProvenanceError,
            component="the HTTP provenance sink's spool",
            target=os.fspath(self.spool_dir),
            operation=operation,
            key=self.key,
            catch=catch,
        )

    # -- spool ---------------------------------------------------------------------

    def _segment(self, number: int) -> Path:
        return self.spool_dir / f"{number:012d}{_SUFFIX}"

    def _recover(self) -> None:
        """Bring the spool to a consistent state after a clean stop or a crash."""
        segments = sorted(
            int(path.name[: -len(_SUFFIX)])
            for path in self.spool_dir.glob(f"*{_SUFFIX}")
            if path.name[: -len(_SUFFIX)].isdigit()
        )
        cursor_path = self.spool_dir / _CURSOR
        if cursor_path.exists():
            state = json.loads(cursor_path.read_bytes())
            cursor = (int(state["segment"]), int(state["offset"]))
        else:
            cursor = (segments[0] if segments else 1, 0)
        # Segments before the cursor were delivered; a crash may have left them behind.
        for number in segments:
            if number < cursor[0]:
                self._segment(number).unlink()
        segments = [number for number in segments if number >= cursor[0]]
        last = segments[-1] if segments else cursor[0]
        path = self._segment(last)
        with open(path, "ab") as handle:
            size = handle.tell()
        size = _cut_torn_tail(path, size)
        if last == cursor[0] and cursor[1] > size:
            raise ProvenanceError(
                f"{cursor_path} says {cursor[1]} bytes of {path} were delivered, but the "
                "file is shorter; the spool was changed outside aiguard"
            )
        self._write_segment = last
        # Unbuffered: after a failed write nothing is left in a buffer to be written
        # later, behind the cut (see emit_batch).
        self._writer: IO[bytes] = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open
        self._write_size = size
        _fsync_directory(self.spool_dir)
        self._cursor = cursor
        self._end = (last, size)

    def emit(self, record: EventRecord) -> None:
        self.emit_batch((record,))

    def emit_batch(self, records: Sequence[EventRecord]) -> None:
        """Append the records to the spool and fsync it; delivery happens later."""
        if not records:
            return
        if self._pid != os.getpid():
            raise ProvenanceError(
                "an HttpSink cannot be used after fork(); create one per process, "
                "each with its own spool_dir"
            )
        data = b"".join(record.line + b"\n" for record in records)
        with self._write_lock:
            if self._closed:
                raise ProvenanceError("the HTTP provenance sink was closed")
            try:
                if self._write_size >= self.segment_bytes:
                    self._rotate()
                view = memoryview(data)
                while view:
                    written = self._writer.write(view)
                    if not written:
                        raise OSError(errno.EIO, "the spool accepted no bytes")
                    view = view[written:]
                os.fsync(self._writer.fileno())
            except OSError as exc:
                # Cut whatever part of the batch reached the file, so the spool never
                # holds a partial line that the next batch would be appended to.
                try:
                    os.ftruncate(self._writer.fileno(), self._write_size)
                    self._writer.seek(0, os.SEEK_END)
                except OSError:
                    pass
                raise store_fault(
                    ProvenanceError,
                    exc,
                    component="the HTTP provenance sink's spool",
                    target=os.fspath(self.spool_dir),
                    operation="spool records",
                    key=self.key,
                ) from exc
            self._write_size += len(data)
            end = (self._write_segment, self._write_size)
        with self._cond:
            self._end = max(self._end, end)
            self._cond.notify_all()

    def _rotate(self) -> None:
        # The next segment opens before the current one closes: when it cannot be opened
        # (a full disk, a read-only spool), the sink keeps writing where it was.
        writer = open(self._segment(self._write_segment + 1), "ab", buffering=0)  # noqa: SIM115
        self._writer.close()
        self._writer = writer
        self._write_segment += 1
        self._write_size = 0
        _fsync_directory(self.spool_dir)

    def _read_batch(
        self, cursor: tuple[int, int], end: tuple[int, int]
    ) -> tuple[list[bytes], tuple[int, int]]:
        """Up to ``batch_size`` spooled lines from ``cursor``, never past ``end``.

        Everything before ``end`` was fsynced and ends in a newline. At the end of a
        finished segment the result is empty and the cursor moves to the next one.
        """
        segment, offset = cursor
        reader = self._reader
        if reader is None or reader[0] != segment:
            if reader is not None:
                reader[1].close()
            reader = (segment, open(self._segment(segment), "rb"))  # noqa: SIM115
            self._reader = reader
        handle = reader[1]
        limit = end[1] if segment == end[0] else os.fstat(handle.fileno()).st_size
        handle.seek(offset)
        lines: list[bytes] = []
        position = offset
        while len(lines) < self.batch_size and position < limit:
            line = handle.readline()
            if not line.endswith(b"\n"):
                raise ProvenanceError(f"{self._segment(segment)}: incomplete line in the spool")
            lines.append(line)
            position += len(line)
        if not lines and segment < end[0]:
            return [], (segment + 1, 0)
        return lines, (segment, position)

    def _save_cursor(self, cursor: tuple[int, int]) -> None:
        path = self.spool_dir / _CURSOR
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            handle.write(json.dumps({"segment": cursor[0], "offset": cursor[1]}).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_directory(self.spool_dir)

    # -- delivery ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop.is_set() and self._cursor >= self._end:
                    self._cond.wait()
                if self._stop.is_set():
                    return
                cursor, end = self._cursor, self._end
            try:
                self._step(cursor, end)
            except Exception:
                # A bug or an unreadable spool must not kill delivery for good.
                _log.exception("HTTP provenance sink: delivery failed unexpectedly")
                self._mark_unhealthy()
                self._stop.wait(self.max_backoff)

    def _step(self, cursor: tuple[int, int], end: tuple[int, int]) -> None:
        lines, after = self._read_batch(cursor, end)
        if lines and not self._deliver(b"".join(lines), len(lines)):
            self._mark_unhealthy()
            # Retry the same batch later; records stay in the spool meanwhile.
            self._stop.wait(self.max_backoff)
            return
        self._save_cursor(after)
        if after[0] > cursor[0]:
            if self._reader is not None:
                self._reader[1].close()
                self._reader = None
            self._segment(cursor[0]).unlink(missing_ok=True)
        with self._cond:
            self._cursor = after
            if lines:
                self._healthy = True
                self._failures = 0
                self._attempt_failed = False
            self._cond.notify_all()

    def _deliver(self, body: bytes, count: int) -> bool:
        headers = {
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": hashlib.sha256(body).hexdigest(),
            "X-Aiguard-Records": str(count),
        }
        retrying = tenacity.Retrying(
            stop=tenacity.stop_any(
                tenacity.stop_after_attempt(self.max_attempts), _StopWhenSet(self._stop)
            ),
            wait=tenacity.wait_exponential(multiplier=self.backoff, max=self.max_backoff),
            retry=tenacity.retry_if_exception_type((httpx.HTTPError, _Rejected)),
            sleep=self._sleep,
            before_sleep=self._failed_attempt,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = self._client.post(self.url, content=body, headers=headers)
                    if not 200 <= response.status_code < 300:
                        raise _Rejected(response.status_code)
        except (httpx.HTTPError, _Rejected) as exc:
            _log.warning(
                "HTTP provenance sink: %d records not delivered to %s (%s); kept in the spool",
                count,
                self.url,
                exc,
            )
            return False
        return True

    def _failed_attempt(self, _state: tenacity.RetryCallState) -> None:
        with self._cond:
            self._attempt_failed = True
            self._cond.notify_all()

    def _sleep(self, seconds: float) -> None:
        # Interruptible, so close() does not wait out a long backoff.
        self._stop.wait(seconds)

    def _mark_unhealthy(self) -> None:
        with self._cond:
            self._healthy = False
            self._attempt_failed = True
            self._failures += 1
            self._cond.notify_all()

    # -- public ------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False from a delivery round that exhausted its retries until one succeeds."""
        with self._cond:
            return self._healthy

    @property
    def pending(self) -> bool:
        """Whether spooled records still wait for delivery."""
        with self._cond:
            return self._cursor < self._end

    def flush(self, timeout: float | None = None, *, while_failing: bool = True) -> None:
        """With a ``timeout``: wait until everything spooled so far is delivered.

        Waits at most ``timeout`` seconds, then raises `ProvenanceError`; undelivered
        records stay in the spool either way. ``while_failing=False`` stops waiting as
        soon as a delivery attempt fails (what `close` does). Without a timeout (how
        `ProvenanceLog` flushes its sinks, e.g. before signing a checkpoint) it returns
        at once: every accepted record is already fsynced in the spool, and a down
        collector must not stall the log's writer.
        """
        if timeout is None:
            return
        limit = timeout
        with self._cond:
            target = self._end
            done = self._cond.wait_for(
                lambda: (
                    self._cursor >= target
                    or not self._thread.is_alive()
                    or (not while_failing and self._attempt_failed)
                ),
                limit,
            )
            delivered = self._cursor >= target
        if not (done and delivered):
            raise ProvenanceError(
                f"provenance records not yet delivered to {self.url} after {limit:g} s; "
                f"they stay in {self.spool_dir} and are sent when the collector answers"
            )

    def close(self, timeout: float = 5.0) -> None:
        """Stop the delivery thread; records not delivered stay in the spool.

        While the collector is healthy, waits up to ``timeout`` seconds for the backlog
        first; an unhealthy collector is not waited for.
        """
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
        if self.healthy and self._pid == os.getpid():
            # Not delivered in time: kept in the spool for the next start.
            with contextlib.suppress(ProvenanceError):
                self.flush(timeout, while_failing=False)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._client.close()
        with self._write_lock:
            self._writer.close()
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None
        self._lock_file.close()

    def __repr__(self) -> str:
        # A collector URL can carry credentials (user:password@, ?token=): show the origin.
        parts = urlsplit(str(self.url))
        origin = f"{parts.scheme}://{parts.hostname or ''}" + (
            f":{parts.port}" if parts.port else ""
        )
        return f"HttpSink({origin!r}, spool_dir={os.fspath(self.spool_dir)!r})"


def _cut_torn_tail(path: Path, size: int) -> int:
    """Truncate an incomplete last line (a crash mid-write); it was never acknowledged."""
    if size == 0:
        return 0
    with open(path, "r+b") as handle:
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return size
        block = 65536
        position = size
        keep = 0
        while position > 0:
            start = max(0, position - block)
            handle.seek(start)
            chunk = handle.read(position - start)
            cut = chunk.rfind(b"\n")
            if cut != -1:
                keep = start + cut + 1
                break
            position = start
        _log.warning(
            "HTTP provenance spool %s: dropping %d bytes of an incomplete last record "
            "(written during a crash, never acknowledged)",
            path,
            size - keep,
        )
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
        return keep


def _fsync_directory(directory: Path) -> None:
    # A new or renamed file is durable only once its directory entry is.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_directory(directory: Path, key: str) -> IO[Any]:
    handle = open(directory / "spool.lock", "a+b")  # noqa: SIM115 - held for the sink's life
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise ProvenanceError(
            f"{directory} is locked: it is in use by another HttpSink (maybe in another "
            f"process); give each sink its own spool_dir (policy key {key})"
        ) from exc
    return handle
