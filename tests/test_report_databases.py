"""`aiguard report` and `dsr export` read database logs, or refuse with a typed error.

A report or an export that reads nothing must never look like a log that holds nothing.
PostgreSQL cases need AIGUARD_TEST_POSTGRES_DSN; the SQLite ones always run.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

import aiguard
from aiguard.cli import main
from aiguard.compliance.report import build_report
from aiguard.errors import ProvenanceError
from aiguard.policy import parse_policy
from aiguard.provenance import JsonlSink
from aiguard.provenance.logging_sink import LoggingSink
from aiguard.provenance.sqlite_sink import SqliteSink

DSN = os.environ.get("AIGUARD_TEST_POSTGRES_DSN")
POLICY = """
[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference"]
"""
JANE = "jane.roe@example.com"


def _calls(guard: aiguard.Guard, count: int = 5) -> None:
    for i in range(count):
        with guard.context(subject=f"cust-{i % 2}", tenant="acme", purpose="inference"):
            guard.protect(f"mail {JANE} about order {i}", destination="openai")
    with guard.context(subject="cust-0", purpose="inference"), pytest.raises(aiguard.PolicyDenied):
        guard.protect("hello", destination="nowhere")


def _numbers(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in {"log", "generated_at"}}


def test_report_reads_a_sqlite_log_like_its_jsonl_twin(tmp_path: Path) -> None:
    policy = parse_policy(POLICY)
    db = tmp_path / "log.db"
    guard = aiguard.Guard(policy, sinks=[JsonlSink(tmp_path / "log.jsonl"), SqliteSink(db)])
    _calls(guard)
    guard.close()
    from_file = build_report(tmp_path / "log.jsonl", policy).as_dict()
    from_db = build_report(f"sqlite:///{db}", policy).as_dict()
    assert from_db["records"] == from_file["records"] > 6
    assert _numbers(from_db) == _numbers(from_file)
    (tmp_path / "p.toml").write_text(POLICY)
    out = tmp_path / "r.json"
    code = main(
        ["report", "--log", f"sqlite:///{db}", "--policy", str(tmp_path / "p.toml"),
         "--format", "json", "--out", str(out)]
    )  # fmt: skip
    assert code == 0 and json.loads(out.read_text())["records"] == from_file["records"]


def test_report_refuses_a_database_without_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "log.db"
    SqliteSink(db).close()
    with pytest.raises(ProvenanceError, match="holds no provenance log"):
        build_report(f"sqlite:///{db}", parse_policy(POLICY))
    (tmp_path / "p.toml").write_text(POLICY)
    assert main(["report", "--log", f"sqlite:///{db}", "--policy", str(tmp_path / "p.toml")]) == 2
    assert "holds no provenance log" in capsys.readouterr().err


def test_dsr_export_reads_a_sqlite_sink(tmp_path: Path) -> None:
    guard = aiguard.Guard(parse_policy(POLICY), sinks=[SqliteSink(tmp_path / "log.db")])
    _calls(guard)
    events = guard.dsr.export("cust-1")["provenance_events"]
    assert len(events) == 2 and all(e["type"] == "protect" for e in events)
    guard.close()


def test_dsr_export_refuses_sinks_it_cannot_read_back() -> None:
    guard = aiguard.Guard(parse_policy(POLICY), sinks=[LoggingSink()])
    _calls(guard, 1)
    with pytest.raises(ProvenanceError, match="no provenance sink of this guard can be read back"):
        guard.dsr.export("cust-0")
    guard.close()


@pytest.mark.postgres
@pytest.mark.skipif(not DSN, reason="set AIGUARD_TEST_POSTGRES_DSN to run the PostgreSQL tests")
def test_report_and_dsr_export_read_a_postgres_log(tmp_path: Path) -> None:
    from aiguard.provenance.postgres import PostgresSink

    assert DSN is not None
    name = f"report-{uuid.uuid4().hex[:10]}"
    policy = parse_policy(POLICY)
    guard = aiguard.Guard(policy, sinks=[PostgresSink(DSN, log=name)], log_name=name)
    _calls(guard)
    events = guard.dsr.export("cust-1")["provenance_events"]
    assert len(events) == 2 and all(e["type"] == "protect" for e in events)
    guard.close()
    report = build_report(DSN, policy, log_name=name).as_dict()
    assert report["records"] == report["chain"]["records"] >= 7
    assert report["events_by_type"]["protect"] == 5 and report["events_by_type"]["refusal"] == 1
    assert report["chain"]["ok"] is True
    with pytest.raises(ProvenanceError, match="holds no provenance log named"):
        build_report(DSN, policy, log_name=name + "-missing")
    with pytest.raises(ProvenanceError, match="cannot read the log at") as caught:
        build_report("postgresql://nobody:secret-pw@127.0.0.1:1/none", policy)
    assert "secret-pw" not in caught.value.message and "nobody:***@" in caught.value.message


def _policy_with_database_sink(tmp_path: Path, sink: str, log: str) -> Path:
    path = tmp_path / "aiguard.toml"
    path.write_text(f'{POLICY}\n[provenance]\nlog = "{log}"\n\n[[provenance.sinks]]\n{sink}\n')
    return path


def _two_logs_then_export(policy_file: Path, other: aiguard.Guard, name: str) -> None:
    """A database already holding another log: the policy's log is written and read back."""
    _calls(other, 1)
    other.close()
    guard = aiguard.Guard.from_toml(policy_file)  # resumes its own log, not "the only one"
    assert guard.log.name == name
    _calls(guard)
    events = guard.dsr.export("cust-1")["provenance_events"]
    assert len(events) == 2 and all(e["type"] == "protect" for e in events)
    guard.close()
    again = aiguard.Guard.from_toml(policy_file)  # and continues it after a restart
    _calls(again, 1)
    again.close()


def test_a_policy_sqlite_sink_uses_the_policys_log_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "events.db"
    policy_file = _policy_with_database_sink(tmp_path, f'type = "sqlite"\npath = "{db}"', "mine")
    other = aiguard.Guard(
        parse_policy(POLICY), sinks=[SqliteSink(db, log="other")], log_name="other"
    )
    _two_logs_then_export(policy_file, other, "mine")
    args = ["report", "--log", f"sqlite:///{db}", "--policy", str(policy_file), "--format", "json"]
    assert main(args) == 2  # two logs and no name: refused, saying how to name one
    assert "--log-name" in capsys.readouterr().err
    assert main([*args, "--log-name", "mine"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["events_by_type"]["protect"] == 6 and document["chain"]["ok"] is True


@pytest.mark.postgres
@pytest.mark.skipif(not DSN, reason="set AIGUARD_TEST_POSTGRES_DSN to run the PostgreSQL tests")
def test_a_policy_postgres_sink_uses_the_policys_log_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aiguard.provenance.postgres import PostgresSink

    assert DSN is not None
    name, other_name = (f"policy-{uuid.uuid4().hex[:10]}" for _ in range(2))
    policy_file = _policy_with_database_sink(tmp_path, f'type = "postgres"\ndsn = "{DSN}"', name)
    # The export is another process: it matches subject digests only with the shared key.
    policy_file.write_text('database = "aiguard.db"\n' + policy_file.read_text())
    other = aiguard.Guard(
        parse_policy(POLICY), sinks=[PostgresSink(DSN, log=other_name)], log_name=other_name
    )
    _two_logs_then_export(policy_file, other, name)
    assert main(["dsr", "export", "cust-1", "--policy", str(policy_file)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert len(exported["provenance_events"]) == 2
    args = ["report", "--log", DSN, "--log-name", name, "--policy", str(policy_file)]
    assert main([*args, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["events_by_type"]["protect"] == 6


def test_dsr_export_refuses_a_policy_whose_key_is_per_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without `database` each process keys subject digests anew: "no events" would be false."""
    policy_file = tmp_path / "aiguard.toml"
    policy_file.write_text(POLICY + '\n[provenance]\njsonl = "log.jsonl"\n')
    guard = aiguard.Guard.from_toml(policy_file)
    _calls(guard)
    assert len(guard.dsr.export("cust-1")["provenance_events"]) == 2  # same process: found
    guard.close()
    assert main(["dsr", "export", "cust-1", "--policy", str(policy_file)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "sets no `database`" in captured.err
    policy_file.write_text('database = "aiguard.db"\n' + policy_file.read_text())
    for _ in range(2):  # two processes' worth of guards share the database's key
        guard = aiguard.Guard.from_toml(policy_file)
        _calls(guard, 2)
        guard.close()
    assert main(["dsr", "export", "cust-1", "--policy", str(policy_file)]) == 0
    assert len(json.loads(capsys.readouterr().out)["provenance_events"]) == 2


def test_a_keys_root_key_gives_every_process_the_same_digest_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[keys]` without `database`: the guard's digest and pseudonym keys come from the root
    key, so guards of different processes agree and `dsr export` finds their events."""
    policy_file = tmp_path / "aiguard.toml"
    policy_file.write_text(
        POLICY
        + '\n[actions.kinds]\nemail = "pseudonymize"\n'
        + '\n[keys]\nvault = "memory"\nfile = "root.key"\n'
        + '\n[provenance]\njsonl = "log.jsonl"\n'
    )
    pseudonyms = set()
    for _ in range(2):  # two processes' worth of guards, each opening the policy anew
        guard = aiguard.Guard.from_toml(policy_file)
        _calls(guard, 2)
        with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
            pseudonyms.add(guard.protect(JANE, destination="openai").payload)
        guard.close()
    assert len(pseudonyms) == 1 and JANE not in pseudonyms.pop()
    assert main(["dsr", "export", "cust-1", "--policy", str(policy_file)]) == 0
    assert len(json.loads(capsys.readouterr().out)["provenance_events"]) == 4
    # Another root key is another digest key: nothing of this log is theirs.
    (tmp_path / "root.key").unlink()
    assert main(["dsr", "export", "cust-1", "--policy", str(policy_file)]) == 0
    assert json.loads(capsys.readouterr().out)["provenance_events"] == []
