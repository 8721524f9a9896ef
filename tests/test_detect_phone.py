"""Phone numbers: the fast validation agrees with phonenumbers.parse + is_valid_number,
and the written forms around a number decide whether it is one."""

from __future__ import annotations

import contextlib
import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiguard import detect
from aiguard.classify import EVIDENCE_SCORE
from aiguard.classify._validators import valid_phone

_REGIONS = ("US", "CA", "GB", "DE", "AT", "CH", "FR", "BE", "ES", "IT", "NL", "IN")


@st.composite
def _numbers(draw: st.DrawFn) -> tuple[str, str, bool]:
    region = draw(st.sampled_from(_REGIONS))
    kind = draw(
        st.sampled_from(
            [phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE]
        )
    )
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
    digits = "".join(c for c in national if c.isdigit())
    if draw(st.booleans()):  # near a real number: the last digits changed, or cut
        k = draw(st.integers(0, 5))
        digits = digits[: len(digits) - k] + draw(st.text("0123456789", min_size=k, max_size=k))
    else:
        digits = draw(st.text("0123456789", min_size=6, max_size=14))
    plus = draw(st.booleans())
    if plus and draw(st.booleans()):
        digits = str(phonenumbers.country_code_for_region(region)) + digits.lstrip("0")
    elif not plus and draw(st.integers(0, 4)) == 0:
        digits = draw(st.sampled_from(["00", "011", "0049", "0033", "44"])) + digits
    return region, digits, plus


@settings(max_examples=1500, deadline=None)
@given(_numbers())
def test_fast_phone_validation_agrees_with_parse(sample: tuple[str, str, bool]) -> None:
    region, digits, plus = sample
    try:
        expected = phonenumbers.is_valid_number(
            phonenumbers.parse("+" + digits if plus else digits, None if plus else region)
        )
    except phonenumbers.NumberParseException:
        expected = False
    assert valid_phone(digits, plus, None if plus else region) == expected


@settings(max_examples=1000, deadline=None)
@given(
    country=st.sampled_from(
        ["DE", "GB", "FR", "BE", "ES", "NL", "IT", "AT", "CH", "PL", "XX", "de"]
    ),
    body=st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=8, max_size=30),
    fix=st.booleans(),
)
def test_iban_check_agrees_with_stdnum(country: str, body: str, fix: bool) -> None:
    """The registry lookup is cached; the answer is python-stdnum's (no national check)."""
    from stdnum import iban

    from aiguard.classify._validators import iban_valid

    value = country + "00" + body
    if fix and country.isupper() and country != "XX":
        with contextlib.suppress(Exception):  # stdnum raises for malformed input
            value = country + iban.calc_check_digits(value) + body
    assert iban_valid(value) == bool(iban.is_valid(value, check_country=False))


# The id-label rule as first written: a search ending where the number starts.
_ID_LABEL_FORWARDS = re.compile(
    r"(?:(?:order|tracking|invoice|ref|reference|id|ticket|account|acct|po|sku|case|serial"
    r"|license|licence|passport)"
    r"(?:[ \t]*(?:no\.?|number|num|nr\.?|#))?(?:[ \t]+(?:is|was|are))?[ \t]*[:#=]?[ \t]*"
    r"|#[ \t]?)\Z",
    re.IGNORECASE,
)
_LABEL_PIECES = [
    "order", "Tracking", "invoice", "ref", "REFERENCE", "id", "ticket", "account", "acct",
    "po", "sku", "case", "serial", "border", "no", "no.", "Number", "num", "nr", "nr.", "#",
    "license", "Licence", "passport", "driver's ",
    "is", "was", "are", " ", "  ", "\t", ":", "=", "call", "phone", "x", "1",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_LABEL_PIECES), max_size=8).map("".join))
def test_the_backwards_id_label_rule_agrees_with_the_forward_search(before: str) -> None:
    """Reading the text before a number backwards finds a label exactly when the forward
    pattern, searched in the 24 characters before the number, does."""
    from aiguard.classify._engine import _after_id_label

    text = before + "5551363"
    start = len(before)
    forwards = _ID_LABEL_FORWARDS.search(text, max(0, start - 24), start) is not None
    assert _after_id_label(text, start) == forwards


# -- evidence: a phone word makes a phone-shaped number a phone number ------------------


def _phones(text: str) -> list[tuple[str, float]]:
    from aiguard import detect

    return [(text[f.start : f.end], f.score) for f in detect(text) if f.kind == "phone"]


@settings(max_examples=200, deadline=None)
@given(
    word=st.sampled_from(["call me at", "Phone:", "tel", "mobile", "cell", "whatsapp", "fax"]),
    area=st.integers(10, 99),
    first=st.integers(100, 999),
    last=st.integers(100, 9999),
)
def test_a_phone_shaped_number_after_a_phone_word_is_protected(
    word: str, area: int, first: int, last: int
) -> None:
    """Whether or not a numbering plan has it (a typo, a made-up number), with a lower
    score when none does; never below MIN_SCORE."""
    from aiguard.classify import EVIDENCE_SCORE

    number = f"({area}) {first}-{last}"
    text = f"please {word} {number} today"
    found = _phones(text)
    assert [value for value, _score in found] == [number] or [v for v, _ in found] == [
        number[1:]
    ], (text, found)
    assert all(score >= EVIDENCE_SCORE for _value, score in found)


def test_weak_words_id_labels_and_other_sentences_are_not_evidence() -> None:
    """96 627 277 is valid in no numbering plan the default packs know: only evidence can
    make it a phone number, and these contexts are not evidence."""
    assert _phones("call 96 627 277") == [("96 627 277", 0.6)]
    for text in (
        "order number 96 627 277 shipped",  # "number": not evidence on its own
        "text 96 627 277 to confirm",
        "call about order #96 627 277",  # an id label wins
        "Call us. 96 627 277 units were sold",  # another sentence
        "call 2024-01-05 10:30",  # a date
        "call 123-45-6789",  # the SSN shape
        # A valid number, but a license's (Presidio's evaluation data writes these).
        "my driver's license number is 2270-66-1551",
        "passport 2270-66-1551",
    ):
        assert _phones(text) == [], text


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        # An extension written straight on: the number is checked without it, and the
        # finding covers both.
        ("Desk: (415) 555-2671x204", "(415) 555-2671x204", "phone"),
        ("Fax: 415-555-2671ext12.", "415-555-2671ext12", "phone"),
        # A line's label glued on with a hyphen, or after the number.
        ("020 7946 0958-Fax", "020 7946 0958", "phone"),
        ("Zurich\n020 7946 0958 office\nnext", "020 7946 0958", "phone"),
        ("4155552671 (mobile), and", "4155552671", "phone"),
        # "+41 (0)44": the bracketed trunk 0 is not dialled from abroad.
        ("Tel +41 (0)44 668 18 00", "+41 (0)44 668 18 00", "phone"),
        ("Desk: +44 20 7946 0958", "+44 20 7946 0958", "phone"),
        # "cc" names a card: a 12-digit Maestro number after it is one.
        ("cc 675900000018 thanks", "675900000018", "credit_card"),
    ],
)
def test_written_forms_of_signatures_and_address_blocks(text: str, value: str, kind: str) -> None:
    assert [(text[f.start : f.end], f.kind) for f in detect(text)] == [(value, kind)]


def test_a_label_after_a_number_in_prose_is_not_evidence() -> None:
    """After the number, a phone word is evidence only where the number starts its own
    line or item; mid-sentence, or followed by more words, it is prose."""
    for text in (
        "the office 2024-2025 fax",
        "see room 96 627 277 office hours",
        "order 12345678-Office",
        "ISBN 978-3-16-148410-0 home",
        "call 123x4567",  # too few digits before the "x" to be a number with extension
    ):
        assert _phones(text) == [], text
    assert _phones("Zurich\n96 627 277 office\n") == [("96 627 277", EVIDENCE_SCORE)]
