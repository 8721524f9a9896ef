"""The output rule reads an answer with the random part of each token blanked (its
digits and letters would start runs the detectors try, and a finding on a token is
never withheld): a token reads as its kind. It withholds what a read of every character
does, and more only where a token's digits stood between a label and its value."""

from __future__ import annotations

import random
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from _matrix import value_case
from aiguard.context import CallContext
from aiguard.pipeline import call as call_module
from aiguard.pipeline.call import Call

_GUARD = aiguard.Guard()
# Ids of digits and letters that spell no label word ("TEL", "DOB", "SSN" could, by
# chance, in a real id: blanked, such an accidental label no longer counts).
_TOKEN_ID = st.from_regex(r"[0-9V-Z]{13}", fullmatch=True)
_KIND = st.sampled_from(["EMAIL", "CREDIT_CARD", "US_SSN", "PHONE", "ACCOUNT", "MRN"])


def _withheld(text: str, *, blank: bool) -> list[tuple[int, int, str]]:
    call = Call(_GUARD, CallContext(), None)
    if blank:
        return call.withheld(text)
    with mock.patch.object(call_module, "_blank_ids", lambda text, marks: text):
        return call.withheld(text)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    tokens=st.lists(st.tuples(_KIND, _TOKEN_ID), min_size=1, max_size=3),
    places=st.lists(st.sampled_from(["start", "end", "inside"]), min_size=3, max_size=3),
    pseudonym=st.booleans(),
)
def test_blanked_token_ids_withhold_what_a_full_read_does(
    seed: int, tokens: list[tuple[str, str]], places: list[str], pseudonym: bool
) -> None:
    text = value_case(random.Random(seed)).text
    for (kind, token_id), place in zip(tokens, places, strict=False):
        token = f"[{kind}_{token_id}]"
        if place == "start":
            text = f"{token} {text}"
        elif place == "end":
            text = f"{text} {token}."
        else:
            middle = text.find(" ", len(text) // 2)
            text = f"{text[:middle]} {token}{text[middle:]}" if middle != -1 else text
    if pseudonym:
        text += " and [NAME~3f9a0b1c2d3e] [REDACTED:us_ssn]"
    blanked, full = _withheld(text, blank=True), _withheld(text, blank=False)
    if blanked == full:
        return
    # Every span a full read withholds is withheld (its kind may follow the token's
    # kind, "[US_SSN_…] 997 88 3671" an SSN rather than an ITIN); a span more only
    # where a token's digits kept a label from the value after the token.
    assert {span[:2] for span in full} <= {span[:2] for span in blanked}, text
    for start, _end, _kind in blanked:
        if (start, _end) not in {span[:2] for span in full}:
            assert "[" in text[max(0, start - 60) : start], text


def test_a_token_reads_as_its_kind_between_a_label_and_its_value() -> None:
    """Read whole, the token's digits stood between "SSN" and the number after it, and a
    label names only the first value after it: the number went out. Blanked, the token
    reads as its kind, and the label reaches the number."""
    text = "on file: SSN [US_SSN_8F3K2M9Q1XZ4P] 219099998"
    assert _withheld(text, blank=False) == []
    assert [text[s:e] for s, e, _ in _withheld(text, blank=True)] == ["219099998"]
