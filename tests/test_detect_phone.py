"""The fast phone validation agrees with phonenumbers.parse + is_valid_number."""

from __future__ import annotations

import contextlib
import re

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

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
    r"(?:(?:order|tracking|invoice|ref|reference|id|ticket|account|acct|po|sku|case|serial)"
    r"(?:[ \t]*(?:no\.?|number|num|nr\.?|#))?(?:[ \t]+(?:is|was|are))?[ \t]*[:#=]?[ \t]*"
    r"|#[ \t]?)\Z",
    re.IGNORECASE,
)
_LABEL_PIECES = [
    "order", "Tracking", "invoice", "ref", "REFERENCE", "id", "ticket", "account", "acct",
    "po", "sku", "case", "serial", "border", "no", "no.", "Number", "num", "nr", "nr.", "#",
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
