"""Decoding what a model or a caller can use to smuggle a value past the detectors.

Percent-encoding (``jane%40example.com``), HTML entities (``jane&#64;example.com``),
``\\u`` / ``\\x`` escapes written out as text, the JSON escapes that can sit inside or
between a value's characters (``\\\\``, ``\\/``, ``\\t``; in a tool call's JSON
arguments a model's ``\\u0034`` arrives as ``\\\\u0034``), and base64 runs are decoded
into one view of the text, with each decoded unit mapped back to the characters it
came from.
Detectors then run on the plain text and on that view; a finding in the view is
reported over the original characters, widened to whole encoded units (a value found
inside a base64 run covers the whole run, since no part of the run is the value).

The folding the engine already does (full-width digits, look-alikes, invisible
characters) runs on the decoded view too, because the view goes through the same
detectors. Decoding is applied to a fixed depth (`MAX_ROUNDS`), so a value encoded
twice (base64 of a percent-encoded email) is still found, and a crafted input cannot
make the work grow without bound.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from ._finding import Detector, Finding

__all__ = ["MAX_ROUNDS", "Decoded", "decode", "detect_decoded"]

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
_B64_RUN = re.compile(rf"[A-Za-z0-9+/_-]{{{_B64_MIN},}}={{0,2}}")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_B64_EDGE = frozenset(_B64_ALPHABET.decode() + "=")
# ASCII text as one byte per character: "a" for the base64 alphabet, " " for the rest;
# the first run long enough is then a substring search (memmem), not a regex scan.
_B64_MASK = bytes(ord("a") if c in _B64_ALPHABET else ord(" ") for c in range(256))
_B64_MIN_RUN = b"a" * _B64_MIN


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
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if _printable(text) else None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded view of some text and the way back to the text's offsets.

    Pieces are (view start, original start, original end, verbatim): a verbatim piece
    maps character for character, a decoded one maps as a whole.
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
        view_start, orig_start, orig_end, verbatim = self._pieces[i]
        if verbatim:
            return orig_start + (pos - view_start) + (1 if is_end else 0)
        return orig_end if is_end else orig_start


def _units(text: str) -> list[tuple[int, int, str]]:
    """The encoded units of ``text`` in order: (start, end, kind)."""
    found: list[tuple[int, int, str]] = []
    for marker, pattern, kind in (("%", _PCT, "pct"), ("&", _ENT, "ent"), ("\\", _ESC, "esc")):
        if marker in text:
            found.extend((m.start(), m.end(), kind) for m in pattern.finditer(text))
    if not found:
        return _b64_units(text)
    found.extend(_b64_units(text))
    found.sort()
    # A left-to-right scan takes the first unit and goes on after it: a base64 run can
    # start inside a percent unit ("%41ABC...") only because the separate scans overlap.
    units = []
    end = 0
    for unit in found:
        if unit[0] >= end:
            units.append(unit)
            end = unit[1]
    return units


def _b64_units(text: str) -> list[tuple[int, int, str]]:
    """Base64 runs: at least `_B64_MIN` characters of the alphabet, up to two ``=``, with
    neither the alphabet nor ``=`` on either side."""
    n = len(text)
    units = []
    if not text.isascii():
        for match in _B64_RUN.finditer(text):
            start, end = match.span()
            if (start == 0 or text[start - 1] != "=") and (end == n or text[end] not in _B64_EDGE):
                units.append((start, end, "b64"))
        return units
    mask = text.encode("ascii").translate(_B64_MASK)
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


def _decode_once(text: str) -> Decoded | None:
    pieces: list[tuple[int, int, int, bool]] = []
    out: list[str] = []
    view = 0
    cursor = 0
    for start, end, group in _units(text):
        unit = text[start:end]
        if group == "pct":
            decoded = _pct(unit)
        elif group == "ent":
            decoded = html.unescape(unit)
            decoded = None if decoded == unit else decoded
        elif group == "esc":
            decoded = _esc(unit)
        else:
            decoded = _b64(unit)
        if not decoded:
            continue
        if start > cursor:
            pieces.append((view, cursor, start, True))
            out.append(text[cursor:start])
            view += start - cursor
        pieces.append((view, start, end, False))
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
