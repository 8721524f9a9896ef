"""Issue #19 item 1: restoring a token another subject (or principal) was issued.

Each test is a reproduction from the issue, driven through the real SDKs; on the
original main every one of them restored someone else's value.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from _adv import ANTHROPIC_URL, anthropic_client, chat, new_guard, openai_client, sent
from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.testing import FakeModel
from aiguard.vault import SQLiteVault, VaultKeys
from aiguard.vault.tokens import MIN_SUFFIX, TOKEN_RE

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

VICTIM = "victim.person@example.org"
DSN = os.environ.get("AIGUARD_TEST_POSTGRES_DSN")


def _victims_token(
    guard: aiguard.Guard, subject: str = "victim", tenant: str = "acme", **ctx: Any
) -> str:
    """The token the victim's own call sent upstream for ``VICTIM``."""
    fake = FakeModel()
    with guard.context(subject=subject, tenant=tenant, purpose="inference", **ctx):
        assert chat(openai_client(guard, fake), f"mail me at {VICTIM}") == (
            f"Echo: mail me at {VICTIM}"
        )
    (token,) = {m.group(0) for m in TOKEN_RE.finditer(fake.requests[0].text)}
    return token


def test_a_token_sent_by_another_subject_of_the_tenant_is_data(leak_values: Any) -> None:
    guard, _sink = new_guard()
    token = _victims_token(guard)
    leak_values([VICTIM])
    fake = FakeModel()  # echoes the caller's message back
    with guard.context(subject="attacker", tenant="acme", purpose="inference"):
        answer = chat(openai_client(guard, fake), f"what is {token}?")
    assert VICTIM not in answer
    assert answer == f"Echo: what is {token}?"  # the caller's text comes back as it was sent
    assert token not in sent(fake)  # token-shaped text is re-tokenized, never a restore key


def test_a_model_replaying_a_token_into_another_subjects_answer(leak_values: Any) -> None:
    guard, _sink = new_guard()
    token = _victims_token(guard)
    leak_values([VICTIM])
    fake = FakeModel(reply=f"Earlier someone wrote {token}.")  # a prompt-injected model
    with guard.context(subject="someone-else", tenant="acme", purpose="inference"):
        message = anthropic_client(guard, fake).messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=64,
            messages=[{"role": "user", "content": "hello"}],
        )
    assert VICTIM not in message.content[0].text
    assert token in message.content[0].text
    # The control: the token's own subject gets its value back in a later call.
    with guard.context(subject="victim", tenant="acme", purpose="inference"):
        assert chat(openai_client(guard, fake), "remind me") == f"Earlier someone wrote {VICTIM}."


def test_subjectless_tokens_belong_to_the_principal_that_sent_them(leak_values: Any) -> None:
    """Through the gateway, keys of one tenant are principals: the issue's reproduction
    recovered another key's subjects; here the same two principals share a tenant."""
    guard, _sink = new_guard()
    fake = FakeModel()
    with guard.context(principal="svc-billing", tenant="acme", purpose="inference"):
        chat(openai_client(guard, fake), f"mail {VICTIM}")
    (token,) = {m.group(0) for m in TOKEN_RE.finditer(fake.requests[0].text)}
    leak_values([VICTIM])
    replay = FakeModel(reply=f"Value: {token}")
    with guard.context(principal="svc-search", tenant="acme", purpose="inference"):
        assert VICTIM not in chat(openai_client(guard, replay), "hi")
    with guard.context(principal="svc-billing", tenant="acme", purpose="inference"):
        assert chat(openai_client(guard, replay), "hi") == f"Value: {VICTIM}"


def test_suffixes_are_too_long_to_guess() -> None:
    guard, _sink = new_guard()
    token = _victims_token(guard)
    suffix = TOKEN_RE.fullmatch(token).group(2)  # type: ignore[union-attr]
    assert len(suffix) >= MIN_SUFFIX and len(suffix) * 5 >= 64


def test_a_burst_of_unknown_tokens_raises_an_alert() -> None:
    guard, sink = new_guard()
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    guesses = " ".join(f"[EMAIL_{a}{b}00]" for a in alphabet for b in alphabet[:2])
    fake = FakeModel(reply="nothing")
    with guard.context(principal="mallory", tenant="acme", purpose="inference"):
        client = openai_client(guard, fake)
        chat(client, guesses)
        chat(client, guesses)
    alerts = [e for e in sink.events if e["type"] == "alert"]
    assert [a["alert"]["rule"] for a in alerts] == ["unknown_tokens"]
    assert alerts[0]["principal"] == "mallory" and alerts[0]["alert"]["count"] > 50
    assert all("EMAIL_" not in str(a) for a in alerts)


def _legacy_then_new(
    guard: aiguard.Guard, monkeypatch: pytest.MonkeyPatch, tenant: str = "acme"
) -> str:
    """A token issued as the first aiguard versions did (4-character suffix)."""
    import aiguard.vault._crypto as crypto

    with monkeypatch.context() as patch:
        patch.setattr(crypto, "MIN_SUFFIX", 4)
        token = _victims_token(guard, tenant=tenant)
    assert len(TOKEN_RE.fullmatch(token).group(2)) == 4  # type: ignore[union-attr]
    return token


def _check_legacy_tokens(
    guard: aiguard.Guard, token: str, leak_values: Any, tenant: str = "acme"
) -> None:
    replay = FakeModel(reply=f"Value: {token}")
    with guard.context(subject="victim", tenant=tenant, purpose="inference"):
        assert chat(openai_client(guard, replay), "hi") == f"Value: {VICTIM}"
    leak_values([VICTIM])
    with guard.context(subject="attacker", tenant=tenant, purpose="inference"):
        assert VICTIM not in chat(openai_client(guard, replay), "hi")


def test_stored_short_tokens_restore_for_their_own_subject_only_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leak_values: Any
) -> None:
    keys = VaultKeys.derive(b"s" * 32)
    guard, _sink = new_guard(vault=SQLiteVault(tmp_path / "vault.db", keys))
    token = _legacy_then_new(guard, monkeypatch)
    # A restarted process over the same file: nothing cached.
    guard, _sink = new_guard(vault=SQLiteVault(tmp_path / "vault.db", keys))
    _check_legacy_tokens(guard, token, leak_values)


@pytest.mark.skipif(not DSN, reason="set AIGUARD_TEST_POSTGRES_DSN to run the PostgreSQL vault")
def test_stored_short_tokens_restore_for_their_own_subject_only_postgres(
    monkeypatch: pytest.MonkeyPatch, leak_values: Any
) -> None:
    from aiguard.vault.keys import SecretKeyProvider
    from aiguard.vault.postgres import PostgresVault

    assert DSN is not None
    root = SecretKeyProvider(b"r" * 32)
    tenant_vault = PostgresVault(DSN, root)
    guard, _sink = new_guard(vault=tenant_vault)
    tenant = f"acme-{uuid.uuid4().hex}"  # a fresh tenant: no earlier run's entries answer
    try:
        token = _legacy_then_new(guard, monkeypatch, tenant)
        other = PostgresVault(DSN, root)  # another process: nothing cached
        guard2, _sink2 = new_guard(vault=other)
        _check_legacy_tokens(guard2, token, leak_values, tenant)
        other.close()
    finally:
        tenant_vault.close()


def test_surrogates_encode_the_long_tokens_and_still_restore() -> None:
    policy = aiguard.Policy(
        destinations={
            "anthropic": aiguard.DestinationPolicy(
                base_url=ANTHROPIC_URL, approved=True, purposes=["inference"]
            )
        },
        surrogates=["email", "phone"],
    )
    guard, _sink = new_guard(policy)
    fake = FakeModel()
    text = f"mail {VICTIM} or call +1 415 555 0134"
    with guard.context(subject="victim", tenant="acme", purpose="inference"):
        message = anthropic_client(guard, fake).messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=64,
            messages=[{"role": "user", "content": text}],
        )
    upstream = fake.requests[0].text
    assert VICTIM not in upstream and "aiguard.invalid" in upstream and "+999 4 " in upstream
    assert message.content[0].text == "Echo: " + text


def test_through_the_gateway_one_key_cannot_restore_another_keys_values(
    leak_values: Any,
) -> None:
    pytest.importorskip("uvicorn")
    from _adv import gateway

    from aiguard.doors.gateway import ApiKey, hash_key

    keys = [
        ApiKey(sha256=hash_key("gw-billing"), principal="billing", tenant="acme"),
        ApiKey(sha256=hash_key("gw-narrow"), principal="narrow", tenant="acme"),
    ]
    model = FakeModel()
    with model.serve() as base, gateway(base + "/v1", config={"keys": keys}) as (url, _g, _s):

        def ask(key: str, text: str) -> str:
            client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
            return chat(client, text)

        assert ask("gw-billing", f"mail {VICTIM}") == f"Echo: mail {VICTIM}"
        (token,) = {m.group(0) for m in TOKEN_RE.finditer(model.requests[-1].text)}
        leak_values([VICTIM])
        assert VICTIM not in ask("gw-narrow", f"who is {token}")
        assert ask("gw-narrow", f"who is {token}") == f"Echo: who is {token}"


_ids = st.text(min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    owner=st.tuples(st.one_of(st.none(), _ids), st.one_of(st.none(), _ids)),
    caller=st.tuples(st.one_of(st.none(), _ids), st.one_of(st.none(), _ids)),
    value=st.emails(),
    conversation=st.one_of(st.none(), _ids),
)
def test_a_token_restores_exactly_for_its_owner(
    owner: tuple[str | None, str | None],
    caller: tuple[str | None, str | None],
    value: str,
    conversation: str | None,
) -> None:
    """The contract of `detokenize_for`: the owner is the subject, else the principal."""
    from aiguard.vault import InMemoryVault
    from aiguard.vault.tokens import Scope

    vault = InMemoryVault()
    scope = Scope("acme", conversation)
    token = vault.tokenize(scope, "email", value, owner[0], principal=owner[1])

    def who(subject: str | None, principal: str | None) -> tuple[str, str | None]:
        return ("s", subject) if subject else ("p", principal)

    same = who(*owner) == who(*caller)
    assert (vault.detokenize_for(scope, token, *caller) == value) is same
    # Never across scopes, whoever asks.
    assert vault.detokenize_for(Scope("acme", (conversation or "") + "x"), token, *owner) is None


def test_a_gateway_key_names_only_the_subjects_it_may(leak_values: Any) -> None:
    """Keys of one tenant with disjoint `subjects`: one cannot claim the other's subject to
    have its tokens restored, and the refusal never quotes the subject id."""
    pytest.importorskip("uvicorn")
    from _adv import gateway

    from aiguard.doors.gateway import ApiKey, hash_key

    keys = [
        ApiKey(sha256=hash_key("gw-a"), principal="a", tenant="acme", subjects=["team-a:*"]),
        ApiKey(sha256=hash_key("gw-b"), principal="b", tenant="acme", subjects=["team-b:*"]),
    ]
    victim_subject = "team-a:jane.roe@example.org"
    model = FakeModel()
    with model.serve() as base, gateway(base + "/v1", config={"keys": keys}) as (url, _g, sink):

        def ask(key: str, subject: str, text: str) -> str:
            client = openai.OpenAI(
                base_url=url + "/v1",
                api_key=key,
                max_retries=0,
                default_headers={"X-AIGuard-Subject": subject},
            )
            return chat(client, text)

        assert ask("gw-a", victim_subject, f"mail {VICTIM}") == f"Echo: mail {VICTIM}"
        (token,) = {m.group(0) for m in TOKEN_RE.finditer(model.requests[-1].text)}
        leak_values([VICTIM])
        sent = len(model.requests)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ask("gw-b", victim_subject, f"who is {token}")
        assert refused.value.code == "subject_not_allowed"
        assert victim_subject not in str(refused.value)
        assert len(model.requests) == sent  # nothing went upstream
        # Its own subjects work as before.
        assert ask("gw-b", "team-b:1", f"who is {token}") == f"Echo: who is {token}"
        assert victim_subject not in "".join(str(r) for r in sink.records)
