"""The leak scan (tests/_leakscan.py) can fail: planted leaks are caught."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import aiguard
from _leakscan import SCANNER, LeakScanner

PLANTED = "planted.leak@example.org"


@pytest.mark.leakscan_off
def test_scanner_catches_a_value_in_a_log_record() -> None:
    SCANNER.register([PLANTED])
    logging.getLogger("aiguard.selftest").error("oops %s", PLANTED)
    hits = SCANNER.scan_texts()
    assert any("aiguard.selftest" in h for h in hits)
    assert all(PLANTED not in h for h in hits)  # the report never repeats the value


@pytest.mark.leakscan_off
def test_scanner_catches_a_value_in_an_error_message() -> None:
    SCANNER.register([PLANTED])
    aiguard.VaultError(f"could not store {PLANTED}")
    assert any("VaultError message" in h for h in SCANNER.scan_texts())


@pytest.mark.leakscan_off
def test_scanner_catches_a_value_in_a_provenance_file(tmp_path: Path) -> None:
    scanner = LeakScanner()
    scanner.register([PLANTED])
    (tmp_path / "provenance.jsonl").write_text(f'{{"seq":0,"x":"{PLANTED}","digest":"0"}}\n')
    (tmp_path / "input.jsonl").write_text(f'{{"text":"{PLANTED}"}}\n')  # a test's own input
    hits = scanner.scan_files(tmp_path)
    assert hits == ["file provenance.jsonl holds a raw value (24 chars, starting 'pl')"]


def test_scanner_ignores_short_values() -> None:
    scanner = LeakScanner()
    scanner.register(["Jane", "2024"])
    assert scanner.values == set()
