"""Vault bad input and batching: wrong keys, tampering, unknown versions, odd subject ids,
batched tokenization, the restore cache and erasure, a PostgreSQL connection loss."""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.errors import VaultError
from aiguard.vault import (
    ERASED,
    BatchVault,
    InMemoryVault,
    Scope,
    SQLiteVault,
    SubjectVault,
    VaultKeys,
)
from aiguard.vault.keys import KeyProviderError, SecretKeyProvider

SCOPE = Scope("acme", "conv-1")
JANE = "jane.doe@example.com"
DSN = os.environ.get("AIGUARD_TEST_POSTGRES_DSN")
needs_pg = pytest.mark.skipif(
    not DSN, reason="set AIGUARD_TEST_POSTGRES_DSN to a PostgreSQL DSN to run these tests"
)
PG_ROOT = b"r" * 32  # the root tests/test_pg_stores.py writes the shared tables under

ODD_SUBJECTS = [
    "a:b",
    "a",
    "ünïcødé-客户-42",
    "line\nbreak",
    "nul\x00byte",
    "'; DROP TABLE aiguard_vault_entry; --",
    "../../etc/passwd",
    "x" * 10_000,
    " ",
    "%s %(x)s ?",
]


def _sqlite(tmp_path: Path, root: bytes | None = None, name: str = "v.db") -> SQLiteVault:
    return SQLiteVault(tmp_path / name, SecretKeyProvider(root or b"k" * 32))


def _raw_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql, params)


# -- wrong keys, tampering, versions ----------------------------------------------------------


def test_wrong_root_key_is_refused_at_open(tmp_path: Path) -> None:
    vault = _sqlite(tmp_path)
    vault.tokenize(SCOPE, "email", JANE, "cust-1")
    vault.close()
    with pytest.raises(KeyProviderError) as caught:
        _sqlite(tmp_path, b"w" * 32)
    assert isinstance(caught.value, VaultError)
    assert JANE not in str(caught.value)


def test_wrong_legacy_secret_is_refused(tmp_path: Path) -> None:
    SQLiteVault(tmp_path / "v.db", VaultKeys.derive(b"s" * 32)).close()
    with pytest.raises(VaultError, match="other keys"):
        SQLiteVault(tmp_path / "v.db", VaultKeys.derive(b"t" * 32))


def test_tampered_ciphertext_fails_without_leaking(tmp_path: Path) -> None:
    vault = _sqlite(tmp_path)
    token = vault.tokenize(SCOPE, "email", JANE, "cust-1")
    vault.close()
    with sqlite3.connect(tmp_path / "v.db") as conn:
        (ciphertext,) = conn.execute(
            "SELECT ciphertext FROM aiguard_vault_entry WHERE token = ?", (token,)
        ).fetchone()
        flipped = bytes([ciphertext[0] ^ 0x01]) + bytes(ciphertext[1:])
        conn.execute(
            "UPDATE aiguard_vault_entry SET ciphertext = ? WHERE token = ?", (flipped, token)
        )
    vault = _sqlite(tmp_path)
    with pytest.raises(VaultError, match="tampered") as caught:
        vault.detokenize(SCOPE, token)
    assert JANE not in str(caught.value) and "jane" not in repr(caught.value)
    vault.close()


def test_ciphertext_moved_to_another_row_fails(tmp_path: Path) -> None:
    vault = _sqlite(tmp_path)
    jane = vault.tokenize(SCOPE, "email", JANE, "cust-1")
    bob = vault.tokenize(SCOPE, "email", "bob@example.com", "cust-1")
    vault.close()
    with sqlite3.connect(tmp_path / "v.db") as conn:
        row = conn.execute(
            "SELECT nonce, ciphertext FROM aiguard_vault_entry WHERE token = ?", (jane,)
        ).fetchone()
        conn.execute(
            "UPDATE aiguard_vault_entry SET nonce = ?, ciphertext = ? WHERE token = ?",
            (*row, bob),
        )
    vault = _sqlite(tmp_path)
    with pytest.raises(VaultError):
        vault.detokenize(SCOPE, bob)  # associated data binds the token
    assert vault.detokenize(SCOPE, jane) == JANE
    vault.close()


def test_tampered_wrapped_data_key_is_a_key_error(tmp_path: Path) -> None:
    vault = _sqlite(tmp_path)
    token = vault.tokenize(SCOPE, "email", JANE, "cust-1")
    vault.close()
    with sqlite3.connect(tmp_path / "v.db") as conn:
        for owner, wrapped in conn.execute(
            "SELECT owner, wrapped FROM aiguard_vault_key WHERE purpose = 'dek'"
        ).fetchall():
            damaged = wrapped[:20] + bytes([wrapped[20] ^ 0x01]) + wrapped[21:]
            conn.execute(
                "UPDATE aiguard_vault_key SET wrapped = ? WHERE owner = ?", (damaged, owner)
            )
    vault = _sqlite(tmp_path)
    with pytest.raises(KeyProviderError, match="does not unwrap"):
        vault.detokenize(SCOPE, token)
    vault.close()


def test_unknown_key_versions(tmp_path: Path) -> None:
    """A version with no data key restores as ERASED (its key is gone, as after an
    erasure); a version that exists but is not the entry's fails authentication."""
    vault = _sqlite(tmp_path)
    old = vault.tokenize(SCOPE, "email", JANE, "cust-1")
    vault.rotate()
    new = vault.tokenize(SCOPE, "email", "new@example.com", "cust-1")  # DEK version 2
    vault.close()
    _raw_rows(
        tmp_path / "v.db", "UPDATE aiguard_vault_entry SET key_version = 99 WHERE token = ?", (old,)
    )
    vault = _sqlite(tmp_path)
    assert vault.detokenize(SCOPE, old) == ERASED
    vault.close()
    _raw_rows(
        tmp_path / "v.db", "UPDATE aiguard_vault_entry SET key_version = 1 WHERE token = ?", (new,)
    )
    vault = _sqlite(tmp_path)
    with pytest.raises(VaultError):
        vault.detokenize(SCOPE, new)
    vault.close()


def test_legacy_entries_of_another_key_version_are_a_typed_error(tmp_path: Path) -> None:
    # Entries written before the key hierarchy existed (no DEK owner) carry the version
    # of the VaultKeys they were written with.
    vault = SQLiteVault(tmp_path / "v.db", VaultKeys.derive(b"s" * 32))
    token = vault.tokenize(SCOPE, "email", JANE, "cust-1")
    vault.close()
    _raw_rows(
        tmp_path / "v.db",
        "UPDATE aiguard_vault_entry SET dek_owner = NULL, key_version = 7 WHERE token = ?",
        (token,),
    )
    vault = SQLiteVault(tmp_path / "v.db", VaultKeys.derive(b"s" * 32))
    with pytest.raises(VaultError, match="key version 7"):
        vault.detokenize(SCOPE, token)
    vault.close()


def test_malformed_and_foreign_tokens_in_an_answer_stay_as_they_are() -> None:
    guard = aiguard.Guard(
        aiguard.Policy.model_validate(
            {
                "destinations": {
                    "openai": {
                        "base_url": "https://api.openai.com/v1",
                        "approved": True,
                        "purposes": ["inference"],
                    }
                },
                "actions": {"sensitive": "tokenize", "regulated": "tokenize"},
            }
        )
    )
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        protected = guard.protect(f"mail {JANE}", destination="openai")
    (token,) = protected.tokens
    odd = [
        "[EMAIL_]",
        "[EMAIL_12]",
        "[email_ABCD]",
        "[EMAIL_" + "Z" * 40 + "]",
        "[EMAIL_ILOU]",
        token.replace("[", "[[")[:-1],
        "[PHONE_0000]",
    ]
    answer = " ".join(odd) + " " + token
    restored = guard.restore(answer, protected)
    assert restored == " ".join(odd) + " " + JANE


# -- odd subject ids -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_odd_subject_ids_are_kept_apart(tmp_path: Path, backend: str) -> None:
    root = SecretKeyProvider(b"k" * 32)
    vault: Any = (
        InMemoryVault(root) if backend == "memory" else SQLiteVault(tmp_path / "v.db", root)
    )
    tokens = {s: vault.tokenize(SCOPE, "email", JANE, s) for s in ODD_SUBJECTS}
    assert len(set(tokens.values())) == len(ODD_SUBJECTS)  # one entry per subject
    for subject, token in tokens.items():
        (entry,) = vault.export_subject(subject)
        assert entry["token"] == token and entry["value"] == JANE
    assert vault.erase_subject("a:b", marker=True) == 1
    assert vault.detokenize(SCOPE, tokens["a:b"]) == ERASED
    assert vault.detokenize(SCOPE, tokens["a"]) == JANE
    assert vault.erase_subject("nul\x00byte") == 1
    assert vault.detokenize(SCOPE, tokens["nul\x00byte"]) is None
    assert all(
        vault.detokenize(SCOPE, tokens[s]) == JANE for s in ODD_SUBJECTS[2:] if "\x00" not in s
    )
    if backend == "sqlite":
        raw = (tmp_path / "v.db").read_bytes()
        for subject in ODD_SUBJECTS[2:]:
            if len(subject) > 3:
                assert subject.encode() not in raw  # only keyed references are stored
        vault.close()


def test_empty_subject_is_no_subject() -> None:
    vault = InMemoryVault(SecretKeyProvider(b"k" * 32))
    assert vault.tokenize(SCOPE, "email", JANE, "") == vault.tokenize(SCOPE, "email", JANE, None)
    assert vault.tokenize_many(SCOPE, [("email", JANE, "")]) == [
        vault.tokenize(SCOPE, "email", JANE)
    ]


# -- batched tokenization -------------------------------------------------------------------


def _items(n: int, prefix: str = "u") -> list[tuple[str, str, str | None]]:
    return [("email", f"{prefix}{i}@example.com", f"s{i % 5}" if i % 7 else None) for i in range(n)]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_tokenize_many_matches_tokenize(tmp_path: Path, backend: str) -> None:
    keys = VaultKeys.derive(b"q" * 32)

    def make(name: str) -> Any:
        return InMemoryVault(keys) if backend == "memory" else SQLiteVault(tmp_path / name, keys)

    batch, single = make("a.db"), make("b.db")
    assert isinstance(batch, BatchVault) and isinstance(batch, SubjectVault)
    items = _items(2_000)
    items += items[:50]  # repeats within a batch
    batched = batch.tokenize_many(SCOPE, items)
    one_by_one = [single.tokenize(SCOPE, *item) for item in items]
    assert batched == one_by_one
    assert batched[-50:] == batched[:50]
    # Known values come back from the store (a fresh instance has no cache).
    if backend == "sqlite":
        batch.close()
        batch = make("a.db")
    assert batch.tokenize_many(SCOPE, items[::-1]) == batched[::-1]
    for token, (_kind, value, _subject) in zip(batched[:100], items, strict=False):
        assert batch.detokenize(SCOPE, token) == value
    assert batch.tokenize_many(SCOPE, []) == []
    # Entries belong to their subjects: erasure finds batched entries too.
    assert batch.erase_subject("s1", marker=True) == sum(1 for i in items[:2000] if i[2] == "s1")


def test_tokenize_many_is_one_transaction_per_batch(tmp_path: Path) -> None:
    vault = _sqlite(tmp_path)
    vault.tokenize(SCOPE, "email", "warm@example.com", "s0")  # keys and DEK of s0 exist
    statements: list[str] = []
    vault.database.connection().set_trace_callback(statements.append)
    vault.tokenize_many(SCOPE, [("email", f"b{i}@example.com", "s0") for i in range(300)])
    vault.database.connection().set_trace_callback(None)
    assert sum(1 for s in statements if s.startswith("BEGIN")) == 1
    assert sum(1 for s in statements if s.startswith("COMMIT")) == 1
    vault.close()


def test_failed_batch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aiguard.vault.sqlite as sqlite_vault

    vault = _sqlite(tmp_path)
    vault.tokenize(SCOPE, "email", "warm@example.com", "s0")
    real = sqlite_vault._entry_params
    calls = {"n": 0}

    def failing(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 150:
            raise RuntimeError("disk on fire")
        return real(*args)

    monkeypatch.setattr(sqlite_vault, "_entry_params", failing)
    with pytest.raises(RuntimeError):
        vault.tokenize_many(SCOPE, [("email", f"b{i}@example.com", "s0") for i in range(300)])
    assert len(vault) == 1  # the whole batch rolled back
    monkeypatch.setattr(sqlite_vault, "_entry_params", real)
    tokens = vault.tokenize_many(SCOPE, [("email", f"b{i}@example.com", "s0") for i in range(300)])
    assert len(vault) == 301 and vault.detokenize(SCOPE, tokens[299]) == "b299@example.com"
    vault.close()


# -- the restore cache and erasure ----------------------------------------------------------


def test_restore_cache_never_returns_an_erased_value(tmp_path: Path) -> None:
    writer = _sqlite(tmp_path)  # plays the other process: its own connections and caches
    reader = _sqlite(tmp_path)
    token = writer.tokenize(SCOPE, "email", JANE, "cust-1")
    other = writer.tokenize(SCOPE, "email", "keep@example.com", "cust-2")
    for _ in range(3):
        assert reader.detokenize(SCOPE, token) == JANE
        assert reader.detokenize(SCOPE, other) == "keep@example.com"
    assert reader._plain  # the cache is in use
    # Erased by the other "process": the reader must not serve its cached copy.
    assert writer.erase_subject("cust-1", marker=True) == 1
    assert reader.detokenize(SCOPE, token) == ERASED
    assert reader.detokenize(SCOPE, other) == "keep@example.com"
    # Erased in this process: the cache is emptied at once.
    assert reader.detokenize(SCOPE, other) == "keep@example.com"
    reader.erase_subject("cust-2")
    assert not reader._plain
    assert reader.detokenize(SCOPE, other) is None
    assert writer.detokenize(SCOPE, other) is None
    writer.close()
    reader.close()


def test_restore_cache_and_retention_purge(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    root = SecretKeyProvider(b"k" * 32)
    writer = SQLiteVault(tmp_path / "v.db", root, retention=timedelta(days=1))
    reader = SQLiteVault(tmp_path / "v.db", root)
    token = writer.tokenize(SCOPE, "email", JANE, "cust-1")
    assert reader.detokenize(SCOPE, token) == JANE
    assert writer.purge_expired(datetime.now(timezone.utc) + timedelta(days=2)) == 1
    assert reader.detokenize(SCOPE, token) is None
    writer.close()
    reader.close()


def test_restore_cache_ttl_and_switch_off(tmp_path: Path) -> None:
    vault = _sqlite(tmp_path)
    token = vault.tokenize(SCOPE, "email", JANE, "cust-1")
    vault.restore_cache_ttl = 0
    assert vault.detokenize(SCOPE, token) == JANE
    assert not vault._plain
    vault.restore_cache_ttl = 1e-9  # expires at once: read again, still right
    assert vault.detokenize(SCOPE, token) == JANE
    assert vault.detokenize(SCOPE, token) == JANE
    vault.close()


def test_erasure_between_read_and_cache_fill_is_not_served(tmp_path: Path) -> None:
    """A value read before an erasure committed is tagged with the old generation."""
    vault = _sqlite(tmp_path)
    token = vault.tokenize(SCOPE, "email", JANE, "cust-1")
    real_entry = vault._s_entry

    def erase_after_read(scope_key: str, tok: str) -> Any:
        row = real_entry(scope_key, tok)
        other = _sqlite(tmp_path)
        other.erase_subject("cust-1", marker=True)  # commits after this read
        other.close()
        return row

    vault._s_entry = erase_after_read  # type: ignore[method-assign]
    assert vault.detokenize(SCOPE, token) == JANE  # the stale read itself
    vault._s_entry = real_entry  # type: ignore[method-assign]
    assert vault.detokenize(SCOPE, token) == ERASED
    vault.close()


# -- PostgreSQL ---------------------------------------------------------------------------


def _pg(application_name: str) -> Any:
    from aiguard.vault.postgres import PostgresPool, PostgresVault

    assert DSN is not None
    pool = PostgresPool(DSN, max_size=4, application_name=application_name)
    return PostgresVault(pool, SecretKeyProvider(PG_ROOT))


def _terminate(application_name: str) -> int:
    import psycopg

    assert DSN is not None
    with psycopg.connect(DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return len(rows)


@needs_pg
def test_postgres_connections_dropped_mid_run_are_retried() -> None:
    """What a server restart does to a client: every pooled connection dies at once."""
    name = f"aiguard-test-{uuid.uuid4().hex[:8]}"
    vault = _pg(name)
    scope = Scope(f"restart-{uuid.uuid4().hex}")
    before = {v: vault.tokenize(scope, "email", v, "s") for v in ("a@x.com", "b@x.com")}
    batch = vault.tokenize_many(scope, [("email", f"{i}@y.com", "s") for i in range(200)])
    assert _terminate(name) >= 1
    vault._token_cache.clear()  # make every call below go to the database
    assert {v: vault.tokenize(scope, "email", v, "s") for v in before} == before
    assert _terminate(name) >= 1
    assert vault.tokenize_many(scope, [("email", f"{i}@y.com", "s") for i in range(200)]) == batch
    assert _terminate(name) >= 1
    assert vault.detokenize(scope, before["a@x.com"]) == "a@x.com"
    new = vault.tokenize_many(scope, [("email", f"n{i}@y.com", "s") for i in range(50)])
    assert len(set(new)) == 50
    vault.close()


@needs_pg
def test_postgres_unreachable_is_a_vault_error() -> None:
    from aiguard.vault.postgres import PostgresPool, PostgresVault

    pool = PostgresPool(
        "postgresql://postgres:s3cret-pw@127.0.0.1:1/none?connect_timeout=1", timeout=0.5
    )
    with pytest.raises(VaultError, match="PostgreSQL database") as caught:
        PostgresVault(pool, SecretKeyProvider(PG_ROOT))
    # The DSN is named so the user knows what to fix, with its password masked.
    assert "postgres:***@127.0.0.1:1/none" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert "[keys] dsn" in str(caught.value)
    pool.close()


@needs_pg
def test_postgres_tokenize_many_matches_tokenize_and_races() -> None:
    vault, other = _pg("aiguard-test-a"), _pg("aiguard-test-b")
    scope = Scope(f"batch-{uuid.uuid4().hex}")
    items = _items(1_500, "p")
    half = other.tokenize_many(scope, items[::2])  # another writer stored half of them
    batched = vault.tokenize_many(scope, items)
    assert batched[::2] == half
    assert batched == [other.tokenize(scope, *item) for item in items]
    assert len(set(batched)) == len({(i[1], i[2]) for i in items})
    assert vault.detokenize(scope, batched[3]) == items[3][1]
    vault.close()
    other.close()


@settings(max_examples=500)
@given(
    st.sampled_from(["email", "phone", "credit_card", "us_ssn", "iban", "person", "account"]),
    st.text(),
)
def test_normalize_skips_nothing_its_definition_does(kind: str, value: str) -> None:
    """The ASCII fast paths of `normalize` give what the definition (NFKC first) gives,
    so a value keeps its token whichever path it took."""
    import unicodedata

    from aiguard.vault._crypto import normalize

    reference = unicodedata.normalize("NFKC", value).strip()
    if kind == "email" and "@" in reference:
        local, _, domain = reference.rpartition("@")
        reference = f"{local}@{domain.lower()}"
    elif kind in {"credit_card", "phone", "us_ssn", "iban"}:
        reference = "".join(ch for ch in reference if ch.isalnum() or ch == "+")
    elif kind == "person":
        reference = " ".join(reference.casefold().split())
    assert normalize(kind, value) == reference
