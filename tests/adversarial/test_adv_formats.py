"""Issue 19, item 5: formats from real data that detection missed on main.

Each test is one reproduction, written as the data was; the classes they belong to
are covered by the context matrix (tests/test_detect_context.py).
"""

from __future__ import annotations

import unicodedata

import pytest

from aiguard import detect


def _found(text: str) -> list[tuple[str, str]]:
    return [(text[f.start : f.end], f.kind) for f in detect(text)]


@pytest.mark.parametrize(
    "text",
    ["mailto:jane.doe@example.com", "email:jane.doe@example.com", "users/jane.doe@example.com"],
)
def test_email_after_a_scheme_label_or_path(text: str) -> None:
    """`mailto:`, `email:` and `users/` before an address do not hide it."""
    assert _found(text) == [("jane.doe@example.com", "email")]


@pytest.mark.parametrize("part", ["local", "domain", "both"])
def test_nfd_decomposed_email_is_found_whole(part: str) -> None:
    """An address with decomposed accents is one finding covering every mark."""
    local, domain = "josé.núñez", "café-münchen.de"
    if part in ("local", "both"):
        local = unicodedata.normalize("NFD", local)
    if part in ("domain", "both"):
        domain = unicodedata.normalize("NFD", domain)
    email = f"{local}@{domain}"
    text = f"write to {email} today"
    assert _found(text) == [(email, "email")]


def test_french_dotted_phone() -> None:
    """`01.42.68.53.00` is how French numbers are written."""
    assert _found("appelez le 01.42.68.53.00 svp") == [("01.42.68.53.00", "phone")]


def test_german_slashed_phone() -> None:
    """`030/901820`: area code, slash, number."""
    assert _found("Telefon 030/901820") == [("030/901820", "phone")]


@pytest.mark.parametrize("sep", [".", "_", "/", "\t"])
def test_card_with_any_separator(sep: str) -> None:
    """Cards grouped by dots, underscores, slashes or tabs."""
    card = sep.join(["4111", "1111", "1111", "1111"])
    assert _found(f"card {card} exp 12/29") == [(card, "credit_card")]


def test_ssn_with_dots() -> None:
    assert _found("SSN 536.22.8726") == [("536.22.8726", "us_ssn")]


def test_password_in_a_sentence() -> None:
    assert _found("my password is Hunter2xyz! thanks") == [("Hunter2xyz!", "password")]


def test_bearer_hex_token() -> None:
    token = "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"
    assert _found(f"Authorization: Bearer {token}") == [(token, "secret")]
