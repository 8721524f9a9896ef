"""``aiguard doctor``: every store and sink the policy names is opened and probed, each
reported ok or with its typed error; probes leave no trace in any store or log."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aiguard
from aiguard.cli import main
from aiguard.provenance.verify import verify_file
from aiguard.testing import FakeModel

PG_DSN = os.environ.get("AIGUARD_TEST_POSTGRES_DSN")

DESTINATION = """
[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference"]
"""

FULL = (
    'database = "data/aiguard.db"\n'
    + DESTINATION
    + """
[provenance]
jsonl = "logs/events.jsonl"
[[provenance.sinks]]
type = "sqlite"
path = "logs/events.db"
[[provenance.sinks]]
type = "http"
url = "http://127.0.0.1:9/events"
spool_dir = "spool"
required = false
"""
)


def _doctor(policy: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", "--policy", str(policy), "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def _by_component(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["component"]: check for check in report["checks"]}


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _probe_leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if "aiguard-doctor-probe" in p.name]


def test_all_ok_and_no_probe_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "aiguard.toml"
    policy.write_text(FULL)
    code, report = _doctor(policy, capsys)
    assert code == 0 and report["ok"] is True, report
    checks = _by_component(report)
    for name in ("vault", "consent store", "kill switch", "provenance jsonl"):
        assert checks[name]["ok"], checks[name]
    assert checks["provenance sink #1 (sqlite)"]["ok"]
    assert checks["provenance sink #2 (http)"]["ok"]
    database = tmp_path / "data" / "aiguard.db"
    # The probe rows were written and read back, then rolled back: nothing is kept.
    for table in ("aiguard_vault_entry", "aiguard_consent", "aiguard_revocation"):
        assert _rows(database, table) == 0, table
    assert _rows(tmp_path / "logs" / "events.db", "aiguard_provenance_event") == 0
    assert not (tmp_path / "logs" / "events.jsonl").exists()  # not created by a probe
    assert _probe_leftovers(tmp_path) == []


def test_a_live_log_keeps_its_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Doctor on a log already written: the log is untouched and still verifies, and the
    next start continues the same chain."""
    policy = tmp_path / "aiguard.toml"
    policy.write_text(FULL)
    log = tmp_path / "logs" / "events.jsonl"

    def one_call() -> None:
        from openai import OpenAI

        guard = aiguard.Guard.from_toml(policy)
        fake = FakeModel()
        client = OpenAI(
            http_client=guard.http_client(transport=fake.transport),
            base_url="https://api.openai.com/v1",
            api_key="sk-test-not-a-secret",
            max_retries=0,
        )
        with guard.context(subject="cust-1", purpose="inference", destination="openai"):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
            )
        client.close()
        guard.close()

    one_call()
    before = log.read_bytes()
    code, report = _doctor(policy, capsys)
    assert code == 0, report
    assert log.read_bytes() == before
    assert "last record seq" in _by_component(report)["provenance jsonl"]["detail"]
    one_call()
    assert verify_file(log).ok
    assert log.read_bytes().startswith(before)


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "readonly"
    target.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(target)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip("root without mount: no read-only directory")
        yield target
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
        return
    target.chmod(0o500)
    yield target
    target.chmod(0o700)


def test_faults_are_reported_typed_with_exit_1(
    tmp_path: Path, readonly_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "aiguard.toml"
    policy.write_text(
        f'database = "{readonly_dir}/aiguard.db"\n'
        + DESTINATION
        + '[provenance]\njsonl = "held.jsonl"\n'
    )
    held = open(tmp_path / "held.jsonl", "ab")  # noqa: SIM115 - another writer holds it
    fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        code, report = _doctor(policy, capsys)
    finally:
        held.close()
    assert code == 1 and report["ok"] is False
    checks = _by_component(report)
    for name in ("vault", "consent store", "kill switch"):
        check = checks[name]
        assert not check["ok"]
        assert str(readonly_dir) in check["detail"] and "policy key database" in check["detail"]
        assert check["error"] in {"vault_error", "key_error", "store_error"}
    jsonl = checks["provenance jsonl"]
    assert not jsonl["ok"] and jsonl["error"] == "provenance_error"
    assert "lock" in jsonl["detail"] and "[provenance] jsonl" in jsonl["detail"]


def test_unreachable_postgres_is_named_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg_pool")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsn = f"postgresql://app:hunter2@127.0.0.1:{port}/aiguard"
    policy = tmp_path / "aiguard.toml"
    policy.write_text(
        f'[keys]\nvault = "postgres"\ndsn = "{dsn}"\nconnect_timeout = 2\n'
        + DESTINATION
        + f'[[provenance.sinks]]\ntype = "postgres"\ndsn = "{dsn}"\nconnect_timeout = 2\n'
    )
    code, report = _doctor(policy, capsys)
    assert code == 1
    checks = _by_component(report)
    assert checks["root key"]["ok"]
    for name in ("vault", "consent store", "kill switch", "provenance sink #1 (postgres)"):
        check = checks[name]
        assert not check["ok"], check
        assert f"app:***@127.0.0.1:{port}" in check["detail"]
        assert "hunter2" not in json.dumps(check)
        assert "refused" in check["detail"].lower() or "connect" in check["detail"].lower()


@pytest.mark.skipif(PG_DSN is None, reason="set AIGUARD_TEST_POSTGRES_DSN")
def test_postgres_stores_ok_and_nothing_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import uuid

    import psycopg

    assert PG_DSN is not None
    # A schema of its own: the shared database may hold a vault under another root key.
    schema = f"doctor_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    dsn = PG_DSN + ("&" if "?" in PG_DSN else "?") + f"options=-csearch_path%3D{schema}"
    policy = tmp_path / "aiguard.toml"
    policy.write_text(
        f'[keys]\nvault = "postgres"\ndsn = "{dsn}"\n'
        + DESTINATION
        + f'[[provenance.sinks]]\ntype = "postgres"\ndsn = "{dsn}"\n'
    )
    try:
        code, report = _doctor(policy, capsys)
        assert code == 0, report
        _assert_no_probe_rows(dsn)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


def _assert_no_probe_rows(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        for table, column in (
            ("aiguard_vault_entry", "scope"),
            ("aiguard_consent", "subject"),
            ("aiguard_revocation", "destination"),
            ("aiguard_provenance_event", "log"),
        ):
            row = conn.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {column} LIKE 'aiguard-doctor-probe%'"
            ).fetchone()
            assert row is not None and row[0] == 0, table


def test_a_policy_that_cannot_be_loaded_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["doctor", "--policy", str(tmp_path / "missing.toml")])
    assert code == 2
    assert "cannot load the policy" in capsys.readouterr().err


def test_text_output_names_each_component(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "aiguard.toml"
    policy.write_text('database = "aiguard.db"\n' + DESTINATION)
    assert main(["doctor", "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    for name in ("vault", "consent store", "kill switch", "provenance"):
        assert name in out
    assert "all stores and sinks are ok" in out


def test_signing_key_and_checkpoint_file_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The signing key is loaded as start-up loads it (a damaged one is reported), and
    the checkpoint file's location is probed; nothing is left behind."""
    policy = tmp_path / "aiguard.toml"
    signed = DESTINATION + '[provenance]\nsigning_key = "keys/sign.key"\n'
    policy.write_text(signed + 'checkpoint_file = "notes/latest.checkpoint"\n')
    code, report = _doctor(policy, capsys)
    assert code == 0, report
    checks = _by_component(report)
    assert checks["checkpoint file"]["ok"] and checks["signing key"]["ok"]
    assert _probe_leftovers(tmp_path) == [] and list((tmp_path / "notes").iterdir()) == []
    # Start once, so the key exists; then damage it and put a file where notes/ was.
    aiguard.Guard.from_toml(policy).close()
    (tmp_path / "keys" / "sign.key").write_bytes(b"not a key at all")
    shutil.rmtree(tmp_path / "notes")
    (tmp_path / "notes").write_text("a file")
    code, report = _doctor(policy, capsys)
    assert code == 1
    checks = _by_component(report)
    key, note = checks["signing key"], checks["checkpoint file"]
    assert not key["ok"] and key["error"] == "provenance_error"
    assert "no usable Ed25519 private key" in key["detail"]
    assert "[provenance] signing_key" in key["detail"]
    assert not note["ok"] and note["error"] == "provenance_error"
    assert "not a directory" in note["detail"] and "[provenance] checkpoint_file" in note["detail"]
    with pytest.raises(aiguard.ProvenanceError, match="no usable Ed25519"):
        aiguard.Guard.from_toml(policy)
