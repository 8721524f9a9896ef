"""Fold look-alike characters before matching, and map offsets back to the original.

People (and adversaries) write values with full-width digits, non-breaking spaces,
Unicode dashes, Cyrillic letters that look Latin, and invisible characters inside
them (zero-width spaces, soft hyphens, bidirectional marks). Detection runs on a
folded copy; findings are reported as offsets into the caller's string, so the span
that gets tokenized includes the invisible characters too.

Every substitution is one character for one character, and the only characters
removed are the invisible ones and combining marks, so the offset map is a sorted
list of deletion points: cheap to build and to query, and absent for the common
all-ASCII text. Combining marks are removed so that a value written decomposed (NFD:
``e`` followed by U+0301) reads as its base letters, as the precomposed form does
to the matchers; the finding's span still covers the marks (see ``Normalized.end``).
Tabs become spaces, so ``4111\t1111\t1111\t1111`` is grouped like ``4111 1111 ...``.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache

__all__ = ["Normalized", "normalize"]

#: Invisible characters that can be slipped inside a value without changing how it reads.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068"
    "\u2069\u206a\u206b\u206c\u206d\u206e\u206f\u3164\ufeff\uffa0"
)
# Combining diacritical marks (the blocks NFD output uses for Latin, Greek, Cyrillic).
_COMBINING = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_INVISIBLE_RE = re.compile("[" + _INVISIBLE + _COMBINING + "]")
_COMBINING_RE = re.compile("[" + _COMBINING + "]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")

# Latin look-alikes from Cyrillic and Greek: the letters that render the same in
# common fonts. Mapping them only changes what the matchers see, never the output.
_CONFUSABLES_FROM = (
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0423"
    "\u0406\u0408\u0405\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458"
    "\u0455\u0501\u04cf\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d"
    "\u039f\u03a1\u03a4\u03a5\u03a7\u03bf"
)
_CONFUSABLES_TO = "ABEKMHOPCTXYIJSaeopcyxijsdlABEZHIKMNOPTYXo"


@cache  # built on the first non-ASCII text: about 60 ms, not paid at import
def _table() -> dict[int, int]:
    table: dict[int, int] = {}
    # Full-width ASCII (digits, letters, '@', '.', '-') to ASCII.
    for code in range(0xFF01, 0xFF5F):
        table[code] = code - 0xFEE0
    table[0x3000] = ord(" ")
    # Every other script's decimal digits (Arabic-Indic, Devanagari, ...) to 0-9.
    for code in range(0x80, sys.maxunicode + 1):
        if code in table or 0xD800 <= code <= 0xDFFF:
            continue
        digit = unicodedata.decimal(chr(code), None)
        if digit is not None:
            table[code] = ord("0") + digit
    for code in (0x09, 0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F):
        table[code] = ord(" ")
    for code in (*range(0x2010, 0x2016), 0x2212, 0xFE58, 0xFE63):
        table[code] = ord("-")
    table[0x2024] = ord(".")  # one dot leader
    for src, dst in zip(_CONFUSABLES_FROM, _CONFUSABLES_TO, strict=True):
        table[ord(src)] = ord(dst)
    return table


@dataclass(frozen=True, slots=True)
class Normalized:
    """The folded text and, when characters were removed, where they were."""

    text: str
    #: For the k-th removed character, its position in the folded text; empty if none.
    removed_at: tuple[int, ...] = ()

    def start(self, index: int) -> int:
        """Original offset of the folded character at ``index``."""
        if not self.removed_at:
            return index
        return index + bisect_right(self.removed_at, index)

    def end(self, index: int, original: str = "") -> int:
        """Original offset just after the folded character at ``index - 1``.

        Invisible characters right after a value are not part of it; those inside are.
        Combining marks right after it are (given ``original``): they belong to its
        last letter.
        """
        if not self.removed_at or index == 0:
            return index
        end = self.start(index - 1) + 1
        if original:
            m = _COMBINING_RE.match(original, end)
            if m is not None:
                end = m.end()
        return end


def normalize(text: str) -> Normalized:
    """Fold ``text`` for matching; all-ASCII text is returned as it is, without a copy."""
    if text.isascii():
        return Normalized(text.replace("\t", " ") if "\t" in text else text)
    # Only the non-ASCII runs go through the table (a dict lookup per character); the
    # ASCII between them, most of any text, is copied as it is.
    table = _table()
    folded = _NON_ASCII.sub(lambda m: m.group().translate(table), text)
    if "\t" in folded:
        folded = folded.replace("\t", " ")
    if _INVISIBLE_RE.search(folded) is None:
        return Normalized(folded)
    removed = [m.start() - k for k, m in enumerate(_INVISIBLE_RE.finditer(folded))]
    return Normalized(_INVISIBLE_RE.sub("", folded), tuple(removed))
