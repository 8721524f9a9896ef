"""Leak scan: nothing the library writes during the test suite holds a raw test value.

Loaded by tests/conftest.py for every test. Raw values come from two places: every call
of ``aiguard.testing.assert_no_raw_values`` (wrapped at import time, before test modules
import it) and the ``leak_values`` fixture. What is scanned, per test, against every
value registered so far in the session:

* log records of any logger that reach the root logger (message and formatted
  exception), captured by a handler installed for the whole session;
* the message of every `aiguard.AIGuardError` constructed during the test (the text a
  caller, a log line or an error tracker would show);
* files the library writes under the test's ``tmp_path``: provenance logs (JSONL records,
  checkpoint notes), SQLite files (vault, consent, provenance; with WAL and journal),
  HTTP-sink spool segments and torn-tail files. Inputs the test wrote itself (policies,
  datasets) are not scanned.

A hit fails the test at teardown and names where the value was found (never the value).
``@pytest.mark.leakscan_off`` opts a test out (for tests that plant values on purpose).
``AIGUARD_LEAKSCAN=0`` turns the scan off.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiguard
import aiguard.testing
import aiguard.testing.assertions
from aiguard.errors import AIGuardError

__all__ = ["LeakScanner", "SCANNER", "leak_values"]

#: Shorter values (a 4-digit year, "Jane") would match by accident.
MIN_LENGTH = 6

#: Library output files, by name.
_OUTPUT_SUFFIXES = (".db", ".db-wal", ".db-journal", ".sqlite", ".sqlite-wal", ".torn", ".note")
_OUTPUT_MARKERS = ("spool", "checkpoint", "provenance", "segment")


class LeakScanner:
    """Collects raw values and what the library wrote; reports where a value turned up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: set[str] = set()
        self.texts: list[tuple[str, str]] = []  # (where, text)

    # -- what must not appear -----------------------------------------------------

    def register(self, values: Iterable[str]) -> None:
        with self._lock:
            for value in values:
                if isinstance(value, str) and len(value) >= MIN_LENGTH:
                    self.values.add(value)

    # -- what the library wrote ---------------------------------------------------

    def add_text(self, where: str, text: str) -> None:
        with self._lock:
            self.texts.append((where, text))

    def reset(self) -> None:
        with self._lock:
            self.texts.clear()

    def scan_texts(self) -> list[str]:
        with self._lock:
            texts = list(self.texts)
            values = sorted(self.values)
        return [
            f"{where} holds a raw value ({_shape(v)})"
            for where, text in texts
            for v in values
            if v in text
        ]

    def scan_files(self, root: Path) -> list[str]:
        with self._lock:
            values = sorted(self.values)
        if not values or not root.exists():
            return []
        needles = [(v, v.encode("utf-8")) for v in values]
        hits: list[str] = []
        for path in _library_files(root):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for value, needle in needles:
                if needle in data:
                    hits.append(f"file {path.name} holds a raw value ({_shape(value)})")
        return hits


def _shape(value: str) -> str:
    """Enough to find the value in the test, never the value itself."""
    return f"{len(value)} chars, starting {value[:2]!r}"


def _library_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if not path.is_file() or path.stat().st_size > 64 << 20:
            continue
        name = path.name.lower()
        output = name.endswith(_OUTPUT_SUFFIXES) or any(m in name for m in _OUTPUT_MARKERS)
        if output or (name.endswith(".jsonl") and _is_provenance(path)):
            yield path


def _is_provenance(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            first = handle.readline(1 << 16)
    except OSError:
        return False
    return b'"seq":' in first and b'"digest":' in first


class _Handler(logging.Handler):
    def __init__(self, scanner: LeakScanner) -> None:
        super().__init__(level=logging.NOTSET)
        self.scanner = scanner

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is not our concern here
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.scanner.add_text(f"log record {record.name}:{record.levelname}", text)


SCANNER = LeakScanner()
_ENABLED = os.environ.get("AIGUARD_LEAKSCAN", "1") != "0"


def _wrap_assert_no_raw_values() -> None:
    original = aiguard.testing.assertions.assert_no_raw_values
    if getattr(original, "_leakscan", False):
        return

    def assert_no_raw_values(fake: Any, values: Iterable[str]) -> None:
        values = list(values)
        SCANNER.register(values)
        original(fake, values)

    assert_no_raw_values.__doc__ = original.__doc__
    assert_no_raw_values._leakscan = True  # type: ignore[attr-defined]
    aiguard.testing.assertions.assert_no_raw_values = assert_no_raw_values
    aiguard.testing.assert_no_raw_values = assert_no_raw_values  # type: ignore[attr-defined]


def _wrap_errors() -> None:
    original_init = AIGuardError.__init__
    if getattr(original_init, "_leakscan", False):
        return

    def __init__(self: AIGuardError, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        SCANNER.add_text(f"{type(self).__name__} message", str(self))

    __init__._leakscan = True  # type: ignore[attr-defined]
    AIGuardError.__init__ = __init__  # type: ignore[method-assign]


if _ENABLED:
    _wrap_assert_no_raw_values()
    _wrap_errors()
    _HANDLER = _Handler(SCANNER)
    logging.getLogger().addHandler(_HANDLER)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "leakscan_off: this test plants raw values on purpose; skip the leak scan"
    )


@pytest.fixture
def leak_values() -> Callable[[Iterable[str]], None]:
    """Register raw test values the leak scan must never find in what aiguard writes."""
    return SCANNER.register


@pytest.fixture(autouse=True)
def _leakscan(request: pytest.FixtureRequest) -> Iterator[None]:
    SCANNER.reset()
    yield
    if not _ENABLED or request.node.get_closest_marker("leakscan_off") is not None:
        SCANNER.reset()
        return
    hits = SCANNER.scan_texts()
    tmp = getattr(request.node, "funcargs", {}).get("tmp_path")
    if isinstance(tmp, Path):
        hits += SCANNER.scan_files(tmp)
    SCANNER.reset()
    if hits:
        pytest.fail("leak scan: " + "; ".join(sorted(set(hits))), pytrace=False)
