"""`aiguard dataset prepare`: consent filter, protection, bad lines, manifest, ledger, memory."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import aiguard
from aiguard.cli import main
from aiguard.doors.dataset import manifest_path, policy_digest, prepare_dataset
from aiguard.errors import DestinationRevoked, PolicyDenied, UnknownDestination, VaultError
from aiguard.vault import ERASED, InMemoryVault, Scope, VaultKeys

POLICY = """
database = "state/aiguard.db"

[destinations.trainer]
base_url = "https://trainer.example.com/v1"
approved = true
purposes = ["model_training", "inference"]
max_raw_level = "internal"

[destinations.chat]
base_url = "https://chat.example.com/v1"
approved = true
purposes = ["inference"]

[actions]
sensitive = "tokenize"
regulated = "tokenize"

[actions.kinds]
us_ssn = "block"

[keys]
provider = "file"
file = "state/root.key"
"""

RAW = {
    "jane.doe@example.com",
    "+1 415 555 0132",
    "4111 1111 1111 1111",
    "4111111111111111",
    "bob.roe@example.com",
}

RECORDS: list[Any] = [
    # 1: consented, e-mail and phone, an "id" key (structural elsewhere, data here)
    {
        "subject": "cust-1",
        "text": "Mail jane.doe@example.com or +1 415 555 0132",
        "id": "jane.doe@example.com",
        "secret_notes": "drop me",
    },
    # 2: consented under customer_id (an integer), card as text and as a number
    {"customer_id": 42, "text": "Card 4111 1111 1111 1111", "n": 4111111111111111, "ok": 7},
    "not json {",  # 3
    {"subject": "cust-3", "text": "bob.roe@example.com"},  # 4: no consent
    ["an", "array"],  # 5
    "",  # 6: blank
    {"text": "no subject: jane.doe@example.com"},  # 7
    {"subject": "cust-1", "text": "SSN 536-22-1234", "meta": {"k": "v"}},  # 8: blocked kind
    {"subject": "cust-4", "text": "withdrawn bob.roe@example.com"},  # 9
    {"subject": "cust-5", "text": "other destination bob.roe@example.com"},  # 10
    {"subject": "cust-6", "text": "expired bob.roe@example.com"},  # 11
    {"subject": "cust-1", "nested": {"list": ["again jane.doe@example.com", 1, None, True]}},
]


def _write_input(path: Path, records: list[Any]) -> None:
    with open(path, "wb") as handle:
        for record in records:
            line = record if isinstance(record, str) else json.dumps(record)
            handle.write(line.encode() + b"\n")
        handle.write(b'{"subject": "cust-1", "bad": "\xff\xfe"}\n')  # 13: not UTF-8


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[aiguard.Guard, Path, Path]:
    policy = tmp_path / "aiguard.toml"
    policy.write_text(POLICY)
    (tmp_path / "state").mkdir()
    guard = aiguard.Guard.from_toml(policy)
    past = datetime.now(timezone.utc) - timedelta(days=1)
    guard.consent.grant("cust-1", "model_training", terms_version="t1")
    guard.consent.grant("42", "model_training")
    guard.consent.grant("cust-4", "model_training")
    guard.consent.withdraw("cust-4", "model_training")
    guard.consent.grant("cust-5", "model_training", destination="elsewhere")
    guard.consent.grant("cust-6", "model_training", expires_at=past)
    source = tmp_path / "in.jsonl"
    _write_input(source, RECORDS)
    return guard, source, tmp_path / "out.jsonl"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_prepare_filters_protects_and_writes_a_manifest(
    setup: tuple[aiguard.Guard, Path, Path],
) -> None:
    guard, source, out = setup
    report = prepare_dataset(
        guard, source, out, destination="trainer", drop_fields=["secret_notes"], dataset="ds-1"
    )
    records = _lines(out)
    assert len(records) == report.kept == 3
    text = out.read_text("utf-8")
    for value in RAW:
        assert value not in text
    assert "drop me" not in text and "secret_notes" not in text
    assert "cust-1" not in text and '"customer_id":42' not in text
    first, second, third = records
    assert first["subject"] == guard.pseudonym("subject", "cust-1")
    assert first["id"].startswith("[EMAIL_") and first["id"] in first["text"]
    assert second["customer_id"] == guard.pseudonym("subject", "42")
    assert second["n"].startswith("[CREDIT_CARD_") and second["ok"] == 7
    assert third["nested"]["list"][1:] == [1, None, True]
    # Tokens are the vault's: restorable by the guard, per subject.
    assert guard.vault.detokenize(Scope("default"), first["id"]) == "jane.doe@example.com"

    manifest = json.loads(manifest_path(out).read_text("utf-8"))
    assert manifest == dict(report.manifest)
    assert manifest["input"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["output"]["bytes"] == out.stat().st_size
    assert manifest["input"]["bytes"] == source.stat().st_size
    assert manifest["policy_digest"] == policy_digest(guard)
    assert manifest["counts"] == {
        "read": 12,
        "kept": 3,
        "dropped": {
            "blocked_kind": 1,
            "consent_other_destination": 1,
            "no_consent": 3,
            "no_subject": 1,
            "not_an_object": 1,
            "unparseable": 2,
        },
        "ledger_entries": 2,
    }
    assert manifest["input"]["blank_lines"] == 1
    assert manifest["findings"]["email"] >= 3 and manifest["findings"]["credit_card"] == 2
    assert manifest["dataset"] == "ds-1" and manifest["legal_basis"] == "consent"
    problems = {p["line"]: p["reason"] for p in manifest["problems"]}
    assert set(problems) == {3, 4, 5, 7, 8, 9, 10, 11, 13}
    assert problems[3].startswith("invalid JSON") and problems[13].startswith("not UTF-8")
    assert "blocks" in problems[8]
    manifest_text = manifest_path(out).read_text("utf-8")
    for value in RAW | {"536-22-1234", "cust-3"}:
        assert value not in manifest_text
    assert not list(out.parent.glob(".*partial"))


def test_ledger_and_erasure_after_prepare(setup: tuple[aiguard.Guard, Path, Path]) -> None:
    guard, source, out = setup
    prepare_dataset(guard, source, out, destination="trainer", dataset="ds-2", model="m-1")
    uses = guard.dsr.ledger.for_subject(guard.digest("subject", "default", "cust-1"))
    assert [(u.dataset, u.model, u.destination, u.records) for u in uses] == [
        ("ds-2", "m-1", "trainer", 2)
    ]
    assert guard.dsr.ledger.for_subject(guard.digest("subject", "default", "cust-3")) == []
    summary = guard.dsr.erase("cust-1")
    assert summary["training_uses"] == 1
    token = _lines(out)[0]["id"]
    assert guard.vault.detokenize(Scope("default"), token) == ERASED
    events = guard.sinks[0].records  # type: ignore[attr-defined]
    prepared = [e.document for e in events if e.document.get("gen_ai.operation.name")]
    assert prepared[-1]["type"] == "protect" and prepared[-1]["dataset"]["kept"] == 3
    assert prepared[-1]["output_digest"] == "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()


def test_subject_field_options(setup: tuple[aiguard.Guard, Path, Path]) -> None:
    guard, source, out = setup
    report = prepare_dataset(
        guard,
        source,
        out,
        destination="trainer",
        subject_fields="customer_id",
        subject_action="keep",
    )
    (record,) = _lines(out)
    assert record["customer_id"] == 42 and report.dropped["no_subject"] == 8
    prepare_dataset(guard, source, out, destination="trainer", subject_action="drop")
    assert all("subject" not in r and "customer_id" not in r for r in _lines(out))
    nested = out.parent / "nested.jsonl"
    nested.write_text(json.dumps({"user": {"id": "cust-1"}, "t": "x"}) + "\n")
    report = prepare_dataset(guard, nested, out, destination="trainer", subject_fields=["user.id"])
    assert report.kept == 1 and _lines(out)[0]["user"]["id"].startswith("[SUBJECT~")


@pytest.mark.parametrize(
    ("destination", "purpose", "error"),
    [
        ("nowhere", "model_training", UnknownDestination),
        ("chat", "model_training", PolicyDenied),
        ("trainer", "no_such_purpose", PolicyDenied),
    ],
)
def test_refused_runs_write_nothing(
    setup: tuple[aiguard.Guard, Path, Path], destination: str, purpose: str, error: type
) -> None:
    guard, source, out = setup
    with pytest.raises(error):
        prepare_dataset(guard, source, out, destination=destination, purpose=purpose)
    assert not out.exists() and not manifest_path(out).exists()
    refusals = [r.document for r in guard.sinks[0].records if r.document["type"] == "refusal"]  # type: ignore[attr-defined]
    assert refusals and refusals[-1]["gen_ai.operation.name"] == "dataset_prepare"


def test_revoked_destination_is_refused(setup: tuple[aiguard.Guard, Path, Path]) -> None:
    guard, source, out = setup
    guard.revoke("trainer", "incident 7")
    with pytest.raises(DestinationRevoked):
        prepare_dataset(guard, source, out, destination="trainer")
    assert not out.exists()


def test_vault_failure_leaves_no_output(
    setup: tuple[aiguard.Guard, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    guard, source, out = setup
    out.write_text("previous\n")

    def broken(*_args: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(guard.vault, "tokenize_many", broken)
    with pytest.raises(VaultError, match="no output") as caught:
        prepare_dataset(guard, source, out, destination="trainer")
    assert "jane" not in str(caught.value)
    assert out.read_text() == "previous\n"  # untouched; nothing partial left
    assert not list(out.parent.glob(".*partial")) and not manifest_path(out).exists()


class _PlainVault:
    """A vault with only the `Vault` protocol: no batching."""

    def __init__(self, inner: InMemoryVault) -> None:
        self.inner = inner

    def tokenize(self, scope: Scope, kind: str, value: str, subject: str | None = None) -> str:
        return self.inner.tokenize(scope, kind, value, subject)

    def detokenize(self, scope: Scope, token: str) -> str | None:
        return self.inner.detokenize(scope, token)


def test_batched_and_unbatched_vaults_give_the_same_output(
    setup: tuple[aiguard.Guard, Path, Path],
) -> None:
    guard, source, _out = setup
    keys = VaultKeys.derive(b"z" * 32)
    outputs = []
    for vault in (InMemoryVault(keys), _PlainVault(InMemoryVault(keys))):
        other = aiguard.Guard(guard.policy, vault=vault, consent=guard.consent, secret=b"e" * 32)
        target = source.parent / f"out-{type(vault).__name__}.jsonl"
        prepare_dataset(other, source, target, destination="trainer", batch_size=2)
        outputs.append(target.read_text("utf-8"))
    assert outputs[0] == outputs[1] and "[EMAIL_" in outputs[0]


def test_cli_prepare(
    setup: tuple[aiguard.Guard, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    guard, source, out = setup
    guard.close()
    policy = source.parent / "aiguard.toml"
    argv = [
        "dataset",
        "prepare",
        str(source),
        "--destination",
        "trainer",
        "--out",
        str(out),
        "--policy",
        str(policy),
        "--drop-field",
        "secret_notes",
        "--dataset",
        "cli-1",
        "--progress",
        "always",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["kept"] == 3 and summary["dropped"]["unparseable"] == 2
    assert "line 3: invalid JSON" in captured.err and "line 13: not UTF-8" in captured.err
    assert "100.0%" in captured.err  # the progress bar
    for value in RAW:
        assert value not in captured.err and value not in out.read_text()
    assert json.loads(manifest_path(out).read_text())["dataset"] == "cli-1"
    bad = [
        "dataset",
        "prepare",
        str(source),
        "--destination",
        "nowhere",
        "--out",
        str(source.parent / "x.jsonl"),
        "--policy",
        str(policy),
    ]
    assert main(bad) == 2
    assert "nowhere" in capsys.readouterr().err
    assert (
        main(
            [
                "dataset",
                "prepare",
                str(source.parent / "missing.jsonl"),
                "--destination",
                "trainer",
                "--out",
                str(out),
                "--policy",
                str(policy),
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_memory_stays_flat(tmp_path: Path) -> None:
    policy = tmp_path / "aiguard.toml"
    policy.write_text(POLICY)
    (tmp_path / "state").mkdir()
    guard = aiguard.Guard.from_toml(policy)
    for i in range(12):  # about half the records are dropped, so the list of
        guard.consent.grant(f"s{i}", "model_training")  # problems reaches its cap early
    pad = "p" * 1_500

    def generate(path: Path, megabytes: int) -> None:
        with open(path, "w") as handle:
            size = i = 0
            while size < megabytes * 1_000_000:
                line = json.dumps(
                    {"subject": f"s{i % 25}", "text": f"to u{i % 300}@example.com", "blob": pad}
                )
                handle.write(line + "\n")
                size += len(line) + 1
                i += 1

    peaks = {}
    for megabytes in (1, 5, 40):
        source = tmp_path / f"in-{megabytes}.jsonl"
        generate(source, megabytes)
        tracemalloc.start()
        report = prepare_dataset(
            guard, source, tmp_path / "out.jsonl", destination="trainer", drop_fields=["blob"]
        )
        peaks[megabytes] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        source.unlink()
        assert report.kept > 0 and report.dropped["no_consent"] > 0
    # The first run pays for warm-up (detectors, statements); the 40 MB run must not
    # need noticeably more than the 5 MB one.
    assert peaks[40] < 1.5 * peaks[5], peaks
    guard.close()


def test_cli_prepare_summarises_many_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,500 records without consent: a summary line and ten examples, not 1,000 lines."""
    policy = tmp_path / "aiguard.toml"
    policy.write_text(POLICY)
    (tmp_path / "state").mkdir()
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"subject": f"c{i}", "text": "hi"}) + "\n" for i in range(1500))
        + "not json\n"
    )
    argv = ["dataset", "prepare", str(source), "--destination", "trainer"]
    argv += ["--out", str(tmp_path / "out.jsonl"), "--policy", str(policy)]
    assert main(argv) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 12
    assert lines[0].endswith("1,501 record(s) dropped (no_consent 1,500, unparseable 1)")
    assert lines[1].endswith("line 1: the subject has no valid consent for the purpose")
    assert "1,491 more line(s): see" in lines[-1] and "manifest.json" in lines[-1]
    assert main([*argv, "--show-problems", "0"]) == 0
    assert len(capsys.readouterr().err.splitlines()) == 2
