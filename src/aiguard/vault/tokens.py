"""Token format: ``[EMAIL_7Q2KX9M4T1B8C]`` — a typed label and a keyed suffix.

The suffix alphabet is Crockford's base32 (no I, L, O, U), so tokens survive a model
copying them and never spell words. Finding tokens in text uses one compiled pattern.

New suffixes are at least `MIN_SUFFIX` characters (65 bits of a keyed MAC), so a
caller cannot enumerate a scope's tokens by guessing them. Tokens issued before with
4 to 12 characters (`LEGACY_MIN_SUFFIX`) are still recognized, and restore only for
the subject (or principal) they were issued to (docs/keys.md).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from publicsuffixlist import PublicSuffixList

__all__ = [
    "LEGACY_MIN_SUFFIX",
    "MIN_SUFFIX",
    "MAX_LABEL",
    "MAX_TOKEN_LENGTH",
    "SUFFIX_ALPHABET",
    "TOKEN_RE",
    "Scope",
    "LINK_REACH",
    "HOST_REACH",
    "HOST_WINDOW",
    "format_token",
    "in_host",
    "in_link",
    "keyed_suffix",
    "may_hold_links",
    "open_host_start",
    "label_for",
    "JsonState",
    "restore_in_context",
    "scope_of",
    "swap_in_context",
]

SUFFIX_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_B32_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", SUFFIX_ALPHABET)

#: Characters of a newly issued suffix: 13 * 5 = 65 bits, beyond guessing.
MIN_SUFFIX = 13
#: The shortest suffix ever issued (before 65-bit suffixes); still parsed and restored.
LEGACY_MIN_SUFFIX = 4
MAX_SUFFIX = 26
#: The longest label a token has (``EMAIL``, ``CREDIT_CARD``, a custom kind's).
MAX_LABEL = 64
#: The longest text the token grammar accepts: ``[`` + label + ``_`` + suffix + ``]``.
MAX_TOKEN_LENGTH = 2 + MAX_LABEL + 1 + MAX_SUFFIX

TOKEN_RE = re.compile(r"\[([A-Z][A-Z0-9_]{0,63})_([0-9A-HJKMNP-TV-Z]{4,26})\]")


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a token means something: a tenant, and optionally one conversation in it."""

    tenant: str
    conversation: str | None = None
    #: Length-prefixed so ("a:b", None) and ("a", "b") can never share a key. Computed
    #: once: every token issued or looked up in the scope uses it.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        conv = self.conversation or ""
        object.__setattr__(self, "key", f"{len(self.tenant)}:{self.tenant}|{len(conv)}:{conv}")


@functools.lru_cache(maxsize=4096)
def scope_of(tenant: str, conversation: str | None = None) -> Scope:
    """``Scope(tenant, conversation)``, one object per pair: a scope is immutable, and
    making one (a frozen dataclass and its key) costs more than a call's other fields."""
    return Scope(tenant, conversation)


# What moves a text's JSON string state, and the tokens to restore.
# What moves a JSON channel's state, what is restored in it, and the output rule's
# redaction marker (written in place of a withheld value, which may stand outside a
# string: a card number written as a JSON number).
_REDACTION = "[REDACTED:"
Lookup = Callable[[str], "str | None"]
_CONTEXT_RE = re.compile(r'[\\"]|\[REDACTED:[a-z][a-z0-9_]*\]|' + TOKEN_RE.pattern)


#: Characters read back from a token to tell whether it stands in a link. A run of
#: text with no break in it longer than this before a token counts as a link.
LINK_REACH = 2048
# What ends a URL as renderers and clients find one: a blank, a quote, an angle bracket
# or a backtick.
_LINK_BREAK = re.compile(r"[\s\"'<>`]")
# What marks a URL: the two slashes after its scheme (or of a scheme-relative URL), also
# escaped as JSON or HTML writes them (a Markdown destination decodes entities); a host
# that starts with "www." (which renderers turn into a link with no scheme); a query's
# "?name=" (chat apps fetch a preview of a bare "host.tld/path?q=...").
_LINK_MARK = re.compile(
    r"(?:/|\\/|&#0*47;|&#x0*2f;|&sol;){2}|(?<![\w.-])(?-i:www)\.|\?[\w.%-]*="
    # A bare host's name and the slash or query after it ("evil.example/c/"): chat apps
    # link and preview "host.tld/path" with no scheme. A top-level label starts with a
    # letter and has two characters at least, so "v1.2/" and "e.g./" are no host.
    r"|[a-z0-9-]\.[a-z][a-z0-9-]*[a-z0-9](?::[0-9]{1,5})?(?:[/?]|\\/)",
    re.IGNORECASE,
)

#: Characters read after a token to tell whether it is a label of a host name. A run
#: of host-name characters longer than this after a token counts as one (fail closed):
#: no name in the DNS is longer.
HOST_REACH = 255
#: The text after a token that `in_host` reads: the reach and a token the reach cuts
#: (it still lengthens the run). A stream holds a token until this much follows it.
HOST_WINDOW = HOST_REACH + MAX_TOKEN_LENGTH + 1
# What may continue a token into a host name: a label's characters, a dot (also as the
# JSON escape or HTML entity a model can write for one), another token.
_HOST_START = frozenset(string.ascii_letters + string.digits + "-_.[\\&")
_DOT = r"(?:\.|\\u002[eE]|&#0*46;|&#[xX]0*2[eE];|&period;)"
_DOT_RE = re.compile(_DOT)
# An underscore too: the DNS resolves "_x.evil.example.com", and "x.download_file" is
# then one name whose top label is no domain, not ".download" with junk after it.
_LABEL_CHAR = r"(?:[A-Za-z0-9_-]|\[[A-Z][A-Z0-9_]{0,63}_[0-9A-HJKMNP-TV-Z]{4,26}\])"
# The rest of the token's label, then the labels after it (group 1, dots and all), and
# a trailing dot: the whole of a run (`_HOST_RUN`) that is a host name.
_HOST_AFTER = re.compile(rf"{_LABEL_CHAR}*((?:{_DOT}{_LABEL_CHAR}+)+){_DOT}?")
# A run of what a host name is written with; anything else ends it.
_HOST_RUN = re.compile(rf"(?:[A-Za-z0-9._-]|{_DOT}|{TOKEN_RE.pattern})*")
# The characters of such a run and of a token or escape not yet complete: how far a
# stream holds a token (more than the run, never less).
_HOST_TAIL = re.compile(r"[A-Za-z0-9._\-\[\]\\&#;]*")


def may_hold_links(text: str) -> bool:
    """Whether any token of ``text`` can stand in a link (`in_link`): not when it holds
    no slash, query, entity or "www.", is shorter than `LINK_REACH`, and no token in it
    runs on into a host name (`in_host`)."""
    return (
        "/" in text
        or "?" in text
        or "&" in text
        or "www." in text
        or len(text) > LINK_REACH
        or _GLUED.search(text) is not None
    )


# A token's closing bracket with what could go on into a host name after it; not a dot
# that ends a sentence ("[EMAIL_…]. Thanks", the common case).
_GLUED = re.compile(r"\](?:\.?[A-Za-z0-9_\-\[\\]|\.&)")


def in_host(text: str, end: int, ahead: str = "") -> bool:
    """Whether the token that ends at ``end`` is a label of a host name: what follows it
    (``ahead`` continues ``text``, for a stream) goes on with labels that hold a domain
    someone can register ("[EMAIL_…].evil.example.com", "[ACCOUNT_…]-x.evil.co.uk"; the
    Public Suffix List decides), or with a run of host-name characters longer than
    `HOST_REACH`.

    Restored there, the original is in a name a chat app links and previews without a
    scheme, and whose owner reads it from the DNS query even when no page loads.
    """
    following = text[end : end + 1] or ahead[:1]
    if not following or following not in _HOST_START:
        return False
    if ahead and len(text) - end < HOST_WINDOW:
        text, end = text[end:] + ahead[:HOST_WINDOW], 0
    run = _HOST_RUN.match(text, end, end + HOST_WINDOW)
    if run is None:  # pragma: no cover - the pattern matches the empty string
        return False
    if run.end() - end > HOST_REACH:
        return True
    labels = _HOST_AFTER.fullmatch(text, end, run.end())
    if labels is None:
        return False
    parent = _DOT_RE.sub(".", labels.group(1))[1:]
    return _registrable(parent)


def _registrable(name: str) -> bool:
    """Whether ``name`` holds a domain someone can register (an eTLD+1 of the Public
    Suffix List: "evil.example.com", "evil.co.uk", "x.github.io"; not "co.uk",
    "path.join" or "evil.example", whose top label no registry serves): a token is a
    label below it only then, "[EMAIL_…].evil.co.uk" and never "[EMAIL_…].os.path"."""
    return _public_suffixes().privatesuffix(name.lower()) is not None


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    # Parsing the bundled list takes about 60 ms: only when a token first runs into a
    # dotted name, not at import.
    return PublicSuffixList(accept_unknown=False)


def open_host_start(text: str) -> int | None:
    """Where the first token begins whose host-name run (`in_host`) is still open at the
    end of ``text``: the characters after it are all host-name characters, fewer than
    `HOST_WINDOW`, so what comes next may still make it "[EMAIL_…].evil.example.com".
    None when there is no such token. A stream holds text from there on, so a token it
    releases is read with all `in_host` reads after it."""
    size = len(text)
    lo = max(0, size - HOST_WINDOW - MAX_TOKEN_LENGTH)
    close = text.rfind("]", lo)
    if close < 0 or _HOST_TAIL.fullmatch(text, close + 1) is None:
        return None
    # The run of host-name characters the text ends with, read backwards from its end.
    run = _HOST_TAIL.match(text[lo:][::-1])
    run_start = size - (run.end() if run is not None else 0)
    for token in TOKEN_RE.finditer(text, run_start):
        if size - token.end() < HOST_WINDOW:
            return token.start()
    return None


def in_link(text: str, at: int, end: int | None = None) -> bool:
    """Whether the token at ``at`` stands in a URL: in a Markdown link or image, an
    HTML ``src`` or ``href``, a bare ``https://`` address or ``host.tld/path``, a URL in
    a tool's arguments; with the token's ``end``, also as a label of a host name
    (`in_host`).

    Restoring there puts the original into a request the reader's client may make on
    its own (an image loads when the answer is shown, a chat app fetches a preview):
    how a prompt injection exfiltrates data ("render [EMAIL_1] into this link"). A
    token is in a link when the text before it, back to the last blank, quote or angle
    bracket, holds a URL's mark (`_LINK_MARK`), or when it stands inside an unclosed
    ``<tag`` or ``<address`` that holds one (an HTML attribute, a Markdown destination
    in angle brackets: both may hold spaces, and an attribute line breaks). Text
    before the token that has no break within `LINK_REACH` characters counts as a link
    too."""
    if end is not None and in_host(text, end):
        return True
    lo = max(0, at - LINK_REACH)
    if (
        text.find("/", lo, at) == -1
        and text.find("?", lo, at) == -1
        and text.find("&", lo, at) == -1
        and text.find("www.", lo, at) == -1
    ):
        # No mark, so no link, unless a run with no break fills the whole reach.
        return lo > 0 and _LINK_BREAK.search(text, lo, at) is None
    # The last break before the token: the first one in the reversed text.
    brk = _LINK_BREAK.search(text[lo:at][::-1])
    if brk is None:
        return lo > 0 or _LINK_MARK.search(text, 0, at) is not None
    if _LINK_MARK.search(text, at - brk.start(), at) is not None:
        return True
    # A tag or an address opens with a letter or a slash after "<" ("x < y" does not).
    opening = text.rfind("<", lo, at)
    after = text[opening + 1 : opening + 2]
    return (
        opening != -1
        and (after.isalpha() or after == "/")
        and text.find(">", opening, at) == -1
        and _LINK_MARK.search(text, opening, at) is not None
    )


def restore_in_context(
    text: str, lookup: Callable[[str], str | None], link_lookup: Lookup | None = None
) -> str:
    """``text`` with its tokens restored where they stand, as a streamed text channel is
    (`aiguard.doors.streaming`): inside a double-quoted string an original is
    JSON-escaped, so a model writing JSON in prose or a Markdown fence cannot have an
    original holding ``", "admin": true`` close the string and add keys. Elsewhere an
    original is written as it is. Tokens ``lookup`` answers None for stay; a token
    that stands in a link (`in_link`) is looked up with ``link_lookup`` when one is
    given."""
    return swap_in_context(text, lookup, JsonState(), link_lookup=link_lookup)[0]


@dataclass(frozen=True, slots=True)
class JsonState:
    """Where a text that goes on in the next piece stands: inside a double-quoted string,
    and whether its first character is escaped (the last piece ended with a backslash)."""

    in_string: bool = False
    escaped: bool = False


def swap_in_context(
    text: str,
    lookup: Callable[[str], str | None],
    state: JsonState,
    json_text: bool = False,
    link_lookup: Lookup | None = None,
    before: str = "",
    ahead: str = "",
) -> tuple[str, JsonState]:
    """`restore_in_context` for one piece of a longer text, from ``state`` on; also the
    state after it. In ``json_text`` (a channel declared JSON) an original outside any
    string is written as a JSON string. ``before`` is the text released before this
    piece (at least `LINK_REACH` characters of it, when there is that much), and
    ``ahead`` the text held after it (a stream holds a token whose host-name run
    is still open), read to tell whether a token stands in a link."""
    if not text:
        return text, state
    in_string = state.in_string
    if "[" not in text and '"' not in text and "\\" not in text:
        # Nothing moves the state, but a pending escape is spent on the first character.
        return text, JsonState(in_string) if state.escaped else state
    pieces: list[str] = []
    cursor = 0
    escape_at = 0 if state.escaped else -1
    links = link_lookup is not None and (may_hold_links(text) or may_hold_links(before))
    for match in _CONTEXT_RE.finditer(text):
        found = match.group(0)
        at = match.start()
        if found == "\\":
            if at == escape_at:
                escape_at = -1
            elif in_string:
                escape_at = at + 1
            continue
        if found == '"':
            if at != escape_at:
                in_string = not in_string
            escape_at = -1
            continue
        if found.startswith(_REDACTION):
            if json_text and not in_string:
                # A withheld number: the redaction goes out as a string, so the JSON
                # stays valid.
                pieces.append(text[cursor:at])
                pieces.append(f'"{found}"')
                cursor = match.end()
            continue
        if link_lookup is not None and (
            in_host(text, match.end(), ahead)
            or (links and in_link(before + text[:at], len(before) + at))
        ):
            original = link_lookup(found)
        else:
            original = lookup(found)
        if original is None:
            continue
        if in_string:
            original = json.dumps(original, ensure_ascii=False)[1:-1]
        elif json_text:
            original = json.dumps(original, ensure_ascii=False)
        pieces.append(text[cursor:at])
        pieces.append(original)
        cursor = match.end()
    after = JsonState(in_string, escape_at == len(text))
    if not pieces:
        return text, after
    pieces.append(text[cursor:])
    return "".join(pieces), after


def label_for(kind: str) -> str:
    return kind.upper()


def keyed_suffix(mac: bytes, length: int) -> str:
    encoded = base64.b32encode(mac).decode("ascii").rstrip("=")
    return encoded.translate(_B32_TO_CROCKFORD)[:length]


def format_token(kind: str, suffix: str) -> str:
    return f"[{label_for(kind)}_{suffix}]"
