"""Decoding what a model or a caller can use to smuggle a value past the detectors.

Percent-encoding (``jane%40example.com``), HTML entities (``jane&#64;example.com``),
``\\u`` / ``\\x`` escapes written out as text, the JSON escapes that can sit inside or
between a value's characters (``\\\\``, ``\\/``, ``\\t``; in a tool call's JSON
arguments a model's ``\\u0034`` arrives as ``\\\\u0034``), and base64 runs (UTF-8 or
UTF-16 text), or where a run is not base64 text, hex (``3037382d...``) and base32, are
decoded into one view of the text, with each decoded unit mapped back to the characters it
came from. So are three ways people and models write a value so that it no longer
looks like one:

* words and digit groups joined by ``+``, a form-encoded space as in a URL's query
  (``?q=4111+1111+1111+1111``, ``my+ssn+078-05-1120``);
* digits spelled out one by one with a space or a dash between them (``4 1 1 1 1 …``,
  ``4-1-1-1-…``), as call transcripts and speech-to-text write numbers, or as English
  words (``zero seven eight, zero five, one one two zero``; ``oh`` for zero, any case,
  spaces, commas and dashes between them), as people read a number out and as a model
  told to slip a value past a filter writes it;
* an e-mail address with ``(at)`` and ``(dot)`` (also ``[at]``, ``{dot}``, any case)
  for its ``@`` and dots.

Detectors then run on the plain text and on that view; a finding in the view is
reported over the original characters, widened to whole encoded units (a value found
inside a base64 run covers the whole run, since no part of the run is the value; a
"+" read as a space keeps every character in place, so there nothing is widened).

The folding the engine already does (full-width digits, look-alikes, invisible
characters) runs on the decoded view too, because the view goes through the same
detectors. Decoding is applied to a fixed depth (`MAX_ROUNDS`), so a value encoded
twice (base64 of a percent-encoded email) is still found, and a crafted input cannot
make the work grow without bound.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import string
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from ._finding import Detector, Finding

__all__ = [
    "DIGIT_WORDS",
    "MAX_ROUNDS",
    "Decoded",
    "decode",
    "detect_decoded",
    "open_spelled_number",
]

#: Decoding rounds: a value encoded twice is still found.
MAX_ROUNDS = 2
#: The shortest base64 run decoded: 9 bytes, the shortest value worth withholding
#: (an SSN, a short email) encodes to 12 characters.
_B64_MIN = 12

# The encoded units, each found by a pattern that starts with its own literal or class
# (one alternation of them all, with a lookbehind first, is tried at every position:
# about 25 times slower on prose). Together they find what the alternation
# ``pct|ent|esc|b64`` finds scanning left to right (a property test checks).
_PCT = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_ENT = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_ESC = re.compile(r"(?:\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|\\[\\/t])+")
# One escape of an `_ESC` unit: \uXXXX, \xXX, or a one-character JSON escape.
_ESC_PART = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|x([0-9A-Fa-f]{2})|([\\/t]))")
_ESC_CHAR = {"\\": "\\", "/": "/", "t": "\t"}
# A base64 run alone, its edges checked by hand: a pattern that starts with a lookbehind
# is tried at every position of the text, one that starts with a class is not.
_B64_RUN = re.compile(rf"[A-Za-z0-9+/_-]{{{_B64_MIN},}}={{0,6}}")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_B64_EDGE = frozenset(_B64_ALPHABET.decode() + "=")
_ASCII_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# ASCII text as one byte per character: "a" for the base64 alphabet, " " for the rest;
# the first run long enough is then a substring search (memmem), not a regex scan.
_B64_MASK = bytes(ord("a") if c in _B64_ALPHABET else ord(" ") for c in range(256))
_B64_MIN_RUN = b"a" * _B64_MIN
# A base64 run that is hex (two digits a byte, at least the `_B64_MIN` shortest value's
# nine bytes) or base32 (up to six "=" of padding, which is why a run takes as many).
_HEX_RUN = re.compile(r"(?:0[xX])?((?:[0-9A-Fa-f]{2}){9,})")
_B32_RUN = re.compile(r"[A-Z2-7]{15,}")
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE)
# The lengths, modulo eight, that whole bytes give in base32 without its padding.
_B32_LENGTHS = frozenset({0, 2, 4, 5, 7})
# Words and digit groups joined by "+" (a form-encoded space). Found from each "+" by
# hand: a pattern that starts with a class is tried at every character of the text.
_PLUS_IN_RUN = re.compile(r"(?<=[A-Za-z0-9])\+(?=[A-Za-z0-9])")
_PLUS_DIGIT = re.compile(r"\+[0-9]")
#: The longest part between two "+" read as a form-encoded space. Words and digit
#: groups are shorter; binary data in base64 (an image, a file) has a "+" every 64
#: characters on average, so it is not read as words.
_FORM_PART_MAX = 24
#: The fewest digits spelled out one by one that make a unit: an SSN's nine.
_SPACED_MIN = 9
# Single digits with one space between them, not glued to anything a base64 run or a
# plus unit is made of (so no two kinds of unit overlap).
_SPACED = re.compile(
    rf"(?<![A-Za-z0-9+/=_-])[0-9](?: [0-9]){{{_SPACED_MIN - 1},}}(?![A-Za-z0-9+/=_-])"
)
# Digits spelled out with a dash between them ("4-1-1-1-..."): the alphabet of a base64
# run, so found as one and read so when it does not decode.
_SPELLED_WITH_DASHES = re.compile(rf"[0-9](?:-[0-9]){{{_SPACED_MIN - 1},}}")
# Where nine digits are spelled out, for text that is not ASCII (a pattern that starts
# with a class, unlike `_SPACED`'s lookbehind, is not tried at every character).
_SPACED_HINT = re.compile(rf"[0-9](?: [0-9]){{{_SPACED_MIN - 1}}}")
# ASCII text with every digit as "0", a space as " " and anything else as "a": the
# first place nine digits are spelled out is then a substring search.
_SPACED_MASK = bytes(
    ord("0") if chr(c).isdigit() and c < 128 else ord(" ") if c == 32 else ord("a")
    for c in range(256)
)
_SPACED_MIN_RUN = b" ".join([b"0"] * _SPACED_MIN)
#: English digit words, each read as its digit. Tens ("twenty"), "double" and "o" are
#: not: they make a number's reading ambiguous, and "o" is a word of its own.
DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_DIGIT_WORD = "|".join(sorted(DIGIT_WORDS, key=len, reverse=True))
#: What may stand between two digit words.
_SPELLED_SEPARATORS = " ,-"
# Digits spelled out as words, at least `_SPACED_MIN` of them, each a whole word.
_SPELLED = re.compile(
    rf"(?<![A-Za-z0-9])(?:{_DIGIT_WORD})"
    rf"(?:[{re.escape(_SPELLED_SEPARATORS)}]+(?:{_DIGIT_WORD})){{{_SPACED_MIN - 1},}}"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SPELLED_WORD = re.compile(r"[A-Za-z]+")
# Text (UTF-8 bytes) with each letter a digit word has, and the separators between
# words, as "a", and anything else as "x": nine digit words in a row are a run of at
# least `_SPELLED_MIN_RUN`, found by a substring search (about one letter in four of
# English prose is outside that alphabet, so prose seldom holds such a run).
_SPELLED_ALPHABET = frozenset("".join(DIGIT_WORDS) + _SPELLED_SEPARATORS)
_SPELLED_MASK = bytes(
    ord("a") if c < 128 and chr(c).lower() in _SPELLED_ALPHABET else ord("x") for c in range(256)
)
# Nine of the shortest word ("oh") with one separator between each two.
_SPELLED_MIN_RUN = b"a" * (min(map(len, DIGIT_WORDS)) * _SPACED_MIN + _SPACED_MIN - 1)
_ASCII_LETTERS = frozenset(string.ascii_letters)
_LONGEST_DIGIT_WORD = max(map(len, DIGIT_WORDS))
_DIGIT_WORD_PREFIXES = frozenset(w[:n] for w in DIGIT_WORDS for n in range(1, len(w) + 1))
# "(at)" and "(dot)" between the parts of an e-mail address, in any bracket and case.
_WORD = re.compile(r"[(\[{](?:[Aa][Tt]|[Dd][Oo][Tt])[)\]}]")
# Where two units start at the same character, the one a left-to-right alternation in
# this order would take: a base64 run before words joined by "+".
# Digits spelled as words before a base64 run: "four-one-one-…" is both.
_UNIT_ORDER = {
    "pct": 0,
    "ent": 1,
    "esc": 2,
    "spelled": 3,
    "b64": 4,
    "plus": 5,
    "spaced": 6,
    "word": 7,
}


def _printable(text: str) -> bool:
    return bool(text) and all(ch.isprintable() or ch in "\t\n\r" for ch in text)


def _pct(unit: str) -> str | None:
    try:
        return bytes.fromhex(unit.replace("%", "")).decode("utf-8")
    except ValueError:
        return None


def _esc(unit: str) -> str | None:
    """An `_ESC` unit decoded: a run of ``\\x`` bytes as UTF-8 (Latin-1 when it is not
    UTF-8 and ``\\u`` escapes sit beside it, as Python's ``unicode_escape`` reads them),
    ``\\u`` pairs of surrogates as one character; None when it does not decode."""
    out: list[str] = []
    pending = bytearray()
    try:
        for match in _ESC_PART.finditer(unit):
            code, byte, char = match.groups()
            if byte is not None:
                pending.append(int(byte, 16))
                continue
            if pending:
                out.append(_bytes_text(pending, unit))
                pending.clear()
            out.append(chr(int(code, 16)) if code is not None else _ESC_CHAR[char])
        if pending:
            out.append(_bytes_text(pending, unit))
        # Surrogate pairs written as two \u escapes.
        return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeError:
        return None


def _bytes_text(raw: bytearray, unit: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if "\\u" not in unit:
            raise
        return raw.decode("latin-1")


def _b64(unit: str) -> str | None:
    body = unit.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _bytes_as_text(raw)


def _bytes_as_text(raw: bytes) -> str | None:
    """``raw`` as printable text: UTF-8, or UTF-16 little-endian when every second byte
    is zero (what PowerShell's ``-EncodedCommand`` and Windows tools base64); a byte-order
    mark is left out."""
    if raw.startswith(_BOMS):
        raw = raw[3:] if raw.startswith(codecs.BOM_UTF8) else raw[2:]
    try:
        text = raw.decode("utf-8")
        if _printable(text):
            return text
    except UnicodeDecodeError:
        pass
    if len(raw) % 2 or raw[1::2].strip(b"\0"):
        return None
    text = raw.decode("utf-16-le")
    return text if _printable(text) else None


def _hex_or_b32(unit: str) -> str | None:
    """A run that base64 does not read as text, read as hex (``3037382d...``, with or
    without ``0x``) or as base32 (``GA3TQLJQ...``); None when neither gives text."""
    hex_match = _HEX_RUN.fullmatch(unit)
    if hex_match is not None:
        return _bytes_as_text(bytes.fromhex(hex_match.group(1)))
    body = unit.rstrip("=")
    if _B32_RUN.fullmatch(body) is not None and len(body) % 8 in _B32_LENGTHS:
        # Padding as an encoder writes it, or none (which b32decode does not accept).
        return _bytes_as_text(base64.b32decode(body + "=" * (-len(body) % 8)))
    return None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded view of some text and the way back to the text's offsets.

    Pieces are (view start, original start, original end, in place): a piece in place
    maps character for character (text as it is, or with each "+" read as a space), a
    decoded one maps as a whole.
    """

    text: str
    _view_starts: tuple[int, ...]
    _pieces: tuple[tuple[int, int, int, bool], ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span that holds view span ``[start, end)`` (whole units); an
        empty span maps to an empty span (at the view's end: the text's end)."""
        if end <= start:
            at = self._pieces[-1][2] if start >= len(self.text) else self._at(start, False)
            return at, at
        return self._at(start, False), self._at(end - 1, True)

    def _at(self, pos: int, is_end: bool) -> int:
        i = max(bisect_right(self._view_starts, pos) - 1, 0)
        view_start, orig_start, orig_end, in_place = self._pieces[i]
        if in_place:
            return orig_start + (pos - view_start) + (1 if is_end else 0)
        return orig_end if is_end else orig_start


def _units(text: str) -> list[tuple[int, int, str]]:
    """The encoded units of ``text`` in order: (start, end, kind)."""
    found: list[tuple[int, int, str]] = []
    for marker, pattern, kind in (("%", _PCT, "pct"), ("&", _ENT, "ent"), ("\\", _ESC, "esc")):
        if marker in text:
            found.extend((m.start(), m.end(), kind) for m in pattern.finditer(text))
    if "+" in text:
        found.extend(_plus_units(text))
    # The three byte-mask scans only where their runs fit: most of a request's strings
    # (roles, model names, ids) are shorter than a base64 run, the shortest of them.
    size = len(text)
    b64: list[tuple[int, int, str]] = []
    if size >= _B64_MIN:
        # One encoding for all three (in ASCII text a byte is a character).
        raw = text.encode("utf-8", "surrogatepass")
        ascii_raw = raw if len(raw) == size else None
        if size >= len(_SPACED_MIN_RUN):
            found.extend(_spaced_units(text, ascii_raw))
        if size >= len(_SPELLED_MIN_RUN):
            found.extend(_spelled_units(text, raw))
        b64 = _b64_units(text, ascii_raw)
    if _may_hold_words(text):
        found.extend(_word_units(text))
    if not found:
        return b64
    found.extend(b64)
    found.sort(key=lambda unit: (unit[0], _UNIT_ORDER[unit[2]]))
    # A left-to-right scan takes the first unit and goes on after it: a base64 run can
    # start inside a percent unit ("%41ABC...") only because the separate scans overlap.
    units = []
    end = 0
    for unit in found:
        if unit[0] >= end:
            units.append(unit)
            end = unit[1]
        elif unit[2] == "spelled" and units[-1][2] == "b64":
            # "ref-four-one-one, one …": a base64 run that ends inside digits spelled out
            # as words is no base64; the words are read, as "ref-4111 1…" would be.
            units[-1] = unit
            end = unit[1]
    return units


def _b64_units(text: str, ascii_raw: bytes | None) -> list[tuple[int, int, str]]:
    """Base64 runs: at least `_B64_MIN` characters of the alphabet, up to six ``=``
    (base32 pads so), with neither the alphabet nor ``=`` on either side. ``ascii_raw``
    is the text's bytes when it is ASCII, else None."""
    n = len(text)
    units = []
    if ascii_raw is None:
        for match in _B64_RUN.finditer(text):
            start, end = match.span()
            if (start == 0 or text[start - 1] != "=") and (end == n or text[end] not in _B64_EDGE):
                units.append((start, end, "b64"))
        return units
    mask = ascii_raw.translate(_B64_MASK)
    start = mask.find(_B64_MIN_RUN)
    while start != -1:
        # The first long enough stretch starts a run (the characters before it are not
        # of the alphabet); the pattern takes the run and its padding from there.
        run = _B64_RUN.match(text, start)
        assert run is not None
        end = run.end()
        if (start == 0 or text[start - 1] != "=") and (end == n or text[end] not in _B64_EDGE):
            units.append((start, end, "b64"))
        start = mask.find(_B64_MIN_RUN, end)
    return units


def _plus_units(text: str) -> list[tuple[int, int, str]]:
    """Runs of words and digit groups joined by ``+``: what the pattern
    ``(?<![A-Za-z0-9])[A-Za-z0-9]+(?:\\+[A-Za-z0-9]+)+`` finds scanning left to right."""
    n = len(text)
    units = []
    end = 0
    plus = text.find("+")
    while plus != -1:
        if plus >= end and plus > 0 and text[plus - 1] in _ASCII_ALNUM:
            start = plus
            while start > 0 and text[start - 1] in _ASCII_ALNUM:
                start -= 1
            stop = plus
            while stop + 1 < n and text[stop] == "+" and text[stop + 1] in _ASCII_ALNUM:
                stop += 1
                while stop < n and text[stop] in _ASCII_ALNUM:
                    stop += 1
            if stop > plus:
                units.append((start, stop, "plus"))
                end = stop
        plus = text.find("+", plus + 1)
    return units


def _form_spaces(unit: str) -> str | None:
    """``unit`` with each ``+`` between two words read as a space; None when no ``+`` in
    it comes before a digit (``a+b`` hides no value, and is not worth a second pass of
    the detectors) or a part is too long to be a word (`_FORM_PART_MAX`)."""
    if _PLUS_DIGIT.search(unit) is None or max(map(len, unit.split("+"))) > _FORM_PART_MAX:
        return None
    decoded = _PLUS_IN_RUN.sub(" ", unit)
    return None if decoded == unit else decoded


def _spaced_units(text: str, ascii_raw: bytes | None) -> list[tuple[int, int, str]]:
    """Digits spelled out one by one (`_SPACED`), looked for only from where nine of
    them are (in ASCII text, ``ascii_raw`` its bytes, a substring search of a mask,
    else `_SPACED_HINT`)."""
    mask = ascii_raw.translate(_SPACED_MASK) if ascii_raw is not None else None
    units: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        if mask is not None:
            pos = mask.find(_SPACED_MIN_RUN, pos)
            if pos == -1:
                return units
        else:
            hint = _SPACED_HINT.search(text, pos)
            if hint is None:
                return units
            pos = hint.start()
        match = _SPACED.search(text, pos)
        if match is None:
            return units
        units.append((match.start(), match.end(), "spaced"))
        pos = match.end()


def _spelled_units(text: str, raw: bytes) -> list[tuple[int, int, str]]:
    """Digits spelled out as words (`_SPELLED`), looked for only in a stretch of the
    text made of the letters of digit words and their separators (`_SPELLED_MASK` of
    ``raw``, the text's UTF-8 bytes, surrogates passed)."""
    mask = raw.translate(_SPELLED_MASK)
    pos = mask.find(_SPELLED_MIN_RUN)
    if pos == -1:
        return []
    if len(raw) != len(text):
        # UTF-8 offsets are not the text's: the stretch only says whether to look.
        return [(m.start(), m.end(), "spelled") for m in _SPELLED.finditer(text)]
    units: list[tuple[int, int, str]] = []
    while pos != -1:
        end = mask.find(b"x", pos)
        end = len(text) if end == -1 else end
        # One character past the stretch: the pattern's lookahead must see what follows
        # ("… one nined" ends before "nine"), and no run can take it.
        runs = _SPELLED.finditer(text, pos, end + 1)
        units.extend((m.start(), m.end(), "spelled") for m in runs)
        pos = mask.find(_SPELLED_MIN_RUN, end)
    return units


def open_spelled_number(text: str) -> int | None:
    """Where the run of digit words that ``text`` ends in starts (``four one one, one``;
    the last word may still be being written), or None: what a stream holds until a
    word that is none ends the run, since nine or more in a row make a `_SPELLED` unit."""
    start = None
    end = i = len(text)
    while i > 0:
        j = i
        while j > 0 and text[j - 1] in _SPELLED_SEPARATORS:
            j -= 1
        if j == i and i != end:
            break  # two words with nothing between them
        k = j
        while k > 0 and j - k <= _LONGEST_DIGIT_WORD and text[k - 1] in _ASCII_LETTERS:
            k -= 1
        if k > 0 and text[k - 1] in _ASCII_ALNUM:
            break  # part of a longer word or glued to digits
        if text[k:j].lower() not in (_DIGIT_WORD_PREFIXES if j == end else DIGIT_WORDS):
            break
        start = i = k
    return start


def _spelled_digits(unit: str) -> str:
    """A `_SPELLED` run as its digits."""
    return "".join(DIGIT_WORDS[word.lower()] for word in _SPELLED_WORD.findall(unit))


def _may_hold_words(text: str) -> bool:
    """Whether ``text`` can hold "(at)" or "(dot)": a closing bracket after a "t". Each
    bracket is found with a character search (memchr); `_WORD`'s scan costs about forty
    instructions a character of text that holds brackets for other reasons (an
    answer's tokens, Markdown links)."""
    for close in ")]}":
        at = text.find(close, 1)
        while at != -1:
            if text[at - 1] in "tT":
                return True
            at = text.find(close, at + 1)
    return False


def _word_units(text: str) -> list[tuple[int, int, str]]:
    """``(at)`` and ``(dot)`` with a letter or digit right before and after."""
    n = len(text)
    return [
        (m.start(), m.end(), "word")
        for m in _WORD.finditer(text)
        if m.start() > 0
        and text[m.start() - 1] in _ASCII_ALNUM
        and m.end() < n
        and text[m.end()] in _ASCII_ALNUM
    ]


def _decode_once(text: str) -> Decoded | None:
    pieces: list[tuple[int, int, int, bool]] = []
    out: list[str] = []
    view = 0
    cursor = 0
    for start, end, group in _units(text):
        unit = text[start:end]
        # A "+" read as a space keeps every character where it was: the unit maps
        # character for character, so a value after "my+ssn+" covers only itself.
        in_place = False
        if group == "pct":
            decoded = _pct(unit)
        elif group == "ent":
            decoded = html.unescape(unit)
            decoded = None if decoded == unit else decoded
        elif group == "esc":
            decoded = _esc(unit)
        elif group == "plus":
            decoded = _form_spaces(unit)
            in_place = True
        elif group == "spaced":
            decoded = unit.replace(" ", "")
        elif group == "spelled":
            decoded = _spelled_digits(unit)
        elif group == "word":
            decoded = "@" if unit[1] in "aA" else "."
        else:
            decoded = _b64(unit)
            if decoded is None and "+" in unit:
                # Words joined by "+" ("my+ssn+078-05-1120") are also a base64 run,
                # mostly one that does not decode to text.
                decoded = _form_spaces(unit)
                in_place = True
            elif decoded is None and "-" in unit and _SPELLED_WITH_DASHES.fullmatch(unit):
                decoded = unit.replace("-", "")  # "4-1-1-1-...": spelled out with dashes
            elif decoded is None:
                decoded = _hex_or_b32(unit)
        if not decoded:
            continue
        if start > cursor:
            pieces.append((view, cursor, start, True))
            out.append(text[cursor:start])
            view += start - cursor
        pieces.append((view, start, end, in_place))
        out.append(decoded)
        view += len(decoded)
        cursor = end
    if not pieces:
        return None
    if cursor < len(text):
        pieces.append((view, cursor, len(text), True))
        out.append(text[cursor:])
    return Decoded("".join(out), tuple(p[0] for p in pieces), tuple(pieces))


def decode(text: str) -> list[Decoded]:
    """The decoded views of ``text``, one per round that changed something (outermost
    first); empty when nothing in it decodes."""
    views: list[Decoded] = []
    current = text
    for _ in range(MAX_ROUNDS):
        view = _decode_once(current)
        if view is None or view.text == current:
            break
        views.append(view)
        current = view.text
    return views


def _back(views: list[Decoded], start: int, end: int) -> tuple[int, int]:
    for view in reversed(views):
        start, end = view.span(start, end)
    return start, end


def detect_decoded(detectors: Iterable[Detector], text: str) -> list[Finding]:
    """Findings of ``detectors`` in ``text`` and in its decoded views, over ``text``'s offsets.

    A finding in a view that only repeats one in the plain text is dropped by the
    caller's overlap resolution (`merge_findings`), since both cover the same characters.
    """
    detectors = tuple(detectors)
    found: list[Finding] = []
    for detector in detectors:
        found.extend(detector.detect(text))
    views = decode(text)
    for depth in range(len(views)):
        layer = views[: depth + 1]
        view_text = layer[-1].text
        for detector in detectors:
            for finding in detector.detect(view_text):
                start, end = _back(layer, finding.start, finding.end)
                if end > start:
                    found.append(
                        Finding(
                            start,
                            end,
                            finding.kind,
                            finding.level,
                            finding.detector,
                            finding.score,
                        )
                    )
    return found
