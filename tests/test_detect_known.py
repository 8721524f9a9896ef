# ruff: noqa: RUF001, RUF002
"""Known values (tagged fields passed as ``known=``) match however the text writes them."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from aiguard.classify import Classified, KnownValue, KnownValuesDetector, Level, detect
from aiguard.context import known_values

_FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}
_SEPARATORS = ["", " ", "-", ".", "/", " - ", "\u00a0", "\u2011", "\u200b"]


def _rewrite(compact: str, data: st.DataObject) -> str:
    """``compact`` written another way: groups, separators, case, width, invisible marks."""
    out = []
    i = 0
    while i < len(compact):
        size = data.draw(st.integers(1, 5))
        out.append(compact[i : i + size])
        i += size
    sep = data.draw(st.sampled_from(_SEPARATORS))
    text = sep.join(out)
    case = data.draw(st.sampled_from(["same", "upper", "lower"]))
    text = text.upper() if case == "upper" else text.lower() if case == "lower" else text
    if data.draw(st.booleans()):
        text = text.translate(_FULL_WIDTH)
    return text


@settings(max_examples=200, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=9, max_size=16),
    original_sep=st.sampled_from(["", "-", " ", "."]),
    data=st.data(),
)
def test_a_known_number_matches_in_any_grouping_and_width(
    digits: str, original_sep: str, data: st.DataObject
) -> None:
    """Tagged "536-22-8712" is found written "536228712", "５３６ ２２ ８７１２", ..."""
    tagged = original_sep.join((digits[:3], digits[3:5], digits[5:]))
    detector = KnownValuesDetector([KnownValue(tagged, "us_ssn", Level.REGULATED)])
    written = _rewrite(digits, data)
    text = f"the number {written} is on file"
    found = detector.detect(text)
    assert [(text[f.start : f.end], f.kind) for f in found] == [(written, "us_ssn")]


@settings(max_examples=100, deadline=None)
@given(
    local=st.text(alphabet="abcdefghijklmnopqrstuvwxyzéñü", min_size=2, max_size=10),
    data=st.data(),
)
def test_a_known_email_matches_in_any_case_and_unicode_form(
    local: str, data: st.DataObject
) -> None:
    """Case, NFC/NFD/NFKC and full width do not hide a known address."""
    email = f"{local}@example.com"
    detector = KnownValuesDetector([KnownValue(email, "email", Level.SENSITIVE)])
    form = data.draw(st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"]))
    written = unicodedata.normalize(form, email)
    if data.draw(st.booleans()):
        written = written.upper()
    text = f"write to {written}."
    found = detector.detect(text)
    assert [(text[f.start : f.end], f.kind) for f in found] == [(written, "email")]


def test_a_known_value_is_not_found_inside_a_longer_number() -> None:
    detector = KnownValuesDetector([KnownValue("536-22-8712", "us_ssn", Level.REGULATED)])
    assert detector.detect("ref 1536228712 and 5362287120") == []


def test_phone_forms_of_a_known_number() -> None:
    """With or without country code or trunk prefix, in national or international format."""
    detector = KnownValuesDetector([KnownValue("+49 30 901820", "phone", Level.SENSITIVE)])
    for written in ("030 901820", "030/901820", "+49 (30) 901820", "0049 30 901820", "30901820"):
        text = f"ruf an: {written} bitte"
        found = detector.detect(text)
        assert len(found) == 1, written
        assert text[found[0].start : found[0].end].endswith("901820")


def test_date_of_birth_forms_of_a_known_date() -> None:
    detector = KnownValuesDetector([KnownValue("1985-03-12", "date_of_birth", Level.SENSITIVE)])
    for written in ("12/03/1985", "03/12/1985", "12.3.1985", "March 12, 1985", "12 Mar 1985"):
        text = f"born {written}"
        assert [text[f.start : f.end] for f in detector.detect(text)] == [written]


class _Applicant(BaseModel):
    ssn: Annotated[str, Classified(Level.REGULATED, "us_ssn")]


def test_a_tagged_field_matches_in_another_form() -> None:
    """Issue 20: tagged ssn "536-22-8712" must not leak when the prompt writes 536228712.

    The pipeline builds its known-values detector from ``known=`` objects this way.
    """
    detector = KnownValuesDetector(known_values([_Applicant(ssn="536-22-8712")]))
    for written in ("536228712", "536 22 8712", "536.22.8712", "５３６２２８７１２"):
        text = f"applicant {written} asks"
        found = detect(text, detectors=[detector])
        assert [(text[f.start : f.end], f.kind) for f in found] == [(written, "us_ssn")]


def test_known_takes_one_object_as_well_as_a_list() -> None:
    """``known=customer`` (one model) is a list of one: a model iterates as (name, value)."""
    import pytest

    import aiguard

    class Customer(BaseModel):
        ssn: Annotated[str, Classified(Level.REGULATED, "us_ssn")]

    customer = Customer(ssn="536-22-8712")
    assert known_values(customer) == known_values([customer])
    guard = aiguard.Guard(
        aiguard.policy.parse_policy(
            '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
            'purposes = ["inference"]\n'
        )
    )
    with guard.context(subject="c", purpose="inference", known=customer):  # type: ignore[arg-type]
        assert "536228712" not in guard.protect("ssn 536228712", destination="openai").payload
    with pytest.raises(TypeError, match="not a string"):
        known_values("536-22-8712")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not dict"):
        known_values([{"ssn": "536-22-8712"}])  # type: ignore[list-item]
