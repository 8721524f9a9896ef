"""The decoding layer (`aiguard.classify._decode`): what a model or a caller can use to
smuggle a value is decoded before detection, and findings map back to the original
characters, whole encoded units included. Runs on the request side too."""

from __future__ import annotations

import base64
import html
import re
import urllib.parse
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


ENCODINGS = [_pct, _b64, _entities, _escapes, lambda v: _b64(_pct(v))]
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
_REFERENCE_UNITS = re.compile(
    r"(?P<pct>(?:%[0-9A-Fa-f]{2})+)"
    r"|(?P<ent>&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)"
    r"|(?P<esc>(?:\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|\\[\\/t])+)"
    r"|(?P<b64>(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{12,}={0,2}(?![A-Za-z0-9+/=_-]))"
)


@settings(max_examples=500, deadline=None)
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
            ]
        ),
        max_size=20,
    ).map("".join)
)
def test_the_unit_scanner_finds_what_one_left_to_right_alternation_finds(text: str) -> None:
    """Units found by separate anchored scans are the alternation's, in order."""
    from aiguard.classify._decode import _units

    expected = [(m.start(), m.end(), m.lastgroup) for m in _REFERENCE_UNITS.finditer(text)]
    assert _units(text) == expected
