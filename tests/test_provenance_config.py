"""`[provenance]` in the policy builds the log: sinks, signing, background writer."""

from __future__ import annotations

from pathlib import Path

import pytest

import aiguard
from aiguard.provenance import Verifier, VerifyOptions, verify_file
from aiguard.provenance.sqlite_sink import read_sqlite
from aiguard.provenance.verify import verify_records

POLICY = """
[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference"]

[provenance]
log = "configured"
jsonl = "logs/events.jsonl"
fsync = "always"
signing_key = "signing.key"
checkpoint_every = 2
checkpoint_file = "logs/latest.checkpoint"
background = true

[[provenance.sinks]]
type = "sqlite"
path = "logs/events.db"

[[provenance.sinks]]
type = "logging"
required = false
"""


def test_policy_builds_signed_background_log_with_several_sinks(tmp_path: Path) -> None:
    (tmp_path / "aiguard.toml").write_text(POLICY)
    guard = aiguard.Guard.from_toml(tmp_path / "aiguard.toml")
    assert guard.log._thread is not None  # background writer
    ctx = aiguard.CallContext(subject="s", purpose="inference", destination="openai")
    for i in range(5):
        guard.protect(f"mail user{i}@example.com", ctx)
    guard.close()
    key = tmp_path / "signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    signer = aiguard.provenance.Signer.from_file(key, name="configured")
    options = VerifyOptions(
        public_key=Verifier.from_vkey(signer.verifier.vkey),
        checkpoint=(tmp_path / "logs/latest.checkpoint").read_text(),
    )
    report = verify_file(tmp_path / "logs/events.jsonl", options)
    assert report.ok, report.summary()
    # Checkpoints come at batch boundaries once N records are due, and on close.
    assert report.checkpoints >= 1
    db_report = verify_records(read_sqlite(tmp_path / "logs/events.db"), options)
    assert db_report.ok and db_report.records == report.records


def test_sink_without_target_is_a_policy_error(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text('[provenance]\n[[provenance.sinks]]\ntype = "sqlite"\n')
    with pytest.raises(aiguard.PolicyError, match="needs path"):
        aiguard.Guard.from_toml(tmp_path / "p.toml")
