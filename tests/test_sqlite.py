"""The SQLite embedded default: vault, consent store, kill switch, migrations, key file,
several threads and several processes sharing one file."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.consent.sqlite import SQLiteConsentStore
from aiguard.consent.store import InMemoryConsentStore, utcnow
from aiguard.errors import ConsentRequired, DestinationRevoked, VaultError
from aiguard.policy.killswitch import SQLiteKillSwitch
from aiguard.provenance.sinks import JsonlSink
from aiguard.storage.sqlite import (
    MIGRATIONS,
    Migration,
    SchemaError,
    SQLiteDatabase,
    migrate,
    schema_version,
)
from aiguard.testing import assert_chain_valid
from aiguard.vault import InMemoryVault, Scope, SQLiteVault, Vault, VaultKeys, load_or_create_key
from aiguard.vault._crypto import _make_cipher, blind_index, entry_aad, token_candidates

SECRET = bytes(range(32))
KEYS = VaultKeys.derive(SECRET)
ACME = Scope("acme")

POLICY = """
database = "state/aiguard.db"

[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference", "model_training"]

[provenance]
jsonl = "events.jsonl"
"""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "aiguard.db"


@pytest.fixture
def vault(db_path: Path) -> SQLiteVault:
    return SQLiteVault(db_path, KEYS)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "aiguard.toml"
    path.write_text(POLICY)
    return path


class TestSQLiteVault:
    def test_implements_the_vault_protocol(self, vault: SQLiteVault) -> None:
        """The SQLite vault is a `Vault` the guard can use."""
        assert isinstance(vault, Vault)

    def test_round_trip_and_scope(self, vault: SQLiteVault) -> None:
        """A token restores its original in its scope only; other text is not a token."""
        token = vault.tokenize(ACME, "email", "jane@example.com", "cust-1")
        assert vault.detokenize(ACME, token) == "jane@example.com"
        assert vault.detokenize(Scope("globex"), token) is None
        assert vault.detokenize(Scope("acme", "conv-1"), token) is None
        assert vault.detokenize(ACME, "[EMAIL_0000]") is None

    def test_deterministic_and_normalized(self, vault: SQLiteVault) -> None:
        """The same value gets the same token; values that normalize alike share it."""
        first = vault.tokenize(ACME, "email", "jane@example.com")
        assert vault.tokenize(ACME, "email", "jane@EXAMPLE.com") == first
        assert vault.tokenize(ACME, "email", "jane@example.com", "cust-1") != first
        assert vault.tokenize(Scope("globex"), "email", "jane@example.com") != first
        assert len(vault) == 3

    @settings(max_examples=25, deadline=None)
    @given(
        values=st.lists(st.text(min_size=1, max_size=24), min_size=1, max_size=8),
        kind=st.sampled_from(["email", "person", "phone", "account"]),
        subject=st.one_of(st.none(), st.text(min_size=1, max_size=8)),
    )
    def test_same_tokens_as_the_in_memory_vault(
        self, values: list[str], kind: str, subject: str | None
    ) -> None:
        """For the same keys, both backends issue the same token for every value."""
        memory = InMemoryVault(KEYS)
        with tempfile.TemporaryDirectory() as tmp:
            sqlite_vault = SQLiteVault(Path(tmp) / "v.db", KEYS)
            for value in values:
                token = sqlite_vault.tokenize(ACME, kind, value, subject)
                assert token == memory.tokenize(ACME, kind, value, subject)
                assert sqlite_vault.detokenize(ACME, token) in {
                    memory.detokenize(ACME, token),
                    value,
                }
            sqlite_vault.close()

    def test_survives_a_restart(self, db_path: Path, vault: SQLiteVault) -> None:
        """Entries outlive the vault object: a new one on the same file restores them."""
        token = vault.tokenize(ACME, "person", "Jane Doe")
        vault.close()
        reopened = SQLiteVault(db_path, KEYS)
        assert reopened.detokenize(ACME, token) == "Jane Doe"
        assert reopened.tokenize(ACME, "person", "jane  DOE") == token

    def test_refuses_a_file_written_with_other_keys(
        self, db_path: Path, vault: SQLiteVault
    ) -> None:
        """Opening with the wrong keys fails at once instead of issuing unreadable tokens."""
        vault.tokenize(ACME, "email", "jane@example.com")
        with pytest.raises(VaultError, match="other keys"):
            SQLiteVault(db_path, VaultKeys.derive(b"x" * 32))

    def test_tampered_entry_fails_closed(self, db_path: Path, vault: SQLiteVault) -> None:
        """A ciphertext moved to another token's row does not decrypt; it raises."""
        one = vault.tokenize(ACME, "email", "jane@example.com")
        two = vault.tokenize(ACME, "email", "bob@example.com")
        conn = sqlite3.connect(db_path)
        with conn:
            (cipher,) = conn.execute(
                "SELECT ciphertext FROM aiguard_vault_entry WHERE token = ?", (one,)
            ).fetchone()
            conn.execute(
                "UPDATE aiguard_vault_entry SET ciphertext = ? WHERE token = ?", (cipher, two)
            )
        conn.close()
        with pytest.raises(VaultError, match="authentication"):
            vault.detokenize(ACME, two)

    def test_nothing_plain_on_disk(self, db_path: Path, vault: SQLiteVault) -> None:
        """Neither the value nor the subject id is stored in the clear."""
        vault.tokenize(ACME, "email", "jane@example.com", "cust-4711")
        vault.database.close()
        raw = b"".join(p.read_bytes() for p in db_path.parent.glob("aiguard.db*"))
        assert b"jane@example.com" not in raw
        assert b"cust-4711" not in raw

    def test_many_threads_get_consistent_tokens(self, db_path: Path) -> None:
        """Threads racing on two vault objects over one file agree on every token."""
        vaults = [SQLiteVault(db_path, KEYS), SQLiteVault(db_path, KEYS)]
        values = [f"user{i}@example.com" for i in range(60)]

        def work(worker: int) -> dict[str, str]:
            order = values[:]
            random.Random(worker).shuffle(order)
            target = vaults[worker % 2]
            return {v: target.tokenize(ACME, "email", v) for v in order}

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(work, range(16)))
        assert all(result == results[0] for result in results)
        assert len(set(results[0].values())) == len(values)
        assert len(vaults[0]) == len(values)
        for value, token in results[0].items():
            assert vaults[1].detokenize(ACME, token) == value

    def test_erase_subject(self, vault: SQLiteVault) -> None:
        """Erasing a subject deletes its entries only; their tokens no longer restore."""
        mine = vault.tokenize(ACME, "email", "jane@example.com", "cust-1")
        other = vault.tokenize(ACME, "email", "bob@example.com", "cust-2")
        assert vault.erase_subject("cust-1") == 1
        assert vault.detokenize(ACME, mine) is None
        assert vault.detokenize(ACME, other) == "bob@example.com"

    def test_a_broken_database_raises(self, vault: SQLiteVault) -> None:
        """Errors surface typed, naming the file, with the driver's error as the cause."""
        vault.database.close()
        with pytest.raises(aiguard.VaultError, match="was closed") as caught:
            vault.tokenize(ACME, "email", "jane@example.com")
        assert str(vault.database.path) in str(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.ProgrammingError)


class TestSQLiteConsentStore:
    def test_grant_withdraw_history(self, db_path: Path) -> None:
        """A withdrawal after a grant revokes it; history keeps both, oldest first."""
        store = SQLiteConsentStore(db_path)
        granted = store.grant("cust-1", "model_training", terms_version="v3", form="signup")
        assert store.current("cust-1", "model_training") == granted
        store.withdraw("cust-1", "model_training")
        assert store.current("cust-1", "model_training") is None
        assert [r.action for r in store.history("cust-1")] == ["grant", "withdraw"]
        assert store.history("cust-1")[0] == granted

    def test_expiry_and_time_travel(self, db_path: Path) -> None:
        """An expired grant is not in force; ``at`` asks about another moment."""
        store = SQLiteConsentStore(db_path)
        now = utcnow()
        store.grant("cust-1", "analytics", expires_at=now + timedelta(days=1))
        assert store.current("cust-1", "analytics") is not None
        assert store.current("cust-1", "analytics", at=now + timedelta(days=2)) is None
        assert store.current("cust-1", "analytics", at=now - timedelta(days=1)) is None

    @settings(max_examples=30, deadline=None)
    @given(
        ops=st.lists(
            st.tuples(
                st.sampled_from(["grant", "withdraw"]),
                st.sampled_from(["model_training", "analytics"]),
                st.sampled_from([None, "acme", "globex"]),
            ),
            max_size=12,
        )
    )
    def test_decides_like_the_in_memory_store(self, ops: list[tuple[str, str, str | None]]) -> None:
        """For any sequence of grants and withdrawals both stores give the same answer."""
        memory = InMemoryConsentStore()
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteConsentStore(Path(tmp) / "c.db")
            for action, purpose, tenant in ops:
                for target in (memory, store):
                    getattr(target, action)("cust-1", purpose, tenant=tenant)
            for purpose in ("model_training", "analytics"):
                for tenant in (None, "acme", "globex"):
                    got = store.current("cust-1", purpose, tenant=tenant)
                    want = memory.current("cust-1", purpose, tenant=tenant)
                    assert (got is None) == (want is None)
                    if got is not None and want is not None:
                        assert (got.action, got.tenant) == (want.action, want.tenant)
            store.close()

    def test_rejects_empty_ids(self, db_path: Path) -> None:
        """Subject and purpose must be non-empty, as in every store."""
        with pytest.raises(ValueError):
            SQLiteConsentStore(db_path).grant("", "analytics")


class TestSQLiteKillSwitch:
    def test_revoke_and_reinstate(self, db_path: Path) -> None:
        """A revocation holds until reinstated, and is seen by another object on the file."""
        switch = SQLiteKillSwitch(db_path)
        other = SQLiteKillSwitch(db_path)
        assert other.revoked("openai") is None
        switch.revoke("openai", "incident 42")
        seen = other.revoked("openai")
        assert seen is not None and seen.reason == "incident 42"
        other.reinstate("openai")
        assert switch.revoked("openai") is None


class TestMigrations:
    def test_from_an_empty_file(self, db_path: Path) -> None:
        """A new file gets every migration, WAL mode and a version row per step."""
        db = SQLiteDatabase(db_path)
        assert db.version == MIGRATIONS[-1].version == 2
        conn = db.connection()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [row[0] for row in conn.execute("SELECT version FROM aiguard_schema")]
        assert versions == [1, 2]
        columns = {row[1] for row in conn.execute("PRAGMA table_info(aiguard_vault_entry)")}
        assert "subject_ref" in columns
        SQLiteDatabase(db_path)  # reopening migrates nothing and changes nothing
        assert [row[0] for row in conn.execute("SELECT version FROM aiguard_schema")] == [1, 2]

    def test_from_the_previous_version(self, db_path: Path) -> None:
        """A version 1 file with data is upgraded in place and its data stays usable."""
        conn = sqlite3.connect(db_path, isolation_level=None)
        assert migrate(conn, target=1) == 1
        token = next(token_candidates(KEYS, ACME, "email", _index("jane@example.com")))
        nonce = os.urandom(12)
        cipher = _make_cipher(KEYS.data_key).encrypt(
            nonce, b"jane@example.com", entry_aad(ACME, token, "email", KEYS.version)
        )
        conn.execute(
            "INSERT INTO aiguard_vault_entry (scope, token, blind_index, kind, key_version, "
            "nonce, ciphertext, created_at) VALUES (?, ?, ?, 'email', ?, ?, ?, '2026-01-01')",
            (ACME.key, token, _index("jane@example.com"), KEYS.version, nonce, cipher),
        )
        conn.execute(
            "INSERT INTO aiguard_consent (record_id, action, subject, purpose, tenant, at, "
            "proof) VALUES ('cr_1', 'grant', 'cust-1', 'analytics', NULL, "
            "'2026-01-01T00:00:00+00:00', '{}')"
        )
        conn.close()

        vault = SQLiteVault(db_path, KEYS)
        assert vault.database.version == 2
        assert vault.detokenize(ACME, token) == "jane@example.com"
        assert vault.tokenize(ACME, "email", "jane@example.com") == token
        assert vault.erase_subject("cust-1") == 0  # version 1 never stored subjects
        new = vault.tokenize(ACME, "email", "bob@example.com", "cust-1")
        assert vault.erase_subject("cust-1") == 1 and vault.detokenize(ACME, new) is None
        record = SQLiteConsentStore(vault.database).current("cust-1", "analytics")
        assert record is not None and record.record_id == "cr_1"

    def test_refuses_a_newer_schema(self, db_path: Path) -> None:
        """A file from a newer aiguard is refused, never downgraded or misread."""
        SQLiteDatabase(db_path).close()
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("INSERT INTO aiguard_schema VALUES (99, 'future', 'later')")
        conn.close()
        with pytest.raises(SchemaError, match="upgrade aiguard"):
            SQLiteDatabase(db_path)

    def test_failed_migration_rolls_back(self, db_path: Path) -> None:
        """A migration that fails leaves the file at its previous version."""
        conn = sqlite3.connect(db_path, isolation_level=None)
        broken = (*MIGRATIONS, Migration(3, "broken", ("CREATE TABLE x (",)))
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, broken)
        assert schema_version(conn) == 0
        assert migrate(conn) == 2

    def test_memory_path_is_refused(self) -> None:
        """':memory:' would give each thread its own empty database; it is refused."""
        with pytest.raises(ValueError, match="in-memory stores"):
            SQLiteDatabase(":memory:")


class TestKeyFile:
    def test_created_private_and_stable(self, tmp_path: Path) -> None:
        """The key file is made once, 32 bytes, mode 0600; later reads return the same key."""
        path = tmp_path / "aiguard.key"
        key = load_or_create_key(path)
        assert len(key) == 32
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_or_create_key(path) == key
        assert [p.name for p in tmp_path.iterdir()] == ["aiguard.key"]

    def test_racing_threads_agree(self, tmp_path: Path) -> None:
        """Creators racing on a missing file all end up with the one key that was published."""
        path = tmp_path / "aiguard.key"
        barrier = threading.Barrier(8)

        def create(_: int) -> bytes:
            barrier.wait()
            return load_or_create_key(path)

        with ThreadPoolExecutor(max_workers=8) as pool:
            keys = set(pool.map(create, range(8)))
        assert len(keys) == 1

    def test_wrong_size_is_an_error(self, tmp_path: Path) -> None:
        """A truncated key is never replaced by a new one (that would orphan every token)."""
        path = tmp_path / "aiguard.key"
        path.write_bytes(b"short")
        with pytest.raises(aiguard.errors.AIGuardError, match="restore"):
            load_or_create_key(path)

    def test_readable_by_others_warns(self, tmp_path: Path) -> None:
        """A key file others can read still works, with a warning saying how to fix it."""
        path = tmp_path / "aiguard.key"
        path.write_bytes(os.urandom(32))
        path.chmod(0o644)
        with pytest.warns(UserWarning, match="chmod 600"):
            load_or_create_key(path)


class TestGuardFromToml:
    def test_uses_sqlite_when_the_policy_names_a_database(self, policy_file: Path) -> None:
        """`from_toml` opens the database and key file beside the policy."""
        guard = aiguard.Guard.from_toml(policy_file)
        assert isinstance(guard.vault, SQLiteVault)
        assert isinstance(guard.consent, SQLiteConsentStore)
        assert isinstance(guard.killswitch, SQLiteKillSwitch)
        assert (policy_file.parent / "state" / "aiguard.db").exists()
        key = policy_file.parent / "state" / "aiguard.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        guard.close()

    def test_two_guards_share_tokens_and_digests(self, policy_file: Path) -> None:
        """Guards built from the same policy issue the same tokens and subject digests."""
        one = aiguard.Guard.from_toml(policy_file, sinks=[aiguard.InMemorySink()])
        two = aiguard.Guard.from_toml(policy_file, sinks=[aiguard.InMemorySink()])
        with one.context(subject="cust-1", tenant="acme", purpose="inference"):
            first = one.protect("Mail jane@example.com", destination="openai")
        with two.context(subject="cust-1", tenant="acme", purpose="inference"):
            second = two.protect("Mail jane@example.com", destination="openai")
        assert first.payload == second.payload
        assert one.digest("subject", "acme", "cust-1") == two.digest("subject", "acme", "cust-1")
        token = first.tokens[0]
        assert two.vault.detokenize(Scope("acme"), token) == "jane@example.com"

    def test_overrides_win(self, policy_file: Path) -> None:
        """Explicit stores and secret are used as given; the rest still come from SQLite."""
        memory = InMemoryVault()
        guard = aiguard.Guard.from_toml(policy_file, vault=memory, secret=SECRET)
        assert guard.vault is memory
        assert isinstance(guard.consent, SQLiteConsentStore)
        assert not (policy_file.parent / "state" / "aiguard.key").exists()

    def test_without_a_database_stays_in_memory(self, tmp_path: Path) -> None:
        """No ``database`` key, no file: the in-memory stores."""
        path = tmp_path / "p.toml"
        path.write_text(POLICY.replace('database = "state/aiguard.db"', ""))
        guard = aiguard.Guard.from_toml(path)
        assert isinstance(guard.vault, InMemoryVault)
        assert not (tmp_path / "state").exists()


class TestJsonlRestart:
    def test_reopened_log_continues_its_chain(self, tmp_path: Path, policy_file: Path) -> None:
        """Write, close, reopen with a new guard, write: the whole file verifies."""
        log = policy_file.parent / "events.jsonl"
        for _run in range(2):
            guard = aiguard.Guard.from_toml(policy_file)
            assert isinstance(guard.sinks[0], JsonlSink)
            with guard.context(subject="cust-1", purpose="inference"):
                guard.protect("Mail jane@example.com", destination="openai")
            guard.close()
        report = aiguard.verify_file(log)
        assert report.ok, report.summary()
        documents = [json.loads(line) for line in log.read_text().splitlines()]
        assert [d["type"] for d in documents] == ["genesis", "protect", "protect"]
        assert [d["seq"] for d in documents] == [0, 1, 2]
        assert_chain_valid(log)


CHILD = textwrap.dedent(
    """
    import json, random, sys
    import aiguard
    from aiguard.vault import Scope

    guard = aiguard.Guard.from_toml(sys.argv[1], sinks=[aiguard.InMemorySink()])
    action, arg = sys.argv[2], json.loads(sys.argv[3])
    if action == "tokenize":
        values, seed = arg
        random.Random(seed).shuffle(values)
        out = {v: guard.vault.tokenize(Scope("acme"), "email", v) for v in values}
    elif action == "detokenize":
        out = guard.vault.detokenize(Scope("acme"), arg)
    elif action == "revoke":
        guard.revoke("openai", arg)
        out = None
    elif action == "reinstate":
        guard.reinstate("openai", arg)
        out = None
    elif action == "withdraw":
        out = guard.consent.withdraw(arg, "model_training").record_id
    print(json.dumps(out))
    """
)


class Child:
    """Runs the child script in another Python process against the same policy file."""

    def __init__(self, script: Path, policy: Path) -> None:
        self.script = script
        self.policy = policy

    def start(self, action: str, arg: object) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(self.script), str(self.policy), action, json.dumps(arg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def result(proc: subprocess.Popen[str]) -> Any:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        return json.loads(out)

    def __call__(self, action: str, arg: object) -> Any:
        return self.result(self.start(action, arg))


class TestTwoProcesses:
    @pytest.fixture
    def child(self, tmp_path: Path, policy_file: Path) -> Child:
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        return Child(script, policy_file)

    def test_same_value_same_token_across_processes(self, policy_file: Path, child: Child) -> None:
        """A value tokenized here and in another process gets one token, restorable by both."""
        guard = aiguard.Guard.from_toml(policy_file, sinks=[aiguard.InMemorySink()])
        mine = guard.vault.tokenize(ACME, "email", "jane@example.com")
        theirs = child("tokenize", [["jane@example.com", "bob@example.com"], 1])
        assert theirs["jane@example.com"] == mine
        assert child("detokenize", theirs["bob@example.com"]) == "bob@example.com"
        assert guard.vault.detokenize(ACME, theirs["bob@example.com"]) == "bob@example.com"

    def test_concurrent_processes_agree(self, policy_file: Path, child: Child) -> None:
        """Processes racing to tokenize the same values issue each token exactly once."""
        values = [f"user{i}@example.com" for i in range(40)]
        procs = [child.start("tokenize", [values, seed]) for seed in range(4)]
        results = [child.result(proc) for proc in procs]
        assert all(result == results[0] for result in results)
        guard = aiguard.Guard.from_toml(policy_file, sinks=[aiguard.InMemorySink()])
        assert isinstance(guard.vault, SQLiteVault)
        assert len(guard.vault) == len(values)

    def test_revocation_reaches_a_running_process(self, policy_file: Path, child: Child) -> None:
        """A revocation made by another process refuses this one's very next call."""
        guard = aiguard.Guard.from_toml(policy_file, sinks=[aiguard.InMemorySink()])
        with guard.context(subject="cust-1", purpose="inference"):
            guard.protect("hello", destination="openai")
            child("revoke", "incident 42")
            with pytest.raises(DestinationRevoked, match="incident 42"):
                guard.protect("hello", destination="openai")
            child("reinstate", "fixed")
            guard.protect("hello", destination="openai")

    def test_withdrawal_reaches_a_running_process(self, policy_file: Path, child: Child) -> None:
        """Consent withdrawn in another process refuses this one's next training call."""
        guard = aiguard.Guard.from_toml(policy_file, sinks=[aiguard.InMemorySink()])
        guard.consent.grant("cust-1", "model_training", terms_version="v1")
        with guard.context(subject="cust-1", purpose="model_training", use_for_training=True):
            guard.protect("hello", destination="openai")
            child("withdraw", "cust-1")
            with pytest.raises(ConsentRequired):
                guard.protect("hello", destination="openai")


def _index(value: str) -> bytes:
    return blind_index(KEYS, ACME, "email", value, None)
