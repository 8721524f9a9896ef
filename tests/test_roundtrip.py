"""Protect then restore gives back any text, with values embedded anywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.classify import detect
from aiguard.vault import Scope

VALUES = [
    "jane.roe@example.com",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "123-45-6780",
    "+1 415 555 0134",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "A1b2C3d4" * 4 + "zzzz",
    "192.168.10.20",
    "ACC-87654321",
]

# Filler text that cannot glue onto a value and change what it is.
filler = st.text(alphabet=st.sampled_from(list("abcdefghij klmnop,.!?;\n\tÄé中")), max_size=40).map(
    lambda s: " " + s + " "
)


def guard() -> aiguard.Guard:
    policy = aiguard.policy.parse_policy(
        '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
        'purposes = ["inference"]\n[[patterns]]\nkind = "account"\nlevel = "sensitive"\n'
        'regex = "ACC-[0-9]{8}"\n'
    )
    return aiguard.Guard(policy)


GUARD = guard()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(filler, st.sampled_from(VALUES)), max_size=6), filler)
def test_protect_then_restore_is_identity(parts: list[tuple[str, str]], tail: str) -> None:
    text = "".join(a + b for a, b in parts) + tail
    ctx = aiguard.CallContext(
        subject="s1", tenant="acme", purpose="inference", destination="openai"
    )
    protected = GUARD.protect(text, ctx)
    for _, value in parts:
        assert value not in protected.payload
    assert GUARD.restore(protected.payload, protected) == text


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(VALUES), min_size=1, max_size=5), st.text(max_size=30))
def test_json_payloads_round_trip(values: list[str], noise: str) -> None:
    payload = {
        "messages": [{"role": "user", "content": f"{v} {noise}"} for v in values],
        "metadata": {"note": values[0]},
        "model": "gpt-4o",
    }
    ctx = aiguard.CallContext(
        subject="s1", tenant="acme", purpose="inference", destination="openai"
    )
    protected = GUARD.protect(payload, ctx)
    assert protected.payload["model"] == "gpt-4o"
    flat = str(protected.payload)
    for value in values:
        assert value not in flat or value in noise
    assert GUARD.restore(protected.payload, protected) == payload


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=60), st.sampled_from(["email", "person", "account", "x_y"]))
def test_vault_round_trip_and_determinism(value: str, kind: str) -> None:
    vault = aiguard.InMemoryVault()
    scope = Scope("acme", "conv-1")
    token = vault.tokenize(scope, kind, value, "subj")
    assert vault.tokenize(scope, kind, value, "subj") == token
    assert vault.detokenize(scope, token) == value
    assert vault.detokenize(Scope("acme", "conv-2"), token) is None
    assert vault.detokenize(Scope("globex", "conv-1"), token) is None
    assert aiguard.vault.TOKEN_RE.fullmatch(token)


def test_distinct_values_never_share_a_token() -> None:
    vault = aiguard.InMemoryVault()
    scope = Scope("acme")
    tokens = {vault.tokenize(scope, "email", f"user{i}@example.com") for i in range(5000)}
    assert len(tokens) == 5000


def test_detect_finds_each_sample_kind() -> None:
    kinds = {f.kind for f in detect(" ".join(VALUES[:-1]))}
    assert {
        "email",
        "credit_card",
        "us_ssn",
        "phone",
        "aws_access_key",
        "github_token",
        "ip_address",
    } <= kinds


def test_protected_repr_has_no_originals() -> None:
    ctx = aiguard.CallContext(
        subject="s1", tenant="acme", purpose="inference", destination="openai"
    )
    protected = GUARD.protect("mail jane.roe@example.com", ctx)
    assert "jane.roe" not in repr(protected)
