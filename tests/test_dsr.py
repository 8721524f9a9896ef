"""Data-subject rights: export, erasure (crypto-shredding), re-identification, ledger."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

import aiguard
from aiguard.compliance.dsr import DETOKENIZE_SCOPE, Principal, ReidentificationDenied
from aiguard.provenance.sinks import JsonlSink
from aiguard.provenance.verify import verify_file
from aiguard.vault import ERASED, InMemoryVault, Scope, SQLiteVault, VaultKeys
from aiguard.vault.keys import KeyProviderError, LocalKeyFileProvider, SecretKeyProvider

POLICY = """
database = "state/aiguard.db"

[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference", "model_training"]
max_raw_level = "internal"

[actions]
sensitive = "tokenize"
regulated = "tokenize"

[keys]
provider = "file"
file = "state/root.key"
"""

JANE = "jane.doe@example.com"
BOB = "bob.roe@example.com"


@pytest.fixture()
def guard(tmp_path: Path) -> aiguard.Guard:
    policy = tmp_path / "aiguard.toml"
    policy.write_text(POLICY)
    (tmp_path / "state").mkdir()
    return aiguard.Guard.from_toml(policy, sinks=[JsonlSink(tmp_path / "events.jsonl")])


def _protect(
    guard: aiguard.Guard, subject: str, text: str, conversation: str | None = None
) -> aiguard.Protected:
    with guard.context(
        subject=subject, tenant="acme", purpose="inference", conversation=conversation
    ):
        return guard.protect(text, destination="openai")


def _scan(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.name}:{n}" for n in needles if n.encode() in data]
    return hits


def test_erasure_shreds_only_that_subject_and_leaves_nothing_readable(
    guard: aiguard.Guard, tmp_path: Path
) -> None:
    """After erase, no store or log holds Jane's values; Bob's still restore; the log verifies."""
    guard.consent.grant("cust-jane", "model_training", tenant="acme", terms_version="v1")
    mine = _protect(guard, "cust-jane", f"mail {JANE} now", conversation="c1")
    same_value_bob = _protect(guard, "cust-bob", f"mail {JANE} and {BOB}", conversation="c1")
    (jane_token,) = mine.tokens
    assert jane_token not in same_value_bob.tokens  # the mapping belongs to its subject

    export = guard.dsr.export("cust-jane")
    assert [e["value"] for e in export["vault_entries"]] == [JANE]
    assert export["consent"][0]["purpose"] == "model_training"
    assert export["provenance_events"] and json.dumps(export)

    summary = guard.dsr.erase("cust-jane", request_ref="DSR-1")
    assert summary["vault_entries"] == 1 and summary["consents_withdrawn"] == 1
    assert guard.consent.current("cust-jane", "model_training", tenant="acme") is None

    later = aiguard.Protected(
        payload="", decision=mine.decision, findings=(), tokens=(), scope=mine.scope
    )
    assert guard.restore(f"write to {jane_token}", later) == f"write to {ERASED}"
    as_bob = dataclasses.replace(later, subject="cust-bob")  # tokens restore for their subject
    bob_text = guard.restore(" ".join(same_value_bob.tokens), as_bob)
    assert JANE in bob_text and BOB in bob_text  # Bob's entries are untouched

    guard.close()
    assert verify_file(tmp_path / "events.jsonl").ok
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "erasure" for e in events)
    # Bob's entry holds the same string, so scan for what only Jane's data contained.
    assert _scan(tmp_path, ["cust-jane@", "jane.doe@example.com\x00"]) == []


def test_erasure_scan_finds_no_raw_value(tmp_path: Path) -> None:
    """Scan every file aiguard wrote (database, WAL, key files, log) for the raw values."""
    policy = tmp_path / "aiguard.toml"
    policy.write_text(POLICY)
    (tmp_path / "state").mkdir()
    guard = aiguard.Guard.from_toml(policy, sinks=[JsonlSink(tmp_path / "events.jsonl")])
    secret_values = ["ann.only@example.org", "+44 20 7946 0958"]
    _protect(guard, "cust-ann", f"reach {secret_values[0]} or {secret_values[1]}")
    guard.dsr.erase("cust-ann")
    guard.close()
    assert _scan(tmp_path, [*secret_values, "ann.only"]) == []


def test_memory_vault_erasure_is_per_subject() -> None:
    vault = InMemoryVault(SecretKeyProvider(os.urandom(32)))
    scope = Scope("acme")
    a = vault.tokenize(scope, "email", JANE, "s1")
    b = vault.tokenize(scope, "email", JANE, "s2")
    assert a != b
    assert vault.erase_subject("s1", marker=True) == 1
    assert vault.detokenize(scope, a) == ERASED
    assert vault.detokenize(scope, b) == JANE
    assert vault.export_subject("s1") == []


def test_detokenize_needs_scope_and_reason(guard: aiguard.Guard, tmp_path: Path) -> None:
    protected = _protect(guard, "cust-jane", f"mail {JANE}")
    text = " ".join(protected.tokens)
    with pytest.raises(ReidentificationDenied):
        guard.detokenize(text, principal=Principal("ops"), reason="support", tenant="acme")
    auditor = Principal("dpo", frozenset({DETOKENIZE_SCOPE}))
    with pytest.raises(ReidentificationDenied):
        guard.detokenize(text, principal=auditor, reason=" ", tenant="acme")
    assert guard.detokenize(text, principal=auditor, reason="DSR-7", tenant="acme") == JANE
    assert guard.detokenize(text, principal=auditor, reason="x", tenant="other") == text
    guard.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    reids = [e for e in events if e["type"] == "reidentify"]
    assert [e["decision"] for e in reids] == ["deny", "deny", "allow", "allow"]
    assert all(JANE not in json.dumps(e) for e in events)


def test_training_calls_feed_the_ledger(guard: aiguard.Guard) -> None:
    guard.consent.grant("cust-jane", "model_training", tenant="acme")
    with guard.context(
        subject="cust-jane", tenant="acme", purpose="model_training", use_for_training=True
    ):
        guard.protect("hello", destination="openai")
    uses = guard.dsr.export("cust-jane")["training_uses"]
    assert len(uses) == 1 and uses[0]["destination"] == "openai"
    guard.close()


def test_rotation_keeps_old_tokens(tmp_path: Path) -> None:
    root = LocalKeyFileProvider(tmp_path / "root.key")
    vault = SQLiteVault(tmp_path / "v.db", root)
    scope = Scope("acme", "c1")
    old = vault.tokenize(scope, "email", JANE, "s1")
    new_root = LocalKeyFileProvider(tmp_path / "root2.key")
    report = vault.rotate(new_root)
    assert report.data_version == 2 and report.rewrapped > 0
    assert vault.detokenize(scope, old) == JANE
    assert vault.tokenize(scope, "email", JANE, "s1") == old  # determinism survives rotation
    fresh = vault.tokenize(scope, "email", BOB, "s1")
    vault.close()
    reopened = SQLiteVault(tmp_path / "v.db", new_root)
    assert reopened.detokenize(scope, old) == JANE and reopened.detokenize(scope, fresh) == BOB
    assert reopened.key_version == 2
    reopened.close()
    with pytest.raises(KeyProviderError):
        SQLiteVault(tmp_path / "v.db", root)  # the old root no longer unwraps anything


def test_bad_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "root.key"
    LocalKeyFileProvider(key)
    key.chmod(0o644)
    with pytest.raises(KeyProviderError, match="chmod 600"):
        LocalKeyFileProvider(key)
    key.chmod(0o600)
    key.write_bytes(b"short")
    with pytest.raises(KeyProviderError, match="bytes"):
        LocalKeyFileProvider(key)
    monkeypatch.delenv("AIGUARD_ROOT_KEY", raising=False)
    from aiguard.vault.keys import EnvKeyProvider

    with pytest.raises(KeyProviderError, match="AIGUARD_ROOT_KEY"):
        EnvKeyProvider()
    monkeypatch.setenv("AIGUARD_ROOT_KEY", "not base64 !!")
    with pytest.raises(KeyProviderError) as info:
        EnvKeyProvider()
    assert "not base64" not in str(info.value)


def test_tampered_wrapped_key_and_legacy_keys(tmp_path: Path) -> None:
    import sqlite3

    vault = SQLiteVault(tmp_path / "v.db", VaultKeys.derive(b"s" * 32))
    token = vault.tokenize(Scope("acme"), "email", JANE, "s1")
    vault.close()
    conn = sqlite3.connect(tmp_path / "v.db")
    with conn:
        conn.execute(
            "UPDATE aiguard_vault_key SET wrapped = CAST(x'01' || randomblob(60) AS BLOB) "
            "WHERE purpose = 'dek'"
        )
    conn.close()
    reopened = SQLiteVault(tmp_path / "v.db", VaultKeys.derive(b"s" * 32))
    with pytest.raises(aiguard.VaultError) as info:
        reopened.detokenize(Scope("acme"), token)
    assert JANE not in str(info.value)


def test_vault_entries_expire_with_the_longest_destination_retention(tmp_path: Path) -> None:
    """Retention comes from the policy's destinations unless the vault sets its own."""
    from datetime import timedelta

    import aiguard
    from aiguard.policy import parse_policy

    policy = parse_policy(
        '[destinations.a]\nbase_url = "https://a.test/v1"\napproved = true\n'
        'purposes = ["inference"]\nretention_days = 30\n'
        '[destinations.b]\nbase_url = "https://b.test/v1"\napproved = true\n'
        'purposes = ["inference"]\nretention_days = 90\n'
    )
    guard = aiguard.Guard(policy)
    assert guard.vault.retention == timedelta(days=90)  # type: ignore[attr-defined]
