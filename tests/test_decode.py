"""The decoding layer (`aiguard.classify._decode`): what a model or a caller can use to
smuggle a value is decoded before detection, and findings map back to the original
characters, whole encoded units included. Runs on the request side too."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import urllib.parse
import uuid
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.classify._decode import decode, detect_decoded
from aiguard.classify.detectors import builtin_detector, merge_findings
from aiguard.testing import FakeModel, InMemorySink

VALUES = {
    "email": "jane.doe@example.com",
    "credit_card": "4111 1111 1111 1111",
    "phone": "+1 415 555 2671",
}


def _pct(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _entities(value: str) -> str:
    return "".join(f"&#{ord(ch)};" if not ch.isalnum() else ch for ch in value)


def _escapes(value: str) -> str:
    return "".join(f"\\u{ord(ch):04x}" if not ch.isalnum() else ch for ch in value)


def _hex(value: str) -> str:
    return value.encode().hex()


def _b32(value: str) -> str:
    return base64.b32encode(value.encode()).decode()


def _b64_utf16(value: str) -> str:
    return base64.b64encode(value.encode("utf-16-le")).decode()


ENCODINGS = [
    _pct,
    _b64,
    _entities,
    _escapes,
    lambda v: _b64(_pct(v)),
    _hex,
    lambda v: "0x" + _hex(v).upper(),
    _b32,
    lambda v: _b32(v).rstrip("="),
    _b64_utf16,
    lambda v: base64.b64encode(v.encode("utf-16")).decode(),  # with a byte-order mark
]
DETECTORS = (builtin_detector(),)

# Prose around the value: letters, digits and punctuation that encode nothing.
_filler = st.text(alphabet="abcdefgh xyz,.;:!?()", max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    before=_filler,
    after=_filler,
    kind=st.sampled_from(sorted(VALUES)),
    encoding=st.sampled_from(range(len(ENCODINGS))),
)
def test_an_encoded_value_is_found_over_exactly_its_encoded_characters(
    before: str, after: str, kind: str, encoding: int
) -> None:
    encoded = ENCODINGS[encoding](VALUES[kind])
    text = f"{before} {encoded} {after}"
    found = [f for f in merge_findings(detect_decoded(DETECTORS, text)) if f.kind == kind]
    assert found, (text, kind)
    start = text.index(encoded)
    # The finding covers the encoded value whole, and nothing of the prose around it.
    assert any(f.start == start and f.end == start + len(encoded) for f in found), (
        text,
        [(f.start, f.end, f.kind) for f in found],
    )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
# Empty spans at a view's end (found by CI): they once mapped one past the text's end.
@example("%41x")
@example("\\\\0")
def test_decoded_spans_always_map_inside_the_text(text: str) -> None:
    """Any text: every view maps each of its spans back to a valid span of the text."""
    size = len(text)
    current = text
    for view in decode(text):
        for start in range(len(view.text) + 1):
            for end in (start, min(start + 3, len(view.text))):
                lo, hi = view.span(start, end)
                assert 0 <= lo <= hi <= len(current)
        current = view.text
    assert size == len(text)


def test_plain_prose_has_no_decoded_view() -> None:
    assert decode("The customer asked about the invoice; we replied within the hour.") == []
    # Long words are not base64 that decodes to text.
    assert decode("internationalization responsibilities") == []


def test_html_entities_and_escapes_decode() -> None:
    (view,) = decode("mail jane&#64;example.com or x\\u0040y.org")
    assert view.text == "mail jane@example.com or x@y.org"
    assert html.unescape("&commat;") == "@"
    (named,) = decode("jane&commat;example.com")
    assert named.text == "jane@example.com"


CARDS = ("4111 1111 1111 1111", "5555 5555 5555 4444", "3782 822463 10005")


def _form(value: str) -> str:
    """As a URL's query or a form writes it: a space is "+"."""
    return urllib.parse.quote_plus(value, safe="@.-")


def _spelled(value: str) -> str:
    """Digits one by one with a space between, as call transcripts write numbers."""
    return " ".join(ch for ch in value if ch.isdigit())


#: (kind, what is written before the value, the value as written): values written so
#: that they no longer look like one, each found over exactly its written characters.
DISGUISED = (
    [("credit_card", "", _form(card)) for card in CARDS]
    + [("credit_card", "", _spelled(card)) for card in CARDS]
    + [("credit_card", "", _spelled(card).replace(" ", "-")) for card in CARDS]
    + [
        ("phone", "", _form("+1 415 555 2671")),
        ("phone", "call+me+on+", "415+555+2671"),
        ("us_ssn", "q=my+ssn+", "078-05-1120"),
        ("us_ssn", "SSN ", _spelled("078-05-1120")),
        ("us_ssn", "SSN ", _spelled("078-05-1120").replace(" ", "-")),
        ("iban", "", _form("DE89 3704 0044 0532 0130 00")),
        ("email", "", "jane.doe(at)example(dot)com"),
        ("email", "", "jane.doe[at]example.co.uk"),
        ("email", "", "JANE.DOE{AT}EXAMPLE{DOT}COM"),
        ("email", "", "jane_doe(at)mail(dot)example(dot)org"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(before=_filler, after=_filler, case=st.sampled_from(DISGUISED))
def test_a_disguised_value_is_found_over_exactly_its_characters(
    before: str, after: str, case: tuple[str, str, str]
) -> None:
    """Form-encoded spaces, digits spelled out, "(at)" and "(dot)": the value is found,
    over the characters that write it and none of the words around it."""
    kind, label, written = case
    text = f"{before} {label}{written} {after}"
    found = [f for f in merge_findings(detect_decoded(DETECTORS, text)) if f.kind == kind]
    start = text.index(label + written) + len(label)
    assert [(f.start, f.end) for f in found] == [(start, start + len(written))], (text, found)


def test_what_looks_like_a_disguise_but_hides_nothing_is_left_alone() -> None:
    """No finding, and where nothing can hide a value, no second pass of the detectors."""
    for text in ("C++ and a+b", "meet me (at) noon", "(at)home", "x(dot)"):
        assert decode(text) == [], text
    for text in (
        "i+1 for i in range(10)",
        "[1 0 0 1 1 0 1 0 0 1 1 0 1 0 0 1 1 0]",
        "1 2 3 4 5 6 7 8 9 10",
        "version 2+3+4 of the table",
    ):
        assert merge_findings(detect_decoded(DETECTORS, text)) == [], text
    # A base64 image or file has a "+" every 64 characters or so: not read as words.
    blob = base64.b64encode(bytes(range(256)) * 8).decode()
    assert "+" in blob
    assert decode(f"data:image/png;base64,{blob}") == []
    # Hashes, ids and keys in hex or base32 decode to no text: no view, no finding.
    for seed in range(20):
        digest = hashlib.sha256(str(seed).encode()).digest()
        for written in (
            digest.hex(),
            "0x" + digest[:20].hex(),
            uuid.UUID(bytes=digest[:16]).hex,
            base64.b32encode(digest).decode(),
            base64.b32encode(digest[:10]).decode(),  # a TOTP secret's shape
        ):
            assert decode(f"commit {written} is deployed") == [], written


def test_request_side_tokenizes_disguised_values() -> None:
    """A caller's disguised value is tokenized over its characters: the words around it
    stay, and the upstream never gets it."""
    guard = aiguard.Guard(_policy(), sinks=[InMemorySink()])
    text = (
        "see https://maps.test/?q=my+ssn+078-05-1120&card=4111+1111+1111+1111 or "
        "card 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1, mail jane.doe(at)example(dot)com"
    )
    with guard.context(subject="s", purpose="inference"):
        protected = guard.protect(text, destination="openai")
    out = protected.payload
    for raw in ("078-05-1120", "4111+1111", "1 1 1 1 1", "jane.doe(at)"):
        assert raw not in out, out
    assert out.startswith("see https://maps.test/?q=my+ssn+[US_SSN_"), out
    assert "&card=[CREDIT_CARD_" in out and ", mail [EMAIL_" in out, out
    assert guard.restore(out, protected, restore_in_links=True) == text
    # Without it the URL keeps its tokens (a link shown to a reader can send them on).
    kept = guard.restore(out, protected)
    assert kept.startswith("see https://maps.test/?q=my+ssn+[US_SSN_"), kept
    assert kept.endswith(text[text.index(" or card ") :]), kept


def test_answer_side_withholds_disguised_values_whole_and_streamed() -> None:
    """A model's disguised value that the output rule withholds (regulated kinds; an
    e-mail address is not withheld by default, disguised or not) is withheld in a whole
    answer and in a streamed one; the words around it reach the caller as written."""
    answer = (
        "Open https://pay.test/?card=4111+1111+1111+1111&ok=1, or read it out: "
        "5 5 5 5 5 5 5 5 5 5 5 5 4 4 4 4. SSN 0 7 8 0 5 1 1 2 0, q=my+ssn+078-05-1120."
    )
    fake = FakeModel(reply=answer)
    guard = aiguard.Guard(_policy(), sinks=[InMemorySink()])
    client = guard.http_client(transport=fake.transport)
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    with guard.context(subject="s", purpose="inference"):
        whole = client.post("https://api.openai.com/v1/chat/completions", json=body)
        text = whole.json()["choices"][0]["message"]["content"]
        with client.stream(
            "POST", "https://api.openai.com/v1/chat/completions", json={**body, "stream": True}
        ) as streamed:
            events = [
                json.loads(line[6:])
                for line in streamed.read().decode().splitlines()
                if line.startswith("data: {")
            ]
    deltas = [e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]]
    assert len(deltas) > 10  # the fake streams the answer in small pieces
    assert "".join(deltas) == text
    for got in (text, *deltas):
        for leaked in ("4111+1111", "5 5 5 5", "4 4 4 4", "0 7 8", "078-05"):
            assert leaked not in got, got
    assert text == (
        "Open https://pay.test/?card=[REDACTED:credit_card]&ok=1, or read it out: "
        "[REDACTED:credit_card]. SSN [REDACTED:us_ssn], q=my+ssn+[REDACTED:us_ssn]."
    )


def _policy() -> aiguard.Policy:
    return aiguard.Policy(
        destinations={
            "openai": aiguard.DestinationPolicy(
                base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
            )
        }
    )


def test_request_side_protects_percent_and_base64_values() -> None:
    """A caller's percent-encoded or base64 value is tokenized like a plain one."""
    guard = aiguard.Guard(_policy(), sinks=[InMemorySink()])
    for encoded in (
        _pct(VALUES["email"]),
        _b64(VALUES["credit_card"]),
        _entities(VALUES["email"]),
    ):
        with guard.context(purpose="inference"):
            out = guard.protect(f"Contact {encoded} today", destination="openai")
        assert encoded not in out.payload, out.payload
        assert "[" in out.payload


def test_request_side_through_the_transport() -> None:
    """Through the wrapped client: the upstream never receives the encoded value, and
    the caller gets it back as it wrote it."""
    fake = FakeModel()
    guard = aiguard.Guard(_policy(), sinks=[InMemorySink()])
    client = guard.http_client(transport=fake.transport)
    encoded = _pct(VALUES["email"]) + " and " + _b64(VALUES["credit_card"])
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": f"Write to {encoded}"}],
    }
    with guard.context(subject="s", purpose="inference"):
        answer = client.post("https://api.openai.com/v1/chat/completions", json=body)
    sent = b"".join(r.body for r in fake.requests)
    assert _pct(VALUES["email"]).encode() not in sent
    assert _b64(VALUES["credit_card"]).encode() not in sent
    assert encoded in answer.json()["choices"][0]["message"]["content"]


# The single alternation the unit scanner replaces: the reference for what a unit is.
# Digits read out as words are not in it: their unit also replaces a base64 run it
# overlaps, which no alternation says (tests/test_spelled_numbers.py checks them).
_REFERENCE_UNITS = re.compile(
    r"(?P<pct>(?:%[0-9A-Fa-f]{2})+)"
    r"|(?P<ent>&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)"
    r"|(?P<esc>(?:\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|\\[\\/t])+)"
    r"|(?P<b64>(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{12,}={0,6}(?![A-Za-z0-9+/=_-]))"
    r"|(?P<plus>(?<![A-Za-z0-9])[A-Za-z0-9]+(?:\+[A-Za-z0-9]+)+)"
    r"|(?P<spaced>(?<![A-Za-z0-9+/=_-])[0-9](?: [0-9]){8,}(?![A-Za-z0-9+/=_-]))"
    r"|(?P<word>(?<=[A-Za-z0-9])[(\[{](?:[Aa][Tt]|[Dd][Oo][Tt])[)\]}](?=[A-Za-z0-9]))"
)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "%41",
                "%4",
                "&amp;",
                "&#64;",
                "&x",
                "\\u0041",
                "\\x4",
                "\\\\",
                "\\t",
                "\\n",
                "\\/",
                "=",
                "==",
                " ",
                "é",
                ".",
                "QUJDREVGR0hJSktM",
                "abcdefghijkl",
                "abc",
                "-",
                "_",
                "+/",
                "0",
                "+",
                "7 ",
                " 1 2 3 4 5 6 7 8",
                "(at)",
                "[DOT]",
                "{at]",
                "x",
                "\u0661",  # ARABIC-INDIC DIGIT ONE: not a [0-9] digit
            ]
        ),
        max_size=24,
    ).map("".join)
)
# A base64 run and words joined by "+" starting at one character: the run is taken.
@example("abcdefghijkl+x 4111+1111")
@example("=1 2 3 4 5 6 7 8 9 1 2 3 4 5 6 7 8 9 0")
@example("jane(at)example[DOT]com (at) x(at) 1 2 3 4 5 6 7 8 9(at)y")
def test_the_unit_scanner_finds_what_one_left_to_right_alternation_finds(text: str) -> None:
    """Units found by separate anchored scans are the alternation's, in order."""
    from aiguard.classify._decode import _units

    expected = [(m.start(), m.end(), m.lastgroup) for m in _REFERENCE_UNITS.finditer(text)]
    assert _units(text) == expected
