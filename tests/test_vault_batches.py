"""One vault round trip per text: a call issues the tokens of one text's values (or of a
model's tagged fields) together, on the vaults that store remotely (SQLite, PostgreSQL).

What must hold: the same tokens as one value at a time, the same refusal or fallback when
the vault fails (asked once), nothing stored for a text the policy blocks, and through
the real OpenAI SDK one batch per message.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import aiguard
from _sdk_policy import openai_client
from aiguard import Classified, Level
from aiguard.errors import PolicyDenied, VaultError
from aiguard.testing import FakeModel, InMemorySink
from aiguard.vault import InMemoryVault, SQLiteVault
from aiguard.vault._core import KeyedVault
from aiguard.vault._crypto import blind_index, token_candidates
from aiguard.vault.keys import SecretKeyProvider

DSN = os.environ.get("AIGUARD_TEST_POSTGRES_DSN")
needs_pg = pytest.mark.skipif(
    not DSN, reason="set AIGUARD_TEST_POSTGRES_DSN to a PostgreSQL DSN to run these tests"
)
PG_ROOT = b"r" * 32  # the root tests/test_pg_stores.py writes the shared tables under
CARD = "4111 1111 1111 1111"
PHONE = "+49 30 901820 17"
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "-----END RSA PRIVATE KEY-----"
)

STORAGE = ("_s_find", "_s_issue", "_s_find_many", "_s_issue_many")
READS = ("_s_entry", "_s_entries")


def _counting(vault: KeyedVault, names: tuple[str, ...] = STORAGE) -> dict[str, int]:
    """Count the vault's storage calls: each is a query or a transaction of its own."""
    counts = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(vault, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            counts[_name] += 1
            return _real(*args)

        setattr(vault, name, counted)
    return counts


def _message(tag: str) -> str:
    return (
        f"Hi, this is Maria. Reply to maria.{tag}@example.com or to m.{tag}@example.org, "
        f"or call {PHONE}; the card was {CARD}. Ticket ACC-{zlib.crc32(tag.encode()) % 10**8:08d}."
    )


def _guard(policy: aiguard.Policy, vault: Any, sink: InMemorySink | None = None) -> aiguard.Guard:
    return aiguard.Guard(policy, vault=vault, sinks=[sink if sink is not None else InMemorySink()])


def _context(tenant: str) -> aiguard.CallContext:
    return aiguard.CallContext(
        subject="cust-1", tenant=tenant, purpose="inference", destination="openai"
    )


def _sqlite_vault(path: Path) -> SQLiteVault:
    return SQLiteVault(path, SecretKeyProvider(PG_ROOT))


def _pg_vault() -> KeyedVault:
    from aiguard.vault.postgres import PostgresVault

    assert DSN is not None
    return PostgresVault(DSN, SecretKeyProvider(PG_ROOT))


class _OneAtATime(SQLiteVault):
    prefers_batches = False


def _twins(folder: Path, tenant: str) -> tuple[SQLiteVault, SQLiteVault]:
    """Two SQLite vaults with the same keys for ``tenant`` and no entry: one batches,
    the other tokenizes one value at a time. Tokens differ between vaults that only
    share a root (each tenant's keys are random), so the second is a copy of the first."""
    first = _sqlite_vault(folder / "batched.db")
    first._tenant(tenant)
    first.close()
    shutil.copyfile(folder / "batched.db", folder / "single.db")
    return _sqlite_vault(folder / "batched.db"), _OneAtATime(
        folder / "single.db", SecretKeyProvider(PG_ROOT)
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_pg)])
def stored_vault(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    vault = _sqlite_vault(tmp_path / "v.db") if request.param == "sqlite" else _pg_vault()
    yield vault
    vault.close()  # type: ignore[attr-defined]


def test_the_vaults_say_whether_they_batch() -> None:
    with tempfile.TemporaryDirectory() as folder:
        sqlite_vault = _sqlite_vault(Path(folder) / "v.db")
        assert sqlite_vault.prefers_batches
        sqlite_vault.close()
    assert not InMemoryVault().prefers_batches


def test_a_message_s_new_values_are_issued_in_one_batch(
    policy: aiguard.Policy, stored_vault: KeyedVault
) -> None:
    tenant = f"batch-{uuid.uuid4().hex}"
    counts = _counting(stored_vault)
    protected = _guard(policy, stored_vault).protect(_message("one"), _context(tenant))
    assert len(protected.tokens) == 5
    # One lookup and one write for five new values, where one at a time took ten.
    assert counts == {"_s_find": 0, "_s_issue": 0, "_s_find_many": 1, "_s_issue_many": 1}
    # Each token is the one `tokenize` issues a new value (its first free candidate),
    # and restores to its value.
    keys = stored_vault._tenant(tenant)
    for finding in protected.findings:
        original = _message("one")[finding.start : finding.end]
        index = blind_index(keys, protected.scope, finding.kind, original, "cust-1")
        assert finding.token == next(token_candidates(keys, protected.scope, finding.kind, index))
        assert stored_vault.detokenize(protected.scope, finding.token) == original


def test_known_values_cost_one_lookup_and_no_write(
    policy: aiguard.Policy, stored_vault: KeyedVault
) -> None:
    tenant = f"batch-{uuid.uuid4().hex}"
    guard = _guard(policy, stored_vault)
    first = guard.protect(_message("two"), _context(tenant))
    stored_vault._token_cache.clear()  # as another process, or after a restart
    counts = _counting(stored_vault)
    again = guard.protect(_message("two"), _context(tenant))
    assert again.payload == first.payload
    assert counts == {"_s_find": 0, "_s_issue": 0, "_s_find_many": 1, "_s_issue_many": 0}


def test_one_value_alone_takes_the_single_path(
    policy: aiguard.Policy, stored_vault: KeyedVault
) -> None:
    counts = _counting(stored_vault)
    text = "Reply to solo.writer@example.com please"
    protected = _guard(policy, stored_vault).protect(text, _context(f"b-{uuid.uuid4().hex}"))
    assert len(protected.tokens) == 1
    assert counts == {"_s_find": 1, "_s_issue": 1, "_s_find_many": 0, "_s_issue_many": 0}


def test_a_text_with_a_blocked_value_is_not_issued_ahead(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    """The call is refused at the blocked value, as one value at a time is: the values
    after it are never stored (a batch would have stored them)."""
    vault = _sqlite_vault(tmp_path / "v.db")
    counts = _counting(vault)
    sink = InMemorySink()
    text = f"keys for a@example.com and b@example.com:\n{PRIVATE_KEY}\nask c@example.com"
    with pytest.raises(PolicyDenied, match="private_key"):
        _guard(policy, vault, sink).protect(text, _context("acme"))
    assert counts["_s_issue_many"] == 0
    assert len(vault) == 2
    assert sink.calls()[-1]["type"] == "refusal"
    vault.close()


class _FailingBatch(SQLiteVault):
    """A vault whose batch fails as a dropped database does."""

    asked = 0

    def tokenize_many(self, *args: Any, **kwargs: Any) -> list[str]:
        self.asked += 1
        raise sqlite3.OperationalError("disk I/O error")

    def tokenize(self, *args: Any, **kwargs: Any) -> str:
        raise AssertionError("a failed batch must not be asked again value by value")


def test_a_failing_batch_refuses_the_call_and_is_asked_once(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    vault = _FailingBatch(tmp_path / "v.db", SecretKeyProvider(PG_ROOT))
    sink = InMemorySink()
    with pytest.raises(VaultError, match="could not issue a token") as caught:
        _guard(policy, vault, sink).protect(_message("three"), _context("acme"))
    assert vault.asked == 1
    assert "example.com" not in str(caught.value) and CARD not in str(caught.value)
    assert sink.calls()[-1]["type"] == "refusal"
    assert sink.calls()[-1]["error"] == "vault_error"
    assert "Check the vault" in str(caught.value)  # what to do
    logged = str(sink.events)
    assert not any(raw in logged for raw in ("maria.three@example.com", CARD, PHONE))
    vault.close()


def test_a_failing_batch_falls_open_where_the_policy_says_so(tmp_path: Path) -> None:
    policy = aiguard.Policy(
        destinations={
            "openai": aiguard.DestinationPolicy(
                base_url="https://api.openai.com/v1",
                approved=True,
                purposes=["inference"],
                fail_open=True,
            )
        }
    )
    vault = _FailingBatch(tmp_path / "v.db", SecretKeyProvider(PG_ROOT))
    sink = InMemorySink()
    protected = _guard(policy, vault, sink).protect(_message("four"), _context("acme"))
    assert vault.asked == 1
    assert "[REDACTED:email]" in protected.payload and CARD not in protected.payload
    assert any("fail_open" in reason for reason in sink.calls()[-1]["reasons"])
    logged = str(sink.events)
    assert not any(raw in logged for raw in ("maria.four@example.com", CARD, PHONE))


def test_a_batch_of_the_wrong_length_is_a_vault_error(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    class Short(SQLiteVault):
        def tokenize_many(self, *args: Any, **kwargs: Any) -> list[str]:
            return super().tokenize_many(*args, **kwargs)[:-1]

    vault = Short(tmp_path / "v.db", SecretKeyProvider(PG_ROOT))
    with pytest.raises(VaultError, match="could not issue a token"):
        _guard(policy, vault).protect(_message("five"), _context("acme"))
    vault.close()


class _Customer(BaseModel):
    email: Annotated[str, Classified(Level.SENSITIVE, "email")]
    phone: Annotated[str, Classified(Level.SENSITIVE, "phone")]
    note: str


def test_a_model_s_tagged_fields_are_issued_in_one_batch(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    vault = _sqlite_vault(tmp_path / "v.db")
    counts = _counting(vault)
    customer = _Customer(email="tagged.one@example.com", phone=PHONE, note="prefers e-mail")
    protected = _guard(policy, vault).protect(customer, _context("acme"))
    assert protected.payload["email"].startswith("[EMAIL_")
    assert protected.payload["phone"].startswith("[PHONE_")
    assert protected.payload["note"] == "prefers e-mail"
    assert counts == {"_s_find": 0, "_s_find_many": 1, "_s_issue": 0, "_s_issue_many": 1}
    vault.close()


def test_the_principal_owns_a_batch_without_a_subject(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    vault, alone = _twins(tmp_path, "acme")
    ctx = aiguard.CallContext(
        tenant="acme", purpose="inference", destination="openai", principal="svc-a"
    )
    batched = _guard(policy, vault).protect(_message("six"), ctx)
    single = _guard(policy, alone).protect(_message("six"), ctx)
    assert batched.payload == single.payload
    alone.close()
    other = aiguard.CallContext(
        tenant="acme", purpose="inference", destination="openai", principal="svc-b"
    )
    assert _guard(policy, vault).protect(_message("six"), other).payload != batched.payload
    vault.close()


_LOCAL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_VALUE = st.one_of(
    st.builds("{}@example.com".format, _LOCAL),
    st.builds("{}.{}@mail.example.org".format, _LOCAL, _LOCAL),
    st.sampled_from([CARD, PHONE, "4012 8888 8888 1881", "ACC-20417783", "ACC-55512345"]),
)
_FILLER = st.sampled_from([" ", ", ", " and ", "; call ", ". Reply to ", " or "])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(_VALUE, min_size=0, max_size=6), glue=st.lists(_FILLER, min_size=6))
def test_batched_and_single_tokens_agree(
    policy: aiguard.Policy, values: list[str], glue: list[str]
) -> None:
    """A text's tokens are those one value at a time gives, repeats and known values
    included, whatever the mix of kinds (the policy fixture is never changed)."""
    text = "Note" + "".join(g + v for g, v in zip(glue, values, strict=False)) + "."
    with tempfile.TemporaryDirectory() as folder:
        vault, alone = _twins(Path(folder), "acme")
        batched = _guard(policy, vault).protect(text, _context("acme"))
        again = _guard(policy, vault).protect(text, _context("acme"))
        single = _guard(policy, alone).protect(text, _context("acme"))
        vault.close()
        alone.close()
    assert batched.payload == single.payload == again.payload
    assert batched.tokens == single.tokens


def test_one_batch_per_message_through_the_openai_sdk(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    pytest.importorskip("openai")
    vault = _sqlite_vault(tmp_path / "v.db")
    counts = _counting(vault)
    guard = _guard(policy, vault)
    fake = FakeModel()
    client = openai_client(guard, fake)
    message = _message("sdk")
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        answer = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": message}]
        )
    assert counts["_s_issue_many"] == 1 and counts["_s_issue"] == 0
    sent = fake.requests[0].text
    assert "maria.sdk@example.com" not in sent and CARD not in sent
    assert answer.choices[0].message.content == f"Echo: {message}"
    vault.close()


# -- reading originals: one query per text, once per call ---------------------------------


def _earlier_tokens(guard: aiguard.Guard, tenant: str, tag: str) -> dict[str, str]:
    """Tokens an earlier call issued to cust-1 (an app that keeps tokenized transcripts,
    an agent's kept tool arguments): token -> original."""
    earlier = guard.protect(_message(tag), _context(tenant))
    return dict(earlier._issued or {})


def test_an_answer_s_earlier_tokens_are_read_in_one_query(
    policy: aiguard.Policy, stored_vault: KeyedVault
) -> None:
    tenant = f"read-{uuid.uuid4().hex}"
    stored_vault.restore_cache_ttl = 0  # every read goes to the database
    guard = _guard(policy, stored_vault)
    earlier = _earlier_tokens(guard, tenant, "earlier")
    now = guard.protect("Any news on my ticket?", _context(tenant))
    tokens = list(earlier)
    answer = f"On file: {', '.join(tokens)}. Again: {tokens[0]} and {tokens[1]}."
    counts = _counting(stored_vault)
    entries = _counting(stored_vault, READS)
    restored = guard.restore(answer, now)
    originals = list(earlier.values())
    assert restored == f"On file: {', '.join(originals)}. Again: {originals[0]} and {originals[1]}."
    assert entries == {"_s_entry": 0, "_s_entries": 1}
    assert counts["_s_issue"] == counts["_s_issue_many"] == 0


def test_a_token_a_responses_stream_states_five_times_is_read_once(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    """Deltas, `output_text.done`, `content_part.done`, `output_item.done` and
    `response.completed` each state the answer; the vault is asked once for its token."""
    pytest.importorskip("openai")
    vault = _sqlite_vault(tmp_path / "v.db")
    vault.restore_cache_ttl = 0
    guard = _guard(policy, vault)
    token, original = next(iter(_earlier_tokens(guard, "acme", "stream").items()))
    fake = FakeModel(reply=f"Your file says {token}, right?")
    client = openai_client(guard, fake)
    entries = _counting(vault, READS)
    with (
        guard.context(subject="cust-1", tenant="acme", purpose="inference"),
        client.responses.stream(model="gpt-4o", input="What is on file?") as events,
    ):
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        final = events.get_final_response().output_text
    assert deltas == final == f"Your file says {original}, right?"
    assert entries == {"_s_entry": 1, "_s_entries": 0}
    vault.close()


def test_a_request_s_own_tokens_are_read_in_one_query(
    policy: aiguard.Policy, stored_vault: KeyedVault
) -> None:
    """Token-shaped text a caller sends (its own tokens, kept from an earlier turn) is
    checked against the vault in one read; its own tokens go out as they are."""
    pytest.importorskip("openai")
    tenant = f"own-{uuid.uuid4().hex}"
    stored_vault.restore_cache_ttl = 0
    sink = InMemorySink()
    guard = _guard(policy, stored_vault, sink)
    earlier = _earlier_tokens(guard, tenant, "own")
    fake = FakeModel()
    client = openai_client(guard, fake)
    question = "Is this still right: " + " / ".join(earlier) + "?"
    entries = _counting(stored_vault, READS)
    with guard.context(subject="cust-1", tenant=tenant, purpose="inference"):
        answer = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": question}]
        )
    assert entries == {"_s_entry": 0, "_s_entries": 1}
    sent = fake.requests[0].text
    assert all(token in sent for token in earlier)
    assert not any(original in sent for original in earlier.values())
    restored = "Is this still right: " + " / ".join(earlier.values()) + "?"
    assert answer.choices[0].message.content == f"Echo: {restored}"
    assert "unknown_tokens" not in sink.calls()[-1]


class _UnreadableEntries(SQLiteVault):
    """Entries cannot be read (a dropped connection); tokens can still be issued."""

    def _s_entries(self, *args: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    def _s_entry(self, *args: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")


def test_an_answer_whose_tokens_cannot_be_read_is_not_returned(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    vault = _UnreadableEntries(tmp_path / "v.db", SecretKeyProvider(PG_ROOT))
    guard = _guard(policy, vault)
    earlier = _earlier_tokens(guard, "acme", "unreadable")
    now = guard.protect("Any news?", _context("acme"))
    with pytest.raises(VaultError, match="could not restore a token") as caught:
        guard.restore(" and ".join(earlier), now)
    assert not any(original in str(caught.value) for original in earlier.values())
    vault.close()


def test_a_request_whose_tokens_cannot_be_checked_sends_stand_ins(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    """The own-token check fails open to stand-ins, as one token at a time did: nothing
    raw goes out, and the call is not refused for it."""
    vault = _UnreadableEntries(tmp_path / "v.db", SecretKeyProvider(PG_ROOT))
    guard = _guard(policy, vault)
    earlier = _earlier_tokens(guard, "acme", "standin")
    protected = guard.protect("Still right: " + " / ".join(earlier), _context("acme"))
    assert not any(token in protected.payload for token in earlier)
    assert protected.payload.count("[TOKEN_LITERAL_") == len(earlier)
    vault.close()


_PIECE = st.sampled_from(["own", "other", "erased", "made_up", "text"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=st.lists(st.tuples(_PIECE, st.integers(0, 4)), max_size=12))
def test_batched_and_single_reads_restore_alike(
    policy: aiguard.Policy, pieces: list[tuple[str, int]]
) -> None:
    """Own, another subject's, an erased subject's and made-up tokens, repeated in any
    order: reading them in one query restores exactly what reading each alone does."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.db"
        vault = _sqlite_vault(path)
        vault.restore_cache_ttl = 0
        guard = _guard(policy, vault)
        own = list(_earlier_tokens(guard, "acme", "own"))
        other_ctx = aiguard.CallContext(
            subject="cust-2", tenant="acme", purpose="inference", destination="openai"
        )
        other = list(guard.protect(_message("other"), other_ctx)._issued or {})
        gone_ctx = aiguard.CallContext(
            subject="cust-3", tenant="acme", purpose="inference", destination="openai"
        )
        erased = list(guard.protect(_message("gone"), gone_ctx)._issued or {})
        vault.erase_subject("cust-3", marker=True)
        made_up = ["[EMAIL_0000000000000]", "[PHONE_ZZZZZZZZZZZZZ]", "[CARD_1234567890ABC]"]
        pools = {"own": own, "other": other, "erased": erased, "made_up": made_up}
        answer = " ".join(
            "plain words" if kind == "text" else pools[kind][n % len(pools[kind])]
            for kind, n in pieces
        )
        now = guard.protect("Any news?", _context("acme"))
        single = _OneAtATime(path, SecretKeyProvider(PG_ROOT))
        single.restore_cache_ttl = 0
        alone = _guard(policy, single).restore(answer, now)
        assert guard.restore(answer, now) == alone
        single.close()
        vault.close()


def test_an_object_s_keyed_values_are_issued_in_one_batch(
    policy: aiguard.Policy, tmp_path: Path
) -> None:
    """Values whose keys name their kind (a tool's arguments, a record) are issued
    together, and a string inside with values of its own still batches them."""
    vault = _sqlite_vault(tmp_path / "v.db")
    counts = _counting(vault)
    record = {
        "email": "keyed.one@example.com",
        "phone": "+49 30 901820 18",
        "ssn": "078-05-1120",
        "note": f"also keyed.two@example.com and {CARD}",
    }
    protected = _guard(policy, vault).protect(record, _context("acme"))
    assert all(str(protected.payload[k]).startswith("[") for k in ("email", "phone", "ssn"))
    assert "keyed.two@example.com" not in protected.payload["note"]
    assert CARD not in protected.payload["note"]
    assert counts == {"_s_find": 0, "_s_find_many": 2, "_s_issue": 0, "_s_issue_many": 2}
    vault.close()
