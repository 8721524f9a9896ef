"""Realistic surrogates: a token written in the shape of the value it stands for.

Some prompts need something that looks real (a model asked to draft an e-mail
behaves better with an address than with ``[EMAIL_7Q2K]``). A surrogate is a reversible
*encoding of the token*, never of the value: the vault, its scoping and its
determinism are exactly those of the placeholder token, and restoring a surrogate is
restoring the token it encodes. Every surrogate sits in a reserved namespace, so it can
never be someone's real data:

* e-mail: ``7q2k.s@aiguard.invalid`` (the ``.invalid`` top-level domain, RFC 2606);
* phone: ``+999 1 104 8575`` (country code 999 is reserved by the ITU, never assigned);
* payment card: ``4000 0000 0104 8575``-shaped, Luhn-valid, in the 4000 test range.

Suffixes of 4, 6 and 8 characters (tokens issued before 65-bit suffixes) and of 13
characters (every token issued now, unless collisions extended it) are encodable; a
token that cannot be encoded stays a placeholder. A 13-character suffix holds 65 bits,
so its phone surrogate has 21 digits and its card surrogate 26: longer than real ones,
which only the reserved namespaces make harmless.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .tokens import SUFFIX_ALPHABET, TOKEN_RE, in_host, in_link

__all__ = [
    "SURROGATE_KINDS",
    "SURROGATE_RE",
    "from_surrogate",
    "restore_surrogates",
    "to_surrogate",
]

SURROGATE_KINDS = frozenset({"email", "phone", "credit_card"})

_CODES = {4: "1", 6: "2", 8: "3", 13: "4"}
_LENGTHS = {code: length for length, code in _CODES.items()}
_DIGITS = {4: 7, 6: 10, 8: 13, 13: 20}  # decimal digits that hold 5 bits per character
_VALUE = {ch: i for i, ch in enumerate(SUFFIX_ALPHABET)}

_EMAIL = r"(?<![\w.+-])(?P<email>[0-9a-hjkmnp-tv-z]{4,13})\.s@aiguard\.invalid(?![\w-])"
# Exact digit counts per length code, so a digit that merely follows is never taken in.
_PHONE = r"(?<![\w+])\+999 (?P<phone>1(?: ?\d){7}|2(?: ?\d){10}|3(?: ?\d){13}|4(?: ?\d){20})(?!\d)"
_CARD = (
    r"(?<![\d-])(?P<card>4000[ -]?(?:[12](?:[ -]?\d){11}|3(?:[ -]?\d){14}|4(?:[ -]?\d){21}))"
    r"(?!\d)"
)
SURROGATE_RE = re.compile(f"{_EMAIL}|{_PHONE}|{_CARD}")


def _suffix_int(suffix: str) -> int:
    value = 0
    for ch in suffix:
        value = value * 32 + _VALUE[ch]
    return value


def _int_suffix(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(SUFFIX_ALPHABET[digit])
    return "".join(reversed(chars)) if value == 0 else ""


def _luhn_digit(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        digit = int(ch)
        if i % 2 == 0:  # doubled: these sit in odd positions once the check digit is added
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def _group(digits: str, size: int = 4) -> str:
    return " ".join(digits[i : i + size] for i in range(0, len(digits), size))


def _group_from_right(digits: str) -> str:
    head = len(digits) % 4
    groups = [digits[:head]] if head else []
    groups += [digits[i : i + 4] for i in range(head, len(digits), 4)]
    return " ".join(groups)


def to_surrogate(token: str) -> str | None:
    """The surrogate of a placeholder token of an encodable kind, else None."""
    match = TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    label, suffix = match.group(1), match.group(2)
    if len(suffix) not in _CODES:
        return None
    if label == "EMAIL":
        return f"{suffix.lower()}.s@aiguard.invalid"
    number = str(_suffix_int(suffix)).zfill(_DIGITS[len(suffix)])
    if label == "PHONE":
        return "+999 " + _CODES[len(suffix)] + " " + _group_from_right(number)
    if label == "CREDIT_CARD":
        payload = "4000" + _CODES[len(suffix)] + number.zfill(10)
        return _group(payload + _luhn_digit(payload))
    return None


def from_surrogate(match: re.Match[str]) -> str | None:
    """The placeholder token a `SURROGATE_RE` match encodes, or None if it is not one."""
    if match.group("email") is not None:
        suffix = match.group("email").upper()
        return f"[EMAIL_{suffix}]" if len(suffix) in _CODES else None
    if match.group("phone") is not None:
        digits = re.sub(r"\D", "", match.group("phone"))
        length = _LENGTHS.get(digits[0])
        if length is None or len(digits) - 1 != _DIGITS[length]:
            return None
        suffix = _int_suffix(int(digits[1:]), length)
        return f"[PHONE_{suffix}]" if suffix else None
    digits = re.sub(r"\D", "", match.group("card"))
    length = _LENGTHS.get(digits[4])
    if length is None or _luhn_digit(digits[:-1]) != digits[-1]:
        return None
    width = max(10, _DIGITS[length])
    if len(digits) != 4 + 1 + width + 1:
        return None
    suffix = _int_suffix(int(digits[5:-1]), length)
    return f"[CREDIT_CARD_{suffix}]" if suffix else None


def may_hold_surrogates(text: str) -> bool:
    """Whether ``text`` can hold a surrogate at all (each form has a fixed part)."""
    return "aiguard.invalid" in text or "+999" in text or "4000" in text


def restore_surrogates(
    text: str,
    lookup: Callable[[str], str | None],
    link_lookup: Callable[[str], str | None] | None = None,
    before: str = "",
    ahead: str = "",
) -> str:
    """Replace every surrogate whose token the caller may see by the original value.

    Surrogate-shaped text that encodes no token of the caller's scope stays as it is.
    A surrogate that stands in a link (`in_link`, reading ``before`` as the text before
    ``text``; `in_host`, reading ``ahead`` as the text after it) is looked up with
    ``link_lookup`` when one is given.
    """
    if not may_hold_surrogates(text):
        return text

    def swap(match: re.Match[str]) -> str:
        token = from_surrogate(match)
        if token is None:
            return match.group(0)
        at = match.start()
        if link_lookup is not None and (
            in_host(text, match.end(), ahead) or in_link(before + text[:at], len(before) + at)
        ):
            original = link_lookup(token)
        else:
            original = lookup(token)
        return original if original is not None else match.group(0)

    return SURROGATE_RE.sub(swap, text)
