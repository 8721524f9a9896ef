"""PostgreSQL vault, consent store and kill switch (needs AIGUARD_TEST_POSTGRES_DSN)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import uuid

import pytest

from aiguard.vault import ERASED, Scope
from aiguard.vault.keys import SecretKeyProvider

DSN = os.environ.get("AIGUARD_TEST_POSTGRES_DSN")
pytestmark = pytest.mark.skipif(
    not DSN, reason="set AIGUARD_TEST_POSTGRES_DSN to a PostgreSQL DSN to run these tests"
)
ROOT = b"r" * 32


@pytest.fixture(scope="module", autouse=True)
def _fresh_vault_tables() -> None:
    """One root key per database: start from empty vault tables written under ROOT."""
    import psycopg

    assert DSN is not None
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS aiguard_vault_entry, aiguard_vault_key, aiguard_vault_meta"
        )
        if conn.execute("SELECT to_regclass('aiguard_pg_schema')").fetchone() != (None,):
            conn.execute("DELETE FROM aiguard_pg_schema WHERE component = 'vault'")


def _vault() -> object:
    from aiguard.vault.postgres import PostgresVault

    assert DSN is not None
    return PostgresVault(DSN, SecretKeyProvider(ROOT))


def _race(args: tuple[str, list[str]]) -> dict[str, str]:
    tenant, values = args
    vault = _vault()
    out = {v: vault.tokenize(Scope(tenant), "email", v, "s1") for v in values}  # type: ignore[attr-defined]
    vault.close()  # type: ignore[attr-defined]
    return out


def test_four_processes_get_exactly_one_token_per_value() -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    values = [f"user{i}@example.com" for i in range(40)]
    _vault().close()  # type: ignore[attr-defined]  # migrate before the race
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map(_race, [(tenant, values[::step]) for step in (1, 1, -1, -1)])
    merged: dict[str, set[str]] = {}
    for result in results:
        for value, token in result.items():
            merged.setdefault(value, set()).add(token)
    assert all(len(tokens) == 1 for tokens in merged.values())
    vault = _vault()
    assert DSN is not None
    import psycopg

    with psycopg.connect(DSN) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM aiguard_vault_entry WHERE scope = %s", (Scope(tenant).key,)
        ).fetchone()  # type: ignore[misc]
    assert count == len(values)
    for value, tokens in merged.items():
        assert vault.detokenize(Scope(tenant), next(iter(tokens))) == value  # type: ignore[attr-defined]


def test_erase_export_rotate_async() -> None:
    vault = _vault()
    scope = Scope(f"t-{uuid.uuid4().hex[:8]}", "conv")
    subject = f"s-{uuid.uuid4().hex[:8]}"
    token = vault.tokenize(scope, "phone", "+1 555 0100", subject)  # type: ignore[attr-defined]
    other = vault.tokenize(scope, "phone", "+1 555 0100", subject + "x")  # type: ignore[attr-defined]
    assert token != other
    assert [e["value"] for e in vault.export_subject(subject)] == ["+1 555 0100"]  # type: ignore[attr-defined]
    report = vault.rotate()  # type: ignore[attr-defined]
    assert report.data_version >= 2
    assert asyncio.run(vault.adetokenize(scope, token)) == "+1 555 0100"  # type: ignore[attr-defined]
    assert vault.erase_subject(subject, marker=True) == 1  # type: ignore[attr-defined]
    assert vault.detokenize(scope, token) == ERASED  # type: ignore[attr-defined]
    assert vault.detokenize(scope, other) == "+1 555 0100"  # type: ignore[attr-defined]
    vault.close()  # type: ignore[attr-defined]


def test_consent_and_killswitch() -> None:
    from aiguard.consent.postgres import PostgresConsentStore
    from aiguard.policy.killswitch_pg import PostgresKillSwitch

    assert DSN is not None
    store = PostgresConsentStore(DSN)
    subject = f"s-{uuid.uuid4().hex[:8]}"
    granted = store.grant(subject, "model_training", terms_version="v2", form="x")
    assert store.current(subject, "model_training") == granted
    store.withdraw(subject, "model_training")
    assert store.current(subject, "model_training") is None
    assert [r.action for r in store.history(subject)] == ["grant", "withdraw"]
    switch = PostgresKillSwitch(DSN)
    destination = f"d-{uuid.uuid4().hex[:8]}"
    assert switch.revoked(destination) is None
    switch.revoke(destination, "incident 7")
    revocation = switch.revoked(destination)
    assert revocation is not None and revocation.reason == "incident 7"
    switch.reinstate(destination)
    assert switch.revoked(destination) is None
    store.close()
    switch.close()


def test_unreachable_database_fails_with_an_error() -> None:
    from aiguard.vault.postgres import PostgresPool, PostgresVault

    pool = PostgresPool("postgresql://postgres@127.0.0.1:1/none", timeout=0.5)
    with pytest.raises(Exception) as info:
        PostgresVault(pool, SecretKeyProvider(ROOT))
    assert "example.com" not in str(info.value)


def test_from_toml_wires_postgres_consent_killswitch_and_ledger(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64
    from pathlib import Path

    import aiguard
    from aiguard.compliance.dsr import PostgresTrainingLedger
    from aiguard.consent.postgres import PostgresConsentStore
    from aiguard.policy.killswitch_pg import PostgresKillSwitch
    from aiguard.vault.postgres import PostgresVault

    assert DSN is not None and isinstance(tmp_path, Path)
    monkeypatch.setenv("AIGUARD_ROOT_KEY", base64.b64encode(ROOT).decode())
    monkeypatch.setenv("AIGUARD_POSTGRES_DSN", DSN)
    destination = f"d{uuid.uuid4().hex[:8]}"
    policy = tmp_path / "aiguard.toml"
    policy.write_text(
        f'[destinations.{destination}]\nbase_url = "https://x.example"\napproved = true\n'
        'purposes = ["model_training"]\n[keys]\nprovider = "env"\nvault = "postgres"\n'
    )
    first, second = aiguard.Guard.from_toml(policy), aiguard.Guard.from_toml(policy)
    assert isinstance(first.vault, PostgresVault)
    assert isinstance(first.consent, PostgresConsentStore)
    assert isinstance(first.killswitch, PostgresKillSwitch)
    assert isinstance(first.dsr.ledger, PostgresTrainingLedger)
    subject = f"subj-{uuid.uuid4().hex}"
    first.consent.grant(subject, "model_training")
    assert second.consent.current(subject, "model_training") is not None
    first.revoke(destination, "test")
    assert second.killswitch.revoked(destination) is not None
    second.reinstate(destination)
    assert first.killswitch.revoked(destination) is None
    with first.context(subject=subject, purpose="model_training", use_for_training=True):
        first.protect("hello", destination=destination)
    # Without a shared secret each guard has its own digest key: look up by first's.
    uses = second.dsr.ledger.for_subject(first.digest("subject", "default", subject))
    assert [u.destination for u in uses] == [destination]
    first.close()
    second.close()
