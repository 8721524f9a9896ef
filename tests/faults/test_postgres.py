"""Fault matrix, PostgreSQL-backed vault, consent store and provenance sink, against a
private throwaway server that really stops and starts (never the shared one).

Rows: restarting (pg_ctl stop → typed error, nothing sent → pg_ctl start → recovered),
connection cut (pg_terminate_backend → recovered without the caller noticing), slow
past its timeout (a lock held by another session, ``statement_timeout`` in the DSN →
typed error), and the sink's acknowledged events all stored after the restart.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from faultkit import MESSAGE, RAW, DoorCall, ThrowawayPostgres, call_events, fault_policy

import aiguard
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid, assert_no_raw_values


def _vault(server: ThrowawayPostgres, dsn: str | None = None) -> Any:
    from aiguard.vault import VaultKeys
    from aiguard.vault.postgres import PostgresPool, PostgresVault

    pool = PostgresPool(dsn or server.dsn, timeout=1.0, max_size=4)
    return PostgresVault(pool, VaultKeys.derive(b"k" * 32))


def test_pg_vault_restarting(door: str, pg_schema: ThrowawayPostgres, leak_values: Any) -> None:
    leak_values(RAW.values())
    vault = _vault(pg_schema)
    sink = InMemorySink()
    guard = aiguard.Guard(fault_policy(), vault=vault, sinks=[sink])
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport)
    assert call() == "Echo: " + MESSAGE
    first = fake.requests[-1].text
    pg_schema.stop()
    with pytest.raises(aiguard.VaultError, match=r"nothing was sent|not sent") as caught:
        call("new value: other.person@example.org")
    assert "other.person" not in str(caught.value)
    assert len(fake.requests) == 1
    assert call_events(sink)[-1]["error"] == "vault_error"
    pg_schema.start()
    assert call() == "Echo: " + MESSAGE
    assert fake.requests[-1].text == first  # same tokens after the restart
    assert_no_raw_values(fake, [*RAW.values(), "other.person@example.org"])
    assert_chain_valid(sink)
    vault.pool.close()


def test_pg_connections_cut_are_replaced(door: str, pg_schema: ThrowawayPostgres) -> None:
    from aiguard.consent.postgres import PostgresConsentStore
    from aiguard.provenance.postgres import PostgresSink, read_postgres
    from aiguard.provenance.verify import verify_records

    vault = _vault(pg_schema)
    consent = PostgresConsentStore(vault.pool)
    consent.grant("cust-7", "third_party_sharing", terms_version="t1")
    pg_sink = PostgresSink(pg_schema.dsn, log="faults", connect_timeout=1)
    guard = aiguard.Guard(
        fault_policy(), vault=vault, consent=consent, sinks=[pg_sink], log_name="faults"
    )
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport, purpose="third_party_sharing")
    for _ in range(3):
        pg_schema.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'aiguard%'"
        )
        assert call() == "Echo: " + MESSAGE
    records = list(read_postgres(pg_schema.dsn, "faults"))
    assert verify_records(records).ok
    assert [r.document["type"] for r in records].count("call") == 3
    assert_no_raw_values(fake, RAW.values())
    guard.close()


def test_pg_consent_store_restarting(door: str, pg_schema: ThrowawayPostgres) -> None:
    from aiguard.consent.postgres import PostgresConsentStore
    from aiguard.vault.postgres import PostgresPool

    consent = PostgresConsentStore(PostgresPool(pg_schema.dsn, timeout=1.0))
    consent.grant("cust-7", "third_party_sharing", terms_version="t1")
    sink = InMemorySink()
    guard = aiguard.Guard(fault_policy(), consent=consent, sinks=[sink])
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport, purpose="third_party_sharing")
    pg_schema.stop()
    with pytest.raises(aiguard.ConsentRequired, match="could not be read"):
        call()
    assert fake.requests == []
    pg_schema.start()
    assert call() == "Echo: " + MESSAGE
    assert_chain_valid(sink)


def test_pg_sink_restarting_loses_no_acknowledged_event(
    door: str, pg_schema: ThrowawayPostgres, leak_values: Any
) -> None:
    from aiguard.provenance.postgres import PostgresSink, read_postgres
    from aiguard.provenance.verify import verify_records

    leak_values(RAW.values())
    pg_sink = PostgresSink(pg_schema.dsn, log="faults-sink", connect_timeout=1)
    guard = aiguard.Guard(fault_policy(), sinks=[pg_sink], log_name="faults-sink")
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport)
    call()
    pg_schema.stop()
    with pytest.raises(aiguard.ProvenanceError):
        call()  # went out tokenized; its event is held in the backlog
    with pytest.raises(aiguard.ProvenanceError, match="refused until it recovers"):
        call()
    assert len(fake.requests) == 2
    pg_schema.start()
    call()
    records = list(read_postgres(pg_schema.dsn, "faults-sink"))
    report = verify_records(records)
    assert report.ok, report
    types = [r.document["type"] for r in records]
    # Every acknowledged event is stored: the two calls whose caller got an answer. The
    # attempt that went out as the server stopped was reported to its caller as a
    # ProvenanceError; a shared sink keeps no local backlog, so its record is not
    # stored (docs/threat-model.md, "Repudiation"). The refusal in between could not be
    # written either, but nothing was sent for it.
    assert types.count("call") == 2
    assert_no_raw_values(fake, RAW.values())
    guard.close()


def test_pg_vault_slow_past_statement_timeout(pg_schema: ThrowawayPostgres) -> None:
    """Another session holds the vault's table locked; with ``statement_timeout`` in the
    DSN the call fails closed instead of hanging, and goes through once it is released."""
    import psycopg

    vault = _vault(pg_schema, pg_schema.dsn + "?options=-c%20statement_timeout%3D300")
    sink = InMemorySink()
    guard = aiguard.Guard(fault_policy(), vault=vault, sinks=[sink])
    fake = FakeModel()
    call = DoorCall("sync", guard, transport=fake.transport)
    locked = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with psycopg.connect(pg_schema.dsn) as conn:
            conn.execute("LOCK TABLE aiguard_vault_entry IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        with pytest.raises(aiguard.VaultError):
            call()
        assert fake.requests == []
    finally:
        release.set()
        holder.join(10)
    assert call() == "Echo: " + MESSAGE
    assert_no_raw_values(fake, RAW.values())
    vault.pool.close()
