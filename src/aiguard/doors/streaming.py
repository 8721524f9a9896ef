"""Restoring tokens in streamed answers: an incremental SSE decoder, a hold-back restorer
and re-framers for the OpenAI (chat, completions, Responses) and Anthropic event shapes.

Everything here is pure: bytes in, bytes out, no I/O and no HTTP library. The sync and
async transports wrap the same `StreamRestorer`, so both behave identically.

The contract of `StreamRestorer`:

* the caller never receives part of a token: text is held back only while its tail could
  still grow into a token (``[`` LABEL ``_`` SUFFIX ``]``), or a whole token could still
  turn out to be a label of a host name (``[EMAIL_…].evil.example.com``: the host-name
  characters after it run to the end of what arrived), and released as soon as it
  cannot, so held text never exceeds `MAX_HOLD` characters per text channel;
* output does not depend on how the upstream cut its bytes (frames split anywhere,
  several frames per chunk, CR, LF or CRLF line ends);
* memory is bounded by one SSE frame plus the held text of each channel, whatever the
  length of the answer.

The output rule (secrets and REGULATED values the call never sent are redacted) runs on
the text of each channel as one piece, not per released segment: text is also held back
while its tail could still be the start of such a value, and a value the model streams
across any number of chunks is redacted whole. Values are runs of non-space characters,
joined across single spaces between digit groups (card and phone numbers, IBANs), a
PEM block, a run of digit words ("four one one, one …"), or a quoted value after a
secret's key up to its closing quote, read as the detectors read them (full-width
digits, Unicode spaces and tabs folded, invisible characters left out, ``\\u`` and
JSON escapes decoded); so the held tail is usually the word being written. It is
bounded by ``hold_limit`` characters (default 8 KB): past it the held text is redacted,
never released, and so is the rest of that run (fail closed). Without an output rule
only the token grammar holds text.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import string
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# `loads_event` is the public name of the event parser; `_dumps` writes an event anew
# (most are: held text changes their delta).
from .._json import dumps as _dumps
from .._json import loads as loads_event
from .._json import read_whole
from ..classify._decode import open_spelled_number
from ..classify._engine import DIGITS_AS_ZERO, DROP_DIGITS, NAMING_VERBS, STR_DIGITS_AS_ZERO
from ..classify._normalize import normalize as _fold
from ..classify.structured import KEY_KINDS
from ..errors import MalformedPayload
from ..pipeline.call import usage_of
from ..providers.walk import STRUCTURAL_KEYS, tool_call_arguments
from ..vault.surrogates import may_hold_surrogates, restore_surrogates
from ..vault.tokens import (
    HOST_WINDOW,
    LINK_REACH,
    MAX_LABEL,
    MAX_SUFFIX,
    MAX_TOKEN_LENGTH,
    TOKEN_RE,
    JsonState,
    in_link,
    may_hold_links,
    open_host_start,
    swap_in_context,
)

__all__ = [
    "DEFAULT_HOLD_LIMIT",
    "MAX_HOLD",
    "MAX_TOKEN_LENGTH",
    "HoldBack",
    "OutputRule",
    "SSEDecoder",
    "SSEFrame",
    "StreamRestorer",
    "TokenRestorer",
    "encode_frame",
    "held_tail_start",
    "loads_event",
    "open_plain_password",
    "open_quoted_secret",
    "open_spelled_number",
    "value_tail_start",
]

#: The most text one channel ever holds without an output rule: a whole token and the
#: host-name characters after it (`HOST_WINDOW`, less one) that may still make it a
#: host's label.
MAX_HOLD = MAX_TOKEN_LENGTH + HOST_WINDOW - 1

# Every proper prefix of a TOKEN_RE match, and nothing that cannot become one.
_PREFIX_RE = re.compile(
    rf"\[(?:[A-Z][A-Z0-9_]{{0,{MAX_LABEL - 1}}}(?:_[0-9A-HJKMNP-TV-Z]{{0,{MAX_SUFFIX}}})?)?"
)

Lookup = Callable[[str], "str | None"]
Transform = Callable[[str], str]

#: Characters of one channel held for the output rule before it fails closed.
DEFAULT_HOLD_LIMIT = 8192
#: Released text kept as context for detectors that look behind a value ("SSN: ...").
_CONTEXT = 64
_OVERLONG = "[REDACTED:held_text]"
_DIGITS = frozenset("0123456789")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PEM_BEGIN = "-----BEGIN"
_PEM_END = "-----END"


class OutputRule(Protocol):
    """What a stream asks of the call about the model's text (`aiguard.pipeline.call.Call`)."""

    def withheld(self, text: str) -> Sequence[tuple[int, int, str]]:
        """Spans (start, end, kind) of ``text`` that must not reach the caller."""
        ...

    def record_leak(self, kind: str, value: str, path: str = "$") -> None:
        """Count one withheld value, and the answer field it was in, for the event
        (never logged raw)."""
        ...


def _joins(before: str, after: str | None) -> bool:
    """Whether a single space between these characters can lie inside one value.

    Digit groups (``4111 1111``, ``+1 (415) 555``), and letters next to digits
    (``GB82 WEST``, ``AB 12 34 56 C``); ``after`` None means not seen yet, and so does
    a backslash: it can start an escape (``\\u0034``) not yet complete.
    """
    if after == "\\":
        after = None
    if before in _DIGITS or before == ")":
        return after is None or after in _DIGITS or after in _UPPER or after in "(+"
    if before in _UPPER:
        return after is None or after in _DIGITS
    return False


def value_tail_start(text: str) -> int:
    """Where the tail of ``text`` that could still grow into a withheld value begins.

    That is the last run of non-space characters (joined across single spaces as
    `_joins` allows; a trailing space that may still join is part of it), or an
    unfinished PEM block. ``len(text)`` when the text ends in a space that ends a run.

    The run is read as the detectors read it: full-width and other digits, tabs and
    Unicode spaces folded, invisible characters left out. Otherwise
    full-width ``"+1 41"`` or ``"4111\u200b 1111"`` would end a run the detectors
    see going on, and its first part would go out before the rest arrived.
    """
    if text.isascii() and "\t" not in text and "\\" not in text:
        return _tail_start(text)  # most text: its own view, and this runs per event
    at = _edge_as_read(text, _tail_start)
    assert at is not None  # _tail_start always finds a start
    return at


# A secret's key, its operator and a quote that has not closed on its line: the detectors
# read the value to the closing quote (spaces and all), so it is held from the quote.
_SECRET_WORDS = ("pass", "pw", "secret", "token", "key", "credential")
_QUOTE_OPERATORS = frozenset({"=", ":", ":=", "==", "===", "=>", "!=", "!=="})
_LAST_LINE = 400
_MAX_QUOTED = 256


def open_quoted_secret(text: str) -> int | None:
    """Where the value of a quoted secret that is still being written starts
    (``password = "correct horse`` …, ``"mrn": "MR 4002`` …), or None. Only the last
    line is read: for each kind of quote, its last occurrence, when a secret's key (or
    a key naming a kind) and an operator stand before it. String methods, no pattern:
    this runs for every streamed event. Failing that, a password's unquoted value that
    runs to the line's end (`open_plain_password`)."""
    line_start = max(text.rfind("\n") + 1, len(text) - _LAST_LINE)
    if '"' not in text and "'" not in text and "`" not in text:
        return open_plain_password(text, line_start)
    found: int | None = None
    for quote in "\"'`":
        at = text.rfind(quote, line_start)
        # An escaped quote (JSON's \") is part of the value, not its start.
        while at > line_start and _escaped(text, line_start, at):
            at = text.rfind(quote, line_start, at)
        if at != -1 and len(text) - at - 1 <= _MAX_QUOTED and _key_before(text, line_start, at):
            found = at + 1 if found is None else min(found, at + 1)
    return found if found is not None else open_plain_password(text, line_start)


# A password's key that starts a line, ":" and an unquoted value: the detectors read a
# YAML plain scalar of words to the line's end (``password: correct horse …``).
_PLAIN_PASSWORD_KEY = re.compile(
    r"[ \t]*(?:- )?(?:[\w.-]*(?:password|passwd|passphrase|pwd)|(?:[\w.-]*[_.-])?(?:pass|pw))",
    re.IGNORECASE,
)


def open_plain_password(text: str, line_start: int | None = None) -> int | None:
    """Where the unquoted value after a password's key that starts the last line begins,
    while that line is still being written (``password: correct horse`` …), or None.
    ``line_start`` is where the last line starts, when the caller knows it."""
    if line_start is None:
        line_start = text.rfind("\n") + 1
    colon = text.find(": ", line_start)
    if colon == -1 or len(text) - colon > _MAX_QUOTED:
        return None
    if _PLAIN_PASSWORD_KEY.fullmatch(text, line_start, colon) is None:
        return None
    start = colon + 2
    while text[start : start + 1] in (" ", "\t"):
        start += 1
    return None if text[start : start + 1] in ('"', "'", "`") else start


# A number the words after it may still name ("00123456 is the patient's MRN"): the
# detectors read such a label after the number, so the number is held while its sentence
# may still bring one: until the sentence ends, or the words after the verb outrun the
# longest label (`_NAMED_REACH`).
_NAMING_VERBS = tuple(f" {verb} " for verb in NAMING_VERBS)
_NAMING_VERB_WORDS = frozenset(NAMING_VERBS)
_NAMED_REACH = 64
_SENTENCE_ENDS = frozenset(".!?;\n")
_RUN_ALPHABET = string.ascii_letters + string.digits + "-"
_RUN_CHARS = frozenset(_RUN_ALPHABET)
_RUN_REST = re.compile(f"[{re.escape(_RUN_ALPHABET)}]*")


def open_named_number(text: str) -> int | None:
    """Where the last number of ``text`` starts when the words after it may still name
    its kind, or None. Only the last digit's run is read: a label after a number names
    the number right before its verb, with no other digits between."""
    tail_start = max(0, len(text) - _NAMED_REACH - 32)
    tail = text[tail_start:]
    # Every digit as "0", then one reverse memchr: a table lookup a character in C.
    if tail.isascii():
        last = tail.encode("ascii").translate(DIGITS_AS_ZERO).rfind(b"0")
    else:
        last = tail.translate(STR_DIGITS_AS_ZERO).rfind("0")
    if last == -1:
        return None
    rest_of_run = _RUN_REST.match(tail, last)
    assert rest_of_run is not None  # "*": it matches where nothing follows too
    end = rest_of_run.end()
    if end == len(tail):
        return None  # still being written: held as the text's last run
    if tail[end] != " ":
        return None
    # Most runs start after a space; one after other marks ("(12345678") is walked back.
    start = tail.rfind(" ", 0, last) + 1
    if _RUN_REST.fullmatch(tail, start, last) is None:
        start = last
        while start > 0 and tail[start - 1] in _RUN_CHARS:
            start -= 1
    run = tail[start:end]
    if not 5 <= len(run) <= 24 or len(run) - len(run.translate(DROP_DIGITS)) < 4:
        return None
    space = tail.find(" ", end + 1)
    if space == -1:
        # The verb may be on its way (" i", " wa").
        written = tail[end:]
        return tail_start + start if any(v.startswith(written) for v in _NAMING_VERBS) else None
    if tail[end + 1 : space] not in _NAMING_VERB_WORDS:
        return None
    rest = tail[space + 1 :]
    if len(rest) <= _NAMED_REACH and not _SENTENCE_ENDS.intersection(rest):
        return tail_start + start
    return None


def _key_before(text: str, line_start: int, at: int) -> bool:
    """Whether ``key = `` (or ``:``, ``:=``, ``=>``, ``==``, ``!=``; the key may be
    quoted, the value may start with ``@``) ends at ``at``, the key naming a secret."""
    i = at - 1 if at > line_start and text[at - 1] == "@" else at
    i = _blanks_before(text, line_start, i)
    j = i
    while j > line_start and text[j - 1] in "=:!>":
        j -= 1
    if text[j:i] not in _QUOTE_OPERATORS:
        return False
    i = _blanks_before(text, line_start, j)
    if i > line_start and text[i - 1] in "\"'":
        i -= 1
    k = i
    while k > line_start and i - k < 64 and (text[k - 1].isalnum() or text[k - 1] in "_-"):
        k -= 1
    name = text[k:i].lower()
    # Or a key that names a kind (`KEY_KINDS`): the output rule withholds its value whole.
    return any(word in name for word in _SECRET_WORDS) or (
        name.replace("_", "").replace("-", "") in KEY_KINDS
    )


def _escaped(text: str, line_start: int, at: int) -> bool:
    """Whether an odd number of backslashes stands before ``text[at]``."""
    i = at
    while i > line_start and text[i - 1] == "\\":
        i -= 1
    return (at - i) % 2 == 1


def _blanks_before(text: str, line_start: int, i: int) -> int:
    stop = max(line_start, i - 4)
    while i > stop and text[i - 1] in " \t":
        i -= 1
    return i


def _tail_start(text: str) -> int:
    size = len(text)
    i = size
    while i > 0:
        ch = text[i - 1]
        if not ch.isspace():
            i -= 1
            continue
        if ch == " " and i >= 2 and _joins(text[i - 2], text[i] if i < size else None):
            i -= 1
            continue
        break
    pem = text.rfind(_PEM_BEGIN)
    if 0 <= pem < i:
        end = text.find(_PEM_END, pem)
        if end < 0 or text.find("-----", end + len(_PEM_END)) < 0:
            return pem
    return i


def _run_end(text: str, pem: bool) -> int | None:
    """Where the run that ``text`` starts in ends, or None if it has not ended yet
    (read folded, as `value_tail_start` reads it)."""
    return _edge_as_read(text, functools.partial(_folded_run_end, pem=pem))


# A JSON escape that stands for one character (in a tool call's arguments, or written
# out by a model to hide a value): read as that character when finding a run's edges.
_ONE_CHAR_ESCAPE = re.compile(r'\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|[\\"/bfnrt])')
_ESCAPED = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _edge_as_read(text: str, find: Callable[[str], int | None]) -> int | None:
    """``find`` (where a run begins or ends) applied to ``text`` as the detectors read
    it, its one-character escapes decoded, then folded (`aiguard.classify` folding),
    and the offset it gives mapped back to ``text`` (the view's end to the text's end).
    Plain ASCII text is its own view."""
    starts: list[int] | None = None
    view = text
    if "\\" in text:
        pieces: list[str] = []
        starts = []
        pos = 0
        for match in _ONE_CHAR_ESCAPE.finditer(text):
            begin, end = match.span()
            pieces.append(text[pos:begin])
            starts.extend(range(pos, begin))
            escape = match.group()
            if escape[1] in "ux":
                pieces.append(chr(int(escape[2:], 16)))
            else:
                pieces.append(_ESCAPED.get(escape[1], escape[1]))
            starts.append(begin)
            pos = end
        pieces.append(text[pos:])
        starts.extend(range(pos, len(text)))
        view = "".join(pieces)
    if view.isascii() and "\t" not in view:
        at = find(view)
        if at is None or starts is None:
            return at
        return len(text) if at >= len(view) else starts[at]
    folded = _fold(view)
    at = find(folded.text)
    if at is None:
        return None
    if at >= len(folded.text):
        return len(text)
    at = folded.start(at)
    return starts[at] if starts is not None else at


def _folded_run_end(text: str, pem: bool) -> int | None:
    if pem:
        end = text.find(_PEM_END)
        close = text.find("-----", end + len(_PEM_END)) if end >= 0 else -1
        return None if close < 0 else close + 5
    for i, ch in enumerate(text):
        if ch.isspace():
            if ch == " " and i > 0 and _joins(text[i - 1], None):
                if i + 1 >= len(text):
                    return None
                if _joins(text[i - 1], text[i + 1]):
                    continue
            return i
    return None


def held_tail_start(text: str, hosts: bool = False) -> int:
    """Where the part of ``text`` that could still become a token begins (``len`` if none);
    with ``hosts``, also where a whole token begins that could still turn out to be a
    label of a host name (`aiguard.vault.tokens.open_host_start`).

    A token holds no ``[`` after its first character, so only the last ``[`` can start one.
    """
    start = text.rfind("[")
    if start < 0:
        return len(text)
    cut = start if _PREFIX_RE.fullmatch(text, start) is not None else len(text)
    if not hosts:
        return cut
    open_host = open_host_start(text)
    return cut if open_host is None else min(cut, open_host)


class TokenRestorer:
    """Replaces tokens by their originals; unknown token-shaped text passes unchanged.

    ``lookup`` maps a token to its original (None when the caller may not see one);
    ``rule`` is the output rule, applied to whole strings by `text` / `json_text` and
    to streamed text by `HoldBack`. `json_text` is for strings that are themselves JSON
    (tool arguments, structured output), where originals must be escaped.
    ``link_lookup``, when given, is asked instead of ``lookup`` for a token that stands
    in a link (`aiguard.vault.tokens.in_link`).
    """

    __slots__ = ("_link_lookup", "_lookup", "rule")

    def __init__(
        self, lookup: Lookup, rule: OutputRule | None = None, link_lookup: Lookup | None = None
    ) -> None:
        self._lookup = lookup
        self._link_lookup = link_lookup
        self.rule = rule

    def redact(self, text: str, path: str = "$") -> str:
        """``text`` with what the output rule withholds redacted (and counted)."""
        if self.rule is None or not text:
            return text
        return _redact_spans(text, self.rule.withheld(text), self.rule, 0, len(text), 0, path)

    def swap(self, text: str) -> str:
        """Tokens (and realistic surrogates of them) to originals, nothing else."""
        text = restore_surrogates(text, self._lookup, self._link_lookup)
        if "[" not in text:
            return text
        return self._swap_tokens(text, escape=False)

    def swap_json(self, text: str) -> str:
        """Tokens (and surrogates) to JSON-escaped originals, nothing else."""
        link_lookup = self._link_lookup
        text = restore_surrogates(
            text, _escaping(self._lookup), None if link_lookup is None else _escaping(link_lookup)
        )
        if "[" not in text:
            return text
        return self._swap_tokens(text, escape=True)

    def text(self, text: str, path: str = "$") -> str:
        return self.swap(self.redact(text, path))

    def json_text(self, text: str, path: str = "$") -> str:
        return self.swap_json(self.redact(text, path))

    def value(self, path: str, text: str) -> str:
        """For `map_strings`: JSON-in-a-string fields get escaped originals."""
        if path.endswith((".arguments", ".partial_json")) or _looks_json(text):
            return self.json_text(text, path)
        return self.text(text, path)

    def in_context(self, json_text: bool) -> Transform:
        """A restore for one streamed text channel that follows its JSON context."""
        return _ContextSwap(self._lookup, json_text, self._link_lookup)

    def _swap_tokens(self, text: str, escape: bool) -> str:
        """``text``'s tokens to originals (JSON-escaped with ``escape``); whether the text
        can hold a link at all is asked once, not for each of its tokens."""
        link_lookup = self._link_lookup
        if link_lookup is not None and not may_hold_links(text):
            link_lookup = None
        lookup = self._lookup

        def swap(match: re.Match[str]) -> str:
            token = match.group(0)
            if link_lookup is not None and in_link(text, match.start(), match.end()):
                original = link_lookup(token)
            else:
                original = lookup(token)
            if original is None:
                return token
            return _json_escaped(original) if escape else original

        return TOKEN_RE.sub(swap, text)


def _json_escaped(original: str) -> str:
    return json.dumps(original, ensure_ascii=False)[1:-1]


def _escaping(lookup: Lookup) -> Lookup:
    """``lookup`` with its originals JSON-escaped (for text inside a JSON string)."""

    def escaped(token: str) -> str | None:
        original = lookup(token)
        return None if original is None else _json_escaped(original)

    return escaped


class _ContextSwap:
    """Restores the tokens of one streamed text channel according to where they stand.

    A model may write JSON without being asked to (no ``response_format``, or inside a
    Markdown fence). An original restored raw inside a JSON string could close the
    string and add keys (``", "admin": true, "x": "``), so the channel's released text
    is followed: inside a double-quoted string an original is JSON-escaped, wherever the
    channel is; in a channel declared JSON (tool arguments, structured output) an
    original outside any string is written as a JSON string. In prose only originals
    holding a quote, a backslash or a control character, written between double
    quotes, change. With a ``link_lookup`` the last `LINK_REACH` characters released
    are kept, so that a token is known to stand in a link whose start was released in
    an earlier piece.
    """

    __slots__ = (
        "_escaped",
        "_json",
        "_link_escaped",
        "_link_lookup",
        "_lookup",
        "_released",
        "_released_size",
        "_state",
    )

    def __init__(self, lookup: Lookup, json_text: bool, link_lookup: Lookup | None = None) -> None:
        self._lookup = lookup
        self._escaped = _escaping(lookup)
        self._link_lookup = link_lookup
        self._link_escaped = None if link_lookup is None else _escaping(link_lookup)
        self._json = json_text
        self._state = JsonState()
        #: The pieces released last, joined only when a token needs what stood before it.
        self._released: list[str] = []
        self._released_size = 0

    @property
    def keeps_links(self) -> bool:
        """Whether tokens in links stay (a link lookup was given)."""
        return self._link_lookup is not None

    def __call__(self, text: str, ahead: str = "") -> str:
        """The piece ``text``, restored; ``ahead`` is the text the channel holds after it."""
        link_lookup = self._link_lookup
        surrogates = may_hold_surrogates(text)
        before = ""
        if link_lookup is not None:
            if surrogates or "[" in text:
                before = "".join(self._released)
            self._released.append(text)
            self._released_size += len(text)
            if self._released_size > 2 * (LINK_REACH + 1):
                self._trim()
        if surrogates:
            if self._json or self._state.in_string:
                text = restore_surrogates(text, self._escaped, self._link_escaped, before, ahead)
            else:
                text = restore_surrogates(text, self._lookup, link_lookup, before, ahead)
        text, self._state = swap_in_context(
            text, self._lookup, self._state, self._json, link_lookup, before, ahead
        )
        return text

    def _trim(self) -> None:
        """Keep the last `LINK_REACH` + 1 characters released: one more than the reach,
        so a run that fills the whole window is told apart from one that starts at its
        first character."""
        kept = "".join(self._released)[-(LINK_REACH + 1) :]
        self._released = [kept]
        self._released_size = len(kept)


def _looks_json(text: str) -> bool:
    stripped = text.strip()
    if len(stripped) < 2 or (stripped[0], stripped[-1]) not in {("{", "}"), ("[", "]")}:
        return False
    try:
        return isinstance(json.loads(stripped), (dict, list))
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        return False


def _too_deep() -> MalformedPayload:
    return MalformedPayload(
        "a streamed event holds JSON nested too deeply for aiguard to inspect it; the "
        "stream was stopped. Check what the upstream sends (no model event nests this deep)"
    )


def _redact_spans(
    text: str,
    spans: Sequence[tuple[int, int, str]],
    rule: OutputRule,
    lo: int,
    hi: int,
    shift: int,
    path: str = "$",
) -> str:
    """``text[lo:hi]`` with every span inside redacted; span offsets are ``shift`` ahead.

    A span that began before ``lo`` (in text already released) is redacted from ``lo``.
    """
    pieces: list[str] = []
    cursor = lo
    for span_start, span_end, kind in spans:
        end = span_end - shift
        if end <= lo or span_start - shift >= hi:
            continue
        start = max(span_start - shift, lo)
        pieces.append(text[cursor:start])
        pieces.append(f"[REDACTED:{kind}]")
        rule.record_leak(kind, text[start:end], path)
        cursor = end
    if not pieces:
        return text[lo:hi]
    pieces.append(text[cursor:hi])
    return "".join(pieces)


class HoldBack:
    """One text channel (a choice's content, a tool call's arguments, a content block).

    `feed` returns at once every character that can no longer be part of a token (nor,
    with an output ``rule``, of a value the rule withholds), redacted and restored. Held
    text is at most `MAX_HOLD` characters without a rule, ``limit`` with one. `flush`
    releases what is held (end of the channel).
    """

    __slots__ = (
        "_ahead",
        "_context",
        "_held",
        "_limit",
        "_restore",
        "_rule",
        "_suppress",
        "path",
    )

    def __init__(
        self,
        restore: Transform,
        rule: OutputRule | None = None,
        limit: int = DEFAULT_HOLD_LIMIT,
        path: str = "$",
    ) -> None:
        self._restore = restore
        #: The restore again when it keeps tokens in links and reads the held text after
        #: a piece: then a whole token is held while it may still be a host name's label.
        self._ahead = restore if isinstance(restore, _ContextSwap) and restore.keeps_links else None
        #: The answer field this channel is, for the event's count of redactions.
        self.path = path
        self._rule = rule
        self._limit = limit
        self._held = ""
        self._context = ""
        #: After an overlong run was redacted: drop text until that run ends.
        #: None: not suppressing; False: a plain run; True: a PEM block.
        self._suppress: bool | None = None

    @property
    def held(self) -> str:
        return self._held

    def feed(self, text: str) -> str:
        rule = self._rule
        if rule is None:
            if self._held:
                text = self._held + text
            elif "[" not in text:
                return self._restore(text) if text else text
            cut = held_tail_start(text, self._ahead is not None)
            self._held = text[cut:]
            return self._release(text[:cut]) if cut else ""
        buf = self._held + text
        if self._suppress is not None:
            end = _run_end(buf, self._suppress)
            if end is None:
                # Keep a trailing space and the character before it: they may still join.
                self._held = buf[-2:] if buf.endswith(" ") else ""
                return ""
            self._suppress = None
            buf = buf[end:]
        cut = min(held_tail_start(buf, self._ahead is not None), value_tail_start(buf))
        context = self._context
        window = context + buf if context else buf
        quoted = open_quoted_secret(window)
        if quoted is not None:
            cut = min(cut, max(quoted - len(context), 0))
        # Only text not yet released can be held: a number followed by a space is held
        # from then on, so a number whose label may still come is always in ``buf``.
        named = open_named_number(buf) if buf else None
        if named is not None:
            cut = min(cut, named)
        spelled = open_spelled_number(buf)
        if spelled is not None:
            cut = min(cut, spelled)
        spans = rule.withheld(window)
        shift = len(context)
        # A withheld value that reaches into the held tail is held whole.
        for start, end, _kind in reversed(spans):
            if end - shift > cut:
                cut = min(cut, max(start - shift, 0))
        released = _redact_spans(buf, spans, rule, 0, cut, shift, self.path) if spans else buf[:cut]
        held = buf[cut:]
        if len(held) > self._limit:
            # Fail closed: whatever the held run is, it does not go out.
            rule.record_leak("held_text", held, self.path)
            released += _OVERLONG
            self._suppress = held.startswith(_PEM_BEGIN)
            end = _run_end(held, self._suppress)
            if end is None:
                held = ""
            else:
                self._suppress = None
                held = held[end:]
        self._held = held
        if released:
            self._context = (context + released)[-_CONTEXT:]
            return self._release(released)
        return ""

    def _release(self, text: str) -> str:
        """``text`` restored, with the held text as what follows it (a token released
        here may run on into the held one: "[A].[B].evil.example.com")."""
        if self._ahead is not None and self._held:
            return self._ahead(text, self._held)
        return self._restore(text)

    def flush(self) -> str:
        held, self._held = self._held, ""
        if not held:
            return ""
        rule = self._rule
        if rule is not None:
            if self._suppress is not None:
                self._suppress = None
                return ""
            context = self._context
            spans = rule.withheld(context + held)
            if spans:
                held = _redact_spans(held, spans, rule, 0, len(held), len(context), self.path)
            self._context = (context + held)[-_CONTEXT:]
        return self._restore(held)


@dataclass(frozen=True, slots=True)
class SSEFrame:
    """One server-sent event as received: its fields and its exact bytes.

    ``data`` is None for frames without a data field (keep-alive comments, stray blank
    lines); such frames are passed through untouched unless the output rule withholds
    something in their text.
    """

    raw: bytes
    data: str | None = None
    event: str | None = None
    id: str | None = None


_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Incremental server-sent events decoder (WHATWG rules) over arbitrary byte chunks.

    Only the current, incomplete frame is buffered. A CR at the very end of a chunk is
    taken as a line end at once; an LF opening the next chunk then completes the same
    CRLF instead of making an empty line.
    """

    def __init__(self) -> None:
        self._partial = bytearray()
        self._raw = bytearray()
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._after_cr = False
        self._first_line = True

    def feed(self, chunk: bytes) -> list[SSEFrame]:
        if (
            chunk[-2:] == b"\n\n"
            and chunk[:6] == b"data: "
            and not self._raw
            and not self._partial
            and not self._after_cr
            and chunk.count(b"\n") == 2
            and b"\r" not in chunk
        ):
            # What most upstreams send: one whole event of one data line per read. The
            # line-by-line path below gives the same frame, at several times the cost.
            self._first_line = False
            return [SSEFrame(chunk, chunk[6:-2].decode("utf-8", "replace"))]
        frames: list[SSEFrame] = []
        start = 0
        size = len(chunk)
        if self._after_cr and size:
            self._after_cr = False
            if chunk[0] == 0x0A:
                self._raw += b"\n"
                start = 1
        while start < size:
            match = _LINE_END.search(chunk, start)
            if match is None:
                self._partial += chunk[start:]
                break
            end = match.end()
            if self._partial:
                self._partial += chunk[start : match.start()]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = chunk[start : match.start()]
            self._raw += line
            self._raw += chunk[match.start() : end]
            self._after_cr = end == size and chunk[end - 1] == 0x0D
            self._line(line, frames)
            start = end
        return frames

    def close(self) -> list[SSEFrame]:
        """End of stream: the unterminated rest, as one frame, if there is any."""
        frames: list[SSEFrame] = []
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._raw += line
            self._line(line, frames)
        if self._raw:
            frames.append(self._dispatch())
        return frames

    def _line(self, line: bytes, frames: list[SSEFrame]) -> None:
        if self._first_line:
            self._first_line = False
            if line.startswith(_BOM):
                line = line[len(_BOM) :]
        if not line:
            frames.append(self._dispatch())
            return
        if line[0] == 0x3A:  # a comment: keep-alives live here
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self._id = value.decode("utf-8", "replace")

    def _dispatch(self) -> SSEFrame:
        data = "\n".join(self._data) if self._data else None
        frame = SSEFrame(bytes(self._raw), data, self._event, self._id)
        self._raw.clear()
        self._data.clear()
        self._event = None
        self._id = None
        return frame


def encode_frame(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE frame with LF line ends; multi-line data becomes several data lines."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {part}" for part in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


Key = tuple[Any, ...]


def _drained(chunk: dict[str, Any]) -> bool:
    """A chat chunk whose only payload was text that is now held back."""
    if chunk.get("usage"):
        return False
    for choice in chunk["choices"]:
        if not isinstance(choice, dict) or choice.get("finish_reason") or choice.get("logprobs"):
            return False
        if choice.get("text") or not _empty(choice.get("delta", {}), True):
            return False
    return True


def _empty(node: Any, top: bool) -> bool:
    """Nothing but emptied text, list positions and (in a content part) its type."""
    cls = node.__class__
    if cls is str:
        return not node
    if cls is dict:
        for k, v in node.items():
            if k == "index" or (k == "type" and not top):
                continue
            if v.__class__ is str:
                if v:
                    return False
            elif not _empty(v, False):
                return False
        return True
    if cls is list:
        return all(_empty(v, False) for v in node)
    return False


def _within(prefix: Key) -> Callable[[Key], bool]:
    return lambda key: key[: len(prefix)] == prefix


@dataclass(slots=True)
class _Channel:
    hold: HoldBack
    #: Builds the data of a frame that carries text flushed out of this channel.
    make: Callable[[str], dict[str, Any]]
    event: str | None


#: The fields of Anthropic events that carry no text: anything else in them is scanned.
_STOP_FIELDS = frozenset({"type", "index"})
_TEXT_EVENT_FIELDS = frozenset({"type", "index", "delta"})
_CHOICES_FIELD = frozenset({"choices"})
_PING_FIELDS = frozenset({"type"})
_ANTHROPIC_TYPES = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
    }
)
_ANTHROPIC_FIELDS = {
    "text_delta": "text",
    "input_json_delta": "partial_json",
    "thinking_delta": "thinking",
}
#: A text delta's own fields, per text field: anything else in the delta is scanned.
_DELTA_OWN_FIELDS = {name: frozenset({"type", name}) for name in _ANTHROPIC_FIELDS.values()}
#: Fields that carry bytes (audio, images, signatures, encrypted state), not text: no
#: detector reads them, and changing one breaks it, so they pass untouched.
_OPAQUE_KEYS = frozenset(
    {"data", "signature", "encrypted_content", "b64_json", "partial_image_b64", "obfuscation"}
)
_JSON_FIELDS = frozenset({"arguments", "partial_json", "input"})
_OPAQUE_DELTAS = frozenset({"response.audio.delta"})
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
#: Strings found clean by the output rule, kept so the envelope repeated in every
#: event (ids, model names, object types) is scanned once.
_CLEAN_CACHE = 1024
_CLEAN_LENGTH = 256
_SCALARS = frozenset({int, float, bool, type(None)})


_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")


def _root(obj: Any) -> str:
    """Where field paths of an event start: its type, when it has a plain one."""
    kind = obj.get("type") if isinstance(obj, dict) else None
    if isinstance(kind, str) and _EVENT_TYPE.fullmatch(kind):
        return f"{kind}:$"
    return "$"


@functools.lru_cache(maxsize=1024)
def _key(name: str) -> str:
    """A key fit for a field path in an event (an upstream's key could hold a value)."""
    return name if _SAFE_KEY.fullmatch(name) else "*"


@functools.lru_cache(maxsize=64)
def _choice_paths(position: int) -> tuple[str, str]:
    """The field paths of a chat choice and of its delta (the same few in every chunk)."""
    return f"$.choices[{position}]", f"$.choices[{position}].delta"


_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


@dataclass
class StreamRestorer:
    """Restores tokens in a server-sent event stream, frame by frame, never splitting one.

    Feed it the upstream's bytes with `feed` and send on what it returns; call `close` at
    the end of the stream (or when the upstream failed) for what is still held. Frames it
    does not change go out byte for byte. Text deltas of known shapes go through one
    `HoldBack` per channel; other JSON frames have every string restored whole; non-JSON
    data is restored as text.

    >>> restorer = StreamRestorer(TokenRestorer({"[EMAIL_7Q2K]": "jane@example.com"}.get))
    >>> restorer.feed(b'data: {"choices":[{"index":0,"delta":{"content":"Hi [EMAIL_7Q"}}]}')
    b''
    """

    restorer: TokenRestorer
    #: Answered model and usage (``gen_ai.*`` keys), as the upstream reported them.
    meta: dict[str, Any] = field(default_factory=dict)
    #: The terminal event ([DONE], message_stop, response.completed) went to the caller.
    done: bool = False
    #: The upstream's own error type when it reported one inside the stream.
    upstream_error: str | None = None
    #: The request asked for JSON answers (structured output): text channels are JSON.
    json_content: bool = False
    #: Per channel, the most text held for the output rule (see the module docstring).
    hold_limit: int = DEFAULT_HOLD_LIMIT
    #: Whether a call of the named tool gets its arguments restored (the destination's
    #: ``restore_tool_arguments``); None: every tool's are. A tool whose name the
    #: stream has not said is taken as None.
    restores_tool: Callable[[str | None], bool] | None = None
    #: How a token in the arguments of a tool not restored is looked up (a count, and
    #: None: the token stays); without one such tokens are simply left.
    kept_lookup: Lookup | None = None
    _decoder: SSEDecoder = field(default_factory=SSEDecoder)
    #: The tool each tool call's place in the stream calls, as the stream named it.
    _tool_names: dict[Key, str | None] = field(default_factory=dict)
    #: Set while a tool's arguments that keep their tokens are scanned whole.
    _keeping: bool = False
    _kept_restorer: TokenRestorer | None = None
    _channels: dict[Key, _Channel] = field(default_factory=dict)
    _clean: set[str] = field(default_factory=set)
    #: Object keys of this stream's events the output rule found nothing in.
    _names: set[str] = field(default_factory=set)

    def feed(self, chunk: bytes) -> bytes:
        frames = self._decoder.feed(chunk)
        if not frames:
            return b""
        if len(frames) == 1:
            return b"".join(self._frame(frames[0]))
        return b"".join(piece for frame in frames for piece in self._frame(frame))

    def close(self) -> bytes:
        """The rest of the stream: the unterminated last frame and every held text."""
        out = [piece for frame in self._decoder.close() for piece in self._frame(frame)]
        out.extend(self._flush(lambda _key: True))
        return b"".join(out)

    @property
    def held(self) -> int:
        """Characters held back across all channels (bounded by channels x `MAX_HOLD`)."""
        return sum(len(c.hold.held) for c in self._channels.values())

    # -- frames ---------------------------------------------------------------------

    def _frame(self, frame: SSEFrame) -> list[bytes]:
        try:
            return self._read_frame(frame)
        except RecursionError:
            # Parsed, but too deep to walk, check or write again: stopped, never passed on.
            raise _too_deep() from None

    def _read_frame(self, frame: SSEFrame) -> list[bytes]:
        data = frame.data
        if data is None:
            return [self._dataless(frame.raw)]
        if data.startswith("[DONE]"):
            self.done = True
            return [*self._flush(lambda _key: True), frame.raw]
        try:
            obj = loads_event(data)
        except RecursionError:
            raise _too_deep() from None
        except ValueError:
            restored = self.restorer.text(data)
            return [frame.raw if restored == data else encode_frame(restored, frame.event)]
        if not read_whole(data, obj):
            # A key written twice: the event goes on as it was read, never with the
            # value the parse dropped (and so nothing here ever looked at).
            data = _dumps(obj)
            frame = SSEFrame(encode_frame(data, frame.event, frame.id), data, frame.event, frame.id)
        if not isinstance(obj, dict):
            return self._whole(frame, obj)
        if self.restorer.rule is not None and not self._names_known(obj):
            renamed = self._renamed(obj, "$")
            if renamed is not obj:
                # A value written as an object key: the event goes on with it redacted,
                # written anew even where nothing else in it changes.
                obj = renamed
                data = _dumps(obj)
                raw = encode_frame(data, frame.event, frame.id)
                frame = SSEFrame(raw, data, frame.event, frame.id)
        kind = obj.get("type")
        if "choices" in obj:
            return self._openai(frame, obj)
        if isinstance(kind, str):
            if kind.startswith("response."):
                return self._responses(frame, obj, kind)
            if kind in _ANTHROPIC_TYPES:
                return self._anthropic(frame, obj, kind)
        if "error" in obj or kind == "error":
            return self._error(frame, obj)
        return self._whole(frame, obj)

    def _scan_fields(self, obj: dict[str, Any], skip: Container[str], path: str) -> bool:
        """Scan ``obj``'s fields not in ``skip`` as whole values, in place; whether any
        changed. An envelope repeats in every event: numbers and strings already found
        clean are skipped."""
        changed = False
        clean = self._clean
        for name, value in obj.items():
            cls = value.__class__
            if name in skip or cls in _SCALARS or (cls is str and value in clean):
                continue
            scanned = self._scan(value, f"{path}.{_key(name)}", name)
            if scanned != value:
                obj[name] = scanned  # a value replaced, no key added: iterating is safe
                changed = True
        return changed

    def _names_known(self, event: dict[str, Any]) -> bool:
        """Whether every object key in ``event`` is one this stream already found clean
        (one set comparison per object, no call per level: this runs for every event)."""
        names = self._names
        pending: list[Any] = [event]
        while pending:
            node = pending.pop()
            if node.__class__ is dict:
                if not names.issuperset(node):
                    return False
                node = node.values()
            for value in node:
                cls = value.__class__
                if cls is dict or cls is list:
                    pending.append(value)
        return True

    def _renamed(self, node: Any, path: str) -> Any:
        """``node`` with every object key the output rule withholds redacted (counted
        under the key's path), or ``node`` itself when there is none; clean keys are
        remembered for the rest of the stream."""
        if node.__class__ is list:
            items = [self._renamed(value, f"{path}[{i}]") for i, value in enumerate(node)]
            same = all(new is old for new, old in zip(items, node, strict=True))
            return node if same else items
        if node.__class__ is not dict:
            return node
        out: dict[str, Any] = {}
        names = self._names
        changed = False
        for name, value in node.items():
            here = f"{path}.{_key(name)}"
            written = name
            if name not in names:
                written = self.restorer.redact(name, here)
                if written == name:
                    names.add(name)
                else:
                    changed = True
            renamed = self._renamed(value, here)
            changed = changed or renamed is not value
            out[written] = renamed
        return out if changed else node

    def _dataless(self, raw: bytes) -> bytes:
        """A frame without data (a comment, a keep-alive, an id or retry line) goes on
        byte for byte unless the output rule withholds something in its text."""
        if self.restorer.rule is None:
            return raw
        text = raw.decode("utf-8", "replace")
        if text in self._clean:
            return raw
        redacted = self.restorer.redact(text, "comment")
        if redacted == text:
            if len(text) <= _CLEAN_LENGTH and len(self._clean) < _CLEAN_CACHE:
                self._clean.add(text)
            return raw
        return redacted.encode("utf-8")

    def _whole(self, frame: SSEFrame, obj: Any) -> list[bytes]:
        restored = self._scan(obj, _root(obj), None)
        if restored == obj:
            return [frame.raw]
        return [encode_frame(_dumps(restored), frame.event, frame.id)]

    def _scan(self, node: Any, path: str, key: str | None) -> Any:
        """``node`` with every string restored and redacted as a whole value.

        Identifier-like fields (`STRUCTURAL_KEYS`) are only redacted, never restored;
        byte fields (`_OPAQUE_KEYS`) pass untouched.
        """
        if isinstance(node, str):
            if not node or node in self._clean or key in _OPAQUE_KEYS:
                return node
            restorer = self._kept() if self._keeping else self.restorer
            if key in STRUCTURAL_KEYS:
                out = restorer.redact(node, path)
            else:
                out = restorer.value(path, node)
            # Kept tokens are no sign of a clean string: elsewhere they are restored.
            if out == node and len(node) <= _CLEAN_LENGTH and not self._keeping:
                if len(self._clean) >= _CLEAN_CACHE:
                    self._clean.clear()
                self._clean.add(node)
            return out
        if isinstance(node, dict):
            if self.restores_tool is not None and not self._keeping:
                call = tool_call_arguments(node)
                if call is not None and not self.restores_tool(call[0]):
                    return {
                        k: (self._scan_kept if k == call[1] else self._scan)(
                            v, f"{path}.{_key(k)}", k
                        )
                        for k, v in node.items()
                    }
            return {k: self._scan(v, f"{path}.{_key(k)}", k) for k, v in node.items()}
        if isinstance(node, list):
            return [self._scan(v, f"{path}[{i}]", key) for i, v in enumerate(node)]
        return node

    def _scan_kept(self, node: Any, path: str, key: str | None) -> Any:
        """`_scan` for a tool's arguments that keep their tokens (the output rule applies)."""
        with self._keeping_tokens():
            return self._scan(node, path, key)

    @contextlib.contextmanager
    def _keeping_tokens(self) -> Iterator[None]:
        self._keeping = True
        try:
            yield
        finally:
            self._keeping = False

    def _kept(self) -> TokenRestorer:
        """The restorer of tool arguments that keep their tokens."""
        if self._kept_restorer is None:
            lookup = self.kept_lookup or _no_original
            self._kept_restorer = TokenRestorer(lookup, self.restorer.rule)
        return self._kept_restorer

    def _keeps_tool(self, name: str | None) -> bool:
        """Whether the arguments of a call of tool ``name`` keep their tokens."""
        return self.restores_tool is not None and not self.restores_tool(name)

    def _error(self, frame: SSEFrame, obj: dict[str, Any]) -> list[bytes]:
        error = obj.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        self.upstream_error = kind if isinstance(kind, str) and kind else "upstream_error"
        return [*self._flush(lambda _key: True), *self._whole(frame, obj)]

    def _channel(
        self,
        key: Key,
        json_text: bool,
        make: Callable[[str], dict[str, Any]],
        event: str | None,
        path: str,
        restore_tokens: bool = True,
        kept_tool: bool = False,
    ) -> _Channel:
        channel = self._channels.get(key)
        if channel is None:
            restorer = self._kept() if kept_tool else self.restorer
            restore = (
                restorer.in_context(json_text or self.json_content)
                if restore_tokens
                else _unchanged
            )
            hold = HoldBack(restore, restorer.rule, self.hold_limit, path)
            channel = _Channel(hold, make, event)
            self._channels[key] = channel
        return channel

    def _flush(self, which: Callable[[Key], bool]) -> list[bytes]:
        """Frames that carry the held text of the chosen channels, which then close."""
        out: list[bytes] = []
        for key in [k for k in self._channels if which(k)]:
            channel = self._channels.pop(key)
            text = channel.hold.flush()
            if text:
                out.append(encode_frame(_dumps(channel.make(text)), channel.event))
        return out

    def _released(self, channel: _Channel, text: str, finishing: bool) -> str:
        out = channel.hold.feed(text)
        return out + channel.hold.flush() if finishing else out

    # -- OpenAI chat completions and completions --------------------------------------

    def _openai(self, frame: SSEFrame, obj: dict[str, Any]) -> list[bytes]:
        model = obj.get("model")
        if obj.get("usage") is not None or (
            model.__class__ is str and self.meta.get("gen_ai.response.model") != model
        ):
            self.meta.update(usage_of(obj))  # the same model in every chunk: once is enough
        choices = obj.get("choices")
        if not isinstance(choices, list):
            return self._whole(frame, obj)
        # Every field besides the choices is a whole value (ids, usage, a provider's
        # extras); scanned first, so frames made for flushed text carry it scanned.
        changed = self._scan_fields(obj, _CHOICES_FIELD, "$")
        envelope = _Envelope(obj)
        before: list[bytes] = []
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            finishing = choice.get("finish_reason") is not None
            at, at_delta = _choice_paths(position)
            for name, value in choice.items():
                if name == "delta" and value.__class__ is dict:
                    changed |= self._delta(envelope, value, index, finishing, at_delta)
                elif name == "text" and isinstance(value, str):
                    changed |= self._completion_text(envelope, choice, index, finishing, at)
                elif name not in {"index", "finish_reason"}:
                    # logprobs, a provider's extras: whole values.
                    scanned = self._scan(value, f"{at}.{_key(name)}", name)
                    if scanned != value:
                        choice[name] = scanned
                        changed = True
            if finishing:
                before.extend(self._flush(_within(("chat", index))))
        if not changed:
            return [*before, frame.raw]
        if _drained(obj):
            return before  # all of its text is held; an empty chunk would only be noise
        return [*before, encode_frame(_dumps(obj), frame.event, frame.id)]

    def _delta(
        self, envelope: _Envelope, delta: dict[str, Any], index: Any, end: bool, at: str
    ) -> bool:
        """Every text field of a chat delta is a stream of its own (content, refusal,
        reasoning_content, a provider's extra field, a field in a content part)."""
        changed = False
        channels = self._channels
        for name, value in delta.items():
            if value.__class__ is str:
                channel = channels.get(("chat", index, name))
                if channel is not None:  # the common case: the next piece of a stream
                    out = self._released(channel, value, end)
                    if out != value:
                        delta[name] = out
                        changed = True
                    continue
            path = f"{at}.{_key(name)}"
            if name == "tool_calls" and isinstance(value, list):
                for position, call in enumerate(value):
                    if isinstance(call, dict):
                        changed |= self._chat_tool(
                            envelope, call, index, end, f"{path}[{position}]"
                        )
            elif name in STRUCTURAL_KEYS or name in _OPAQUE_KEYS:
                scanned = self._scan(value, path, name)
                if scanned != value:
                    delta[name] = scanned
                    changed = True
            else:
                out = self._part(envelope, index, end, (name,), value, path)
                if out != value:
                    delta[name] = out
                    changed = True
        return changed

    def _part(
        self,
        envelope: _Envelope,
        index: Any,
        end: bool,
        where: tuple[Any, ...],
        value: Any,
        path: str,
    ) -> Any:
        """One delta field, as streamed text channels keyed by their place in it."""
        if isinstance(value, str):
            key = ("chat", index, *where)
            channel = self._channels.get(key)
            if channel is not None:
                return self._released(channel, value, end)

            def make(rest: str) -> dict[str, Any]:
                return {
                    **envelope.fields,
                    "choices": [{"index": index, "delta": _rebuild(where, rest)}],
                }

            last = where[-1]
            json_text = (last[0] if isinstance(last, tuple) else last) in _JSON_FIELDS
            # A legacy ``function_call``'s arguments: the tool its object named.
            kept = json_text and self._keeps_tool(
                self._tool_names.get(("chat", index, *where[:-1]))
            )
            channel = self._channel(key, json_text, make, None, path, kept_tool=kept)
            return self._released(channel, value, end)
        if isinstance(value, dict):
            called = value.get("name")
            if self.restores_tool is not None and called.__class__ is str:
                place: Key = ("chat", index, *where)
                self._tool_names[place] = called
            out: dict[str, Any] = {}
            for name, item in value.items():
                sub = f"{path}.{_key(name)}"
                if (
                    name in STRUCTURAL_KEYS
                    or name in _OPAQUE_KEYS
                    or not isinstance(item, (str, dict, list))
                ):
                    out[name] = self._scan(item, sub, name)
                else:
                    shape = {k: value[k] for k in ("index", "type") if k in value}
                    out[name] = self._part(
                        envelope, index, end, (*where, (name, _Shape(shape))), item, sub
                    )
            return out
        if isinstance(value, list):
            return [
                self._part(
                    envelope,
                    index,
                    end,
                    (*where, item.get("index", i) if isinstance(item, dict) else i),
                    item,
                    f"{path}[{i}]",
                )
                for i, item in enumerate(value)
            ]
        return value

    def _chat_tool(
        self, envelope: _Envelope, call: dict[str, Any], index: Any, end: bool, at: str
    ) -> bool:
        changed = False
        position = call.get("index", 0)
        function = call.get("function")
        if self.restores_tool is not None and isinstance(function, dict):
            called = function.get("name")
            if called.__class__ is str:
                self._tool_names[("chat", index, "tool", position)] = called
        for name, value in list(call.items()):
            if name == "function" and isinstance(value, dict):
                for key, item in list(value.items()):
                    if key == "arguments" and isinstance(item, str):
                        key_ = ("chat", index, "tool", position)
                        channel = self._channels.get(key_)
                        if channel is None:

                            def make(rest: str) -> dict[str, Any]:
                                tool = {"index": position, "function": {"arguments": rest}}
                                choice = {"index": index, "delta": {"tool_calls": [tool]}}
                                return {**envelope.fields, "choices": [choice]}

                            path = f"{at}.function.arguments"
                            kept = self._keeps_tool(self._tool_names.get(key_))
                            channel = self._channel(key_, True, make, None, path, kept_tool=kept)
                        out = self._released(channel, item, end)
                    else:
                        out = self._scan(item, f"{at}.function.{_key(key)}", key)
                    if out != item:
                        value[key] = out
                        changed = True
            elif name != "index":
                scanned = self._scan(value, f"{at}.{_key(name)}", name)
                if scanned != value:
                    call[name] = scanned
                    changed = True
        return changed

    def _completion_text(
        self, envelope: _Envelope, choice: dict[str, Any], index: Any, end: bool, at: str
    ) -> bool:
        text: str = choice["text"]

        def make(rest: str) -> dict[str, Any]:
            return {**envelope.fields, "choices": [{"index": index, "text": rest}]}

        channel = self._channel(("chat", index, "text"), False, make, None, at + ".text")
        out = self._released(channel, text, end)
        choice["text"] = out
        return out != text

    # -- Anthropic messages ----------------------------------------------------------

    def _anthropic(self, frame: SSEFrame, obj: dict[str, Any], kind: str) -> list[bytes]:
        if kind == "content_block_delta":
            delta = obj.get("delta")
            name = _ANTHROPIC_FIELDS.get(delta.get("type", "")) if isinstance(delta, dict) else None
            text = delta.get(name) if isinstance(delta, dict) and name else None
            if not isinstance(delta, dict) or name is None or not isinstance(text, str):
                # Signatures pass untouched (opaque); any other delta is whole values.
                return self._whole(frame, obj)
            index = obj.get("index", 0)
            delta_type = delta["type"]

            def make(rest: str) -> dict[str, Any]:
                return {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": delta_type, name: rest},
                }

            json_text = name == "partial_json"
            tool = self._tool_names.get(("anthropic", index))
            path = f"content_block_delta:$.delta.{name}"
            # Signed thinking keeps its tokens as the model wrote them (restoring them
            # would void the signature); the output rule still applies to it, so a new
            # value is redacted, and a block so changed fails verification (closed).
            channel = self._channel(
                ("anthropic", index),
                json_text,
                make,
                "content_block_delta",
                path,
                restore_tokens=name != "thinking",
                kept_tool=json_text and self._keeps_tool(tool),
            )
            # A provider's extra fields beside the text (in the event or its delta) are
            # whole values, as in a chat chunk's envelope.
            extras = self._scan_fields(obj, _TEXT_EVENT_FIELDS, "content_block_delta:$")
            extras |= self._scan_fields(
                delta, _DELTA_OWN_FIELDS[name], "content_block_delta:$.delta"
            )
            out = channel.hold.feed(text)
            if out == text and not extras:
                return [frame.raw]
            if not out:
                return []
            delta[name] = out
            return [encode_frame(_dumps(obj), frame.event, frame.id)]
        if kind == "content_block_start" and self.restores_tool is not None:
            block = obj.get("content_block")
            called = tool_call_arguments(block) if isinstance(block, dict) else None
            if called is not None:
                self._tool_names[("anthropic", obj.get("index", 0))] = called[0]
        if kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                self.meta.update(usage_of(message))
            return self._whole(frame, obj)
        if kind == "content_block_stop":
            index = obj.get("index", 0)
            flushed = self._flush(_within(("anthropic", index)))
            if obj.keys() <= _STOP_FIELDS:
                return [*flushed, frame.raw]
            return [*flushed, *self._whole(frame, obj)]  # a provider's extra fields
        if kind == "message_delta":
            self.meta.update(usage_of(obj))
        elif kind == "message_stop":
            self.done = True
        if kind == "ping" and obj.keys() <= _PING_FIELDS:
            return [frame.raw]
        return [*self._flush(lambda _key: True), *self._whole(frame, obj)]

    # -- OpenAI Responses --------------------------------------------------------------

    @staticmethod
    def _responses_key(base: str, obj: dict[str, Any]) -> Key:
        return (
            "responses",
            base,
            obj.get("output_index"),
            obj.get("content_index"),
            obj.get("summary_index"),
        )

    def _responses_keeps(self, obj: dict[str, Any], kind: str) -> bool:
        """Whether this Responses event carries arguments of a tool that keeps its tokens:
        the tool its output item named, or an unnamed one for an arguments event."""
        if self.restores_tool is None:
            return False  # every tool's arguments are restored
        item = obj.get("item")
        place = ("responses", obj.get("output_index"))
        if isinstance(item, dict):
            called = tool_call_arguments(item)
            if called is not None:
                self._tool_names[place] = called[0]
        if place in self._tool_names:
            return not self.restores_tool(self._tool_names[place])
        base = kind.rsplit(".", 1)[0]
        return ("arguments" in base or base.endswith("_input")) and not self.restores_tool(None)

    def _responses(self, frame: SSEFrame, obj: dict[str, Any], kind: str) -> list[bytes]:
        keeps = self.restores_tool is not None and self._responses_keeps(obj, kind)
        text = obj.get("delta")
        if kind.endswith(".delta") and isinstance(text, str) and kind not in _OPAQUE_DELTAS:
            # Every text delta (output text, refusal, reasoning, summaries, transcripts,
            # tool arguments) is a channel; the rest of the event is whole values.
            base = kind.removesuffix(".delta")
            json_text = "arguments" in base or base.endswith("_input")
            root = _root(obj)
            template = {
                k: self._scan(v, f"{root}.{_key(k)}", k) for k, v in obj.items() if k != "delta"
            }

            def make(rest: str) -> dict[str, Any]:
                return {**template, "delta": rest}

            key = self._responses_key(base, obj)
            path = f"{root}.delta"
            channel = self._channel(
                key, json_text, make, frame.event, path, kept_tool=json_text and keeps
            )
            out = channel.hold.feed(text)
            if out == text and all(template[k] == obj[k] for k in template):
                return [frame.raw]
            if not out:
                return []
            return [encode_frame(_dumps({**template, "delta": out}), frame.event, frame.id)]
        before: list[bytes] = []
        if kind.endswith(".done"):
            before = self._flush(_within(self._responses_key(kind.removesuffix(".done"), obj)))
        response = obj.get("response")
        if isinstance(response, dict):
            self.meta.update(usage_of(response))
        if kind in _RESPONSES_TERMINAL:
            self.done = True
            if kind == "response.failed":
                self.upstream_error = "response_failed"
            before.extend(self._flush(lambda _key: True))
        elif kind == "response.error":
            self.upstream_error = "upstream_error"
        # .done frames, the completed response and output items carry whole text.
        if keeps:
            with self._keeping_tokens():
                return [*before, *self._whole(frame, obj)]
        return [*before, *self._whole(frame, obj)]


class _Envelope:
    """The fields of a chat chunk besides its choices and usage, for the frames that
    carry flushed text; read only when such a frame is made."""

    __slots__ = ("_fields", "_obj")

    def __init__(self, obj: dict[str, Any]) -> None:
        self._obj = obj
        self._fields: dict[str, Any] | None = None

    @property
    def fields(self) -> dict[str, Any]:
        if self._fields is None:
            self._fields = {k: v for k, v in self._obj.items() if k not in {"choices", "usage"}}
        return self._fields


def _unchanged(text: str) -> str:
    return text


def _no_original(_token: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Shape:
    """The fields that place a content part (its ``index`` and ``type``) in a frame."""

    fields: dict[str, Any]

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, str(v)) for k, v in self.fields.items())))


def _rebuild(where: tuple[Any, ...], rest: str) -> dict[str, Any]:
    """A delta holding only ``rest`` at the place ``where`` names (see `_part`)."""
    node: Any = rest
    for step in reversed(where[1:]):
        if isinstance(step, tuple):
            name, shape = step
            node = {**shape.fields, name: node}
        else:
            node = [node]
    return {where[0]: node}
