"""Surrogates: tokens in the shape of their values, reversible, in reserved namespaces."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from aiguard.classify.detectors import luhn_valid
from aiguard.vault.surrogates import (
    SURROGATE_RE,
    from_surrogate,
    restore_surrogates,
    to_surrogate,
)
from aiguard.vault.tokens import SUFFIX_ALPHABET

suffixes = st.sampled_from([4, 6, 8]).flatmap(
    lambda n: st.text(alphabet=SUFFIX_ALPHABET, min_size=n, max_size=n)
)
labels = st.sampled_from(["EMAIL", "PHONE", "CREDIT_CARD"])


@given(labels, suffixes)
def test_every_encodable_token_round_trips(label: str, suffix: str) -> None:
    token = f"[{label}_{suffix}]"
    surrogate = to_surrogate(token)
    assert surrogate is not None
    match = SURROGATE_RE.fullmatch(surrogate)
    assert match is not None, surrogate
    assert from_surrogate(match) == token


@given(suffixes)
def test_shapes_are_real_and_reserved(suffix: str) -> None:
    email = to_surrogate(f"[EMAIL_{suffix}]")
    assert email is not None and email.endswith("@aiguard.invalid")
    phone = to_surrogate(f"[PHONE_{suffix}]")
    assert phone is not None and phone.startswith("+999 ")
    card = to_surrogate(f"[CREDIT_CARD_{suffix}]")
    assert card is not None
    digits = re.sub(r"\D", "", card)
    assert digits.startswith("4000") and 13 <= len(digits) <= 19 and luhn_valid(digits)


def test_other_kinds_and_long_suffixes_stay_placeholders() -> None:
    assert to_surrogate("[PERSON_7Q2K]") is None
    assert to_surrogate("[EMAIL_" + "A" * 10 + "]") is None
    assert to_surrogate("not a token") is None


@given(st.text(max_size=30), labels, suffixes, st.text(max_size=30))
def test_only_the_callers_tokens_are_restored(
    before: str, label: str, suffix: str, after: str
) -> None:
    token = f"[{label}_{suffix}]"
    surrogate = to_surrogate(token)
    assert surrogate is not None
    text = f"{before} {surrogate} {after}"
    known = {token: "the original"}
    restored = restore_surrogates(text, known.get)
    assert "the original" in restored
    assert restore_surrogates(text, {}.get) == text


def test_a_surrogate_shape_with_a_bad_check_digit_is_left_alone() -> None:
    card = to_surrogate("[CREDIT_CARD_7Q2K]")
    assert card is not None
    broken = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert restore_surrogates(f"pay {broken}", lambda t: "X") == f"pay {broken}"


POLICY = """
surrogates = ["email", "phone", "credit_card"]
[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference"]
"""

RAW = ["jane.roe@example.com", "4111 1111 1111 1111", "+1 415 555 0134"]
MESSAGE = f"mail {RAW[0]}, card {RAW[1]}, phone {RAW[2]}."


def _guard() -> object:
    import aiguard
    from aiguard.policy import parse_policy

    return aiguard.Guard(parse_policy(POLICY))


class TestThroughTheSDK:
    def test_model_sees_realistic_shapes_and_the_caller_gets_originals(self) -> None:
        import pytest

        openai = pytest.importorskip("openai")
        from aiguard.testing import FakeModel, assert_no_raw_values

        guard = _guard()
        for stream in (False, True):
            fake = FakeModel(chunk_size=3)
            client = openai.OpenAI(
                http_client=guard.http_client(transport=fake.transport),  # type: ignore[attr-defined]
                base_url="https://api.openai.com/v1",
                api_key="k",
                max_retries=0,
            )
            with guard.context(subject="s", tenant="acme", purpose="inference"):  # type: ignore[attr-defined]
                if stream:
                    chunks = client.chat.completions.create(
                        model="gpt-4o",
                        messages=[{"role": "user", "content": MESSAGE}],
                        stream=True,
                    )
                    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                else:
                    reply = client.chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": MESSAGE}]
                    )
                    text = reply.choices[0].message.content
            sent = fake.bodies[0]["messages"][0]["content"]
            assert_no_raw_values(fake, RAW)
            assert "@aiguard.invalid" in sent and "+999 " in sent and " 4000" in sent
            assert "[EMAIL_" not in sent
            assert text == "Echo: " + MESSAGE

    def test_direct_protect_and_restore(self) -> None:
        import aiguard

        guard = _guard()
        ctx = aiguard.CallContext(subject="s", purpose="inference", destination="openai")
        protected = guard.protect(MESSAGE, ctx)  # type: ignore[attr-defined]
        assert all(value not in protected.payload for value in RAW)
        assert guard.restore(protected.payload, protected) == MESSAGE  # type: ignore[attr-defined]
