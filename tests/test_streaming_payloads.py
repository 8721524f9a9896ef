"""Streamed payloads beyond chat text: tool-call arguments, Responses events, Anthropic
tool input, and the output rule held across chunks (no partial leak, fail closed)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.context import CallContext
from aiguard.doors.streaming import (
    HoldBack,
    SSEDecoder,
    StreamRestorer,
    TokenRestorer,
    value_tail_start,
)
from aiguard.pipeline.call import Call
from aiguard.testing.fake import (
    Answer,
    ToolCall,
    _anthropic_stream,
    _openai_stream,
    _responses_stream,
)

ORIGINALS = {"[EMAIL_7Q2K]": "jane.doe@example.com", "[PERSON_AB12CD]": 'Jane "JD" Doe'}
SSN = "123-45-6780"
CARD = "4111 1111 1111 1111"
KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD"
SECRETS = (SSN, CARD, KEY)


# One guard for every check: building one per cut was a fifth of the exhaustive tests'
# time. Each check still gets a fresh Call, which is where a call's state lives.
_RULE_GUARD = aiguard.Guard()


def rule() -> Call:
    """The real output rule of a call that sent none of the secrets."""
    return Call(_RULE_GUARD, CallContext(), None)


def fragments(value: str, size: int = 4) -> set[str]:
    return {value[i : i + size] for i in range(len(value) - size + 1)}


FRAGMENTS = set().union(*(fragments(s) for s in SECRETS))


def assert_nothing_withheld(pieces: Iterable[str]) -> None:
    for piece in pieces:
        for fragment in FRAGMENTS:
            assert fragment not in piece, f"{piece!r} holds part of a withheld value"


def feed(chunks: Iterable[str], call: Call | None = None) -> list[str]:
    call = call or rule()
    hold = HoldBack(TokenRestorer(ORIGINALS.get).swap, call)
    out = [hold.feed(c) for c in chunks]
    out.append(hold.flush())
    return [o for o in out if o]


def cuts(text: str, positions: list[int]) -> list[str]:
    out, start = [], 0
    for cut in sorted(positions):
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


class TestValueTail:
    def test_the_last_word_is_held(self) -> None:
        """Only the run that is still being written can grow into a value."""
        assert value_tail_start("hello wor") == 6
        assert value_tail_start("hello world ") == len("hello world ")

    def test_digit_groups_stay_together(self) -> None:
        """A space after a digit group may continue a card or phone number."""
        assert value_tail_start("card 4111 1111 ") == 5
        assert value_tail_start("card 4111 1111 x") == len("card 4111 1111 ")

    def test_an_open_pem_block_is_held(self) -> None:
        """A private key spans lines; it is held from its BEGIN line until its END line."""
        text = "key:\n-----BEGIN PRIVATE KEY-----\nMIIEv\nabc"
        assert value_tail_start(text) == text.index("-----BEGIN")


class TestOutputRuleAcrossChunks:
    TEXT = f"SSN {SSN}, card {CARD}, key {KEY}; mail [EMAIL_7Q2K]."
    EXPECTED = (
        "SSN [REDACTED:us_ssn], card [REDACTED:credit_card], key [REDACTED:openai_key]; "
        "mail jane.doe@example.com."
    )

    def test_every_one_and_two_cut(self) -> None:
        """Any split of the text: the caller gets it redacted whole, never a fragment."""
        text = self.TEXT
        for i in range(len(text) + 1):
            out = feed(cuts(text, [i]))
            assert "".join(out) == self.EXPECTED, i
            assert_nothing_withheld(out)
        short = f"a {SSN} b"
        for i in range(len(short) + 1):
            for j in range(i, len(short) + 1):
                out = feed(cuts(short, [i, j]))
                assert "".join(out) == "a [REDACTED:us_ssn] b", (i, j)
                assert_nothing_withheld(out)

    def test_one_character_per_chunk_and_counted_once(self) -> None:
        """A leak fed character by character is redacted once and counted once."""
        call = rule()
        out = feed(list(self.TEXT + " again " + SSN + "."), call)
        assert "".join(out).endswith("again [REDACTED:us_ssn].")
        assert_nothing_withheld(out)
        assert dict(call.leaks) == {"us_ssn": 1, "credit_card": 1, "openai_key": 1}

    def test_plain_text_is_released_word_by_word(self) -> None:
        """Holding lasts only while the tail could still be a value: a finished word goes."""
        hold = HoldBack(TokenRestorer(ORIGINALS.get).swap, rule())
        assert hold.feed("Hello wor") == "Hello "
        assert hold.feed("ld, how") == "world, "
        assert hold.flush() == "how"

    def test_past_the_bound_the_held_text_is_redacted(self) -> None:
        """An endless run is never released: redacted at the bound, and its rest dropped."""
        call = rule()
        hold = HoldBack(str, call, limit=300)
        out = [hold.feed("start " + "A" * 200)]
        out += [hold.feed("B" * 200) for _ in range(5)]
        out.append(hold.feed("C end"))
        out.append(hold.flush())
        text = "".join(out)
        assert text == "start [REDACTED:held_text] end"
        assert "held_text" in call.leaks

    def test_values_the_call_sent_are_not_withheld(self) -> None:
        """A value that went out raw may come back."""
        call = rule()
        call.sent_text = f"my SSN is {SSN}"
        assert "".join(feed(cuts(f"yes {SSN}.", [6]), call)) == f"yes {SSN}."


def _escaped(value: str) -> str:
    return "".join(f"\\u{ord(ch):04x}" for ch in value)


#: Ways a model can write a value that the detectors read through (folding, escapes):
#: the hold-back must read a run's edges the same way, or it releases the first part
#: of a value before the rest arrives.
WRITTEN: dict[str, Callable[[str], str]] = {
    "full-width": lambda v: "".join(chr(ord(c) + 0xFEE0) if c != " " else c for c in v),
    "zero-width inside": "\u200b".join,
    "soft hyphens inside": "\u00ad".join,
    "no-break spaces": lambda v: v.replace(" ", "\u00a0"),
    "thin spaces": lambda v: v.replace(" ", "\u2009"),
    "tabs": lambda v: v.replace(" ", "\t"),
    "ideographic": lambda v: "".join(chr(ord(c) + 0xFEE0) if c != " " else "\u3000" for c in v),
    "arabic-indic digits": lambda v: "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in v),
    "\\u escapes": _escaped,
    "\\u escapes, digits only": lambda v: "".join(_escaped(c) if c.isdigit() else c for c in v),
    # As it arrives in a tool call's JSON arguments: the escapes' backslashes escaped.
    "\\u escapes in JSON text": lambda v: json.dumps(_escaped(v))[1:-1],
    "tabs in JSON text": lambda v: json.dumps(v.replace(" ", "\t"))[1:-1],
    # Form-encoded spaces, as in a URL's query ("?q=4111+1111+..."): no space at all.
    "plus for spaces": lambda v: v.replace(" ", "+").replace("-", "+"),
}


def _spelled_out(value: str) -> str:
    """Digits one by one with a space between, as call transcripts write numbers."""
    return " ".join(c for c in value if c.isdigit())


def assert_withheld_at_every_cut(text: str, written: str) -> None:
    """Cut anywhere, ``text`` reaches the caller with ``written`` redacted whole: no piece
    holds four characters of it."""
    windows = {written[i : i + 4] for i in range(len(written) - 3)}
    for i in range(len(text) + 1):
        out = feed(cuts(text, [i]))
        assert "[REDACTED:" in "".join(out), (text, i)
        for piece in out:
            assert not [w for w in windows if w in piece], (text, i, piece)


def test_a_withheld_number_in_a_json_channel_keeps_it_json_at_every_cut() -> None:
    """Tool arguments or structured output with a card number written as a number: cut
    anywhere, the caller gets valid JSON with the redaction as a string."""
    text = '{"card": 4111111111111111, "n": [1, 2], "note": "ok"}'
    for i in range(len(text) + 1):
        hold = HoldBack(TokenRestorer(ORIGINALS.get).in_context(True), rule())
        out = "".join(hold.feed(piece) for piece in cuts(text, [i])) + hold.flush()
        assert json.loads(out) == {"card": "[REDACTED:credit_card]", "n": [1, 2], "note": "ok"}


class TestWrittenFormsAcrossChunks:
    @pytest.mark.parametrize("form", sorted(WRITTEN))
    @pytest.mark.parametrize("value", [CARD, SSN])
    def test_every_cut_of_a_written_value(self, form: str, value: str) -> None:
        """Cut anywhere, a value written so that only folding or decoding reveals it is
        redacted whole: no piece the caller gets holds part of it."""
        written = WRITTEN[form](value)
        assert_withheld_at_every_cut(f"it is {written} ok", written)

    @pytest.mark.parametrize("dash", [False, True])
    @pytest.mark.parametrize(
        ("before", "value", "after"),
        [
            ("it is ", CARD, " ok"),
            # Nine bare digits are an SSN only after a word of its kind, spelled out too.
            ("my ssn is ", SSN, ". ok"),
        ],
    )
    def test_every_cut_of_a_value_spelled_out(
        self, before: str, value: str, after: str, dash: bool
    ) -> None:
        """Digits spelled out one by one (with spaces or dashes between) are held as one
        run and redacted whole."""
        written = _spelled_out(value)
        if dash:
            written = written.replace(" ", "-")
        assert_withheld_at_every_cut(before + written + after, written)

    def test_the_run_is_read_as_the_detectors_read_it(self) -> None:
        """Digit groups joined by a folded space or with invisible characters between
        them stay one run; an escape not yet complete may still be a digit."""
        full_width = "".join(chr(ord(c) + 0xFEE0) if c != " " else c for c in "4111 1111 ")
        assert value_tail_start("card " + full_width) == 5
        assert value_tail_start("card 4111\u200b \u200b1111") == 5
        assert value_tail_start("card 4111\u00a01111") == 5
        assert value_tail_start("card 4111\t1111 ") == 5
        assert value_tail_start("card \\u0034111 \\u00") == 5
        assert value_tail_start("card 4111 \\") == 5
        assert value_tail_start("ok \\u0041 done") == len("ok \\u0041 ")


def _sse(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(obj).encode() + b"\n\n"


def _restored_stream(stream: bytes, cut: int | None = None) -> bytes:
    core = StreamRestorer(TokenRestorer(ORIGINALS.get, rule()))
    if cut is None:
        return core.feed(stream) + core.close()
    return core.feed(stream[:cut]) + core.feed(stream[cut:]) + core.close()


_CHUNK = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
_TEXT_DELTA = {"type": "text_delta", "text": "hi"}
#: Text the hold-back releases at once, so the event goes out with its other fields.
_SAID = {"type": "text_delta", "text": "Hello there. "}
#: Places in an event a value can sit outside a text field: as an object key at every
#: level, in a comment line, in the extra fields of events that carry no text.
SMUGGLED = {
    "chat, top-level key": _sse({**_CHUNK, CARD: 1, "choices": [{"index": 0, "delta": {}}]}),
    "chat, choice key": _sse({**_CHUNK, "choices": [{"index": 0, CARD: 1, "delta": {}}]}),
    "chat, delta key": _sse({**_CHUNK, "choices": [{"index": 0, "delta": {CARD: "v"}}]}),
    "chat, nested key": _sse(
        {**_CHUNK, "choices": [{"index": 0, "delta": {}, "logprobs": {"x": [{CARD: 1}]}}]}
    ),
    "responses, key": _sse({"type": "response.output_text.delta", "delta": "hi", CARD: 1}),
    "anthropic, delta key": _sse(
        {"type": "content_block_delta", "index": 0, "delta": {**_TEXT_DELTA, CARD: 1}},
        "content_block_delta",
    ),
    "anthropic, text delta field": _sse(
        {"type": "content_block_delta", "index": 0, "delta": {**_SAID, "note": CARD}},
        "content_block_delta",
    ),
    "anthropic, text event field": _sse(
        {"type": "content_block_delta", "index": 0, "note": CARD, "delta": _SAID},
        "content_block_delta",
    ),
    "anthropic, ping field": _sse({"type": "ping", "note": CARD}, "ping"),
    "anthropic, stop field": _sse(
        {"type": "content_block_stop", "index": 0, "note": CARD}, "content_block_stop"
    ),
    "comment line": f": note {CARD}\n\n".encode(),
    "whole event, key": _sse({"note": {CARD: [1, 2]}}),
}


class TestValuesOutsideTextFields:
    @pytest.mark.parametrize("name", sorted(SMUGGLED))
    def test_a_value_anywhere_in_an_event_is_withheld(self, name: str) -> None:
        stream = SMUGGLED[name] + b"data: [DONE]\n\n"
        for cut in (None, len(stream) // 2):
            out = _restored_stream(stream, cut)
            assert CARD.encode() not in out, (name, out)
            if name != "anthropic, delta key":  # re-framed with its text alone: dropped
                assert b"[REDACTED:credit_card]" in out, (name, out)

    def test_clean_keys_and_keep_alives_go_out_byte_for_byte(self) -> None:
        stream = (
            b": keep-alive\n\n"
            + _sse({**_CHUNK, "choices": [{"index": 0, "delta": {"content": "Hello there. "}}]})
            + b": keep-alive\n\n"
            + b"data: [DONE]\n\n"
        )
        assert _restored_stream(stream) == stream

    @settings(max_examples=150, deadline=None)
    @given(st.data())
    def test_a_key_planted_at_any_depth_is_withheld(self, data: st.DataObject) -> None:
        """A random event with the value as one object key somewhere in it."""
        keys = st.sampled_from(["a", "b", "note", "meta", "x_extra"])
        leaves = st.none() | st.integers(0, 9) | st.sampled_from(["ok", "fine"])
        tree = st.recursive(
            leaves,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
            max_leaves=8,
        )
        event = data.draw(st.dictionaries(keys, tree, min_size=1, max_size=3))
        # Walk to a random dict and put the value in as a key there.
        node: Any = event
        while True:
            children = [v for v in node.values() if isinstance(v, dict)]
            if not children or data.draw(st.booleans()):
                break
            node = data.draw(st.sampled_from(children))
        node[CARD] = data.draw(leaves)
        out = _restored_stream(_sse(event) + b"data: [DONE]\n\n")
        assert CARD.encode() not in out
        assert b"[REDACTED:credit_card]" in out


# -- re-framed formats: every cut gives the restored, redacted channels -------------------

ARGS = json.dumps({"name": "[PERSON_AB12CD]", "to": "[EMAIL_7Q2K]", "ssn": SSN})
ARGS_EXPECTED = json.dumps({"name": 'Jane "JD" Doe', "to": "jane.doe@example.com", "ssn": SSN})
ARGS_REDACTED = ARGS_EXPECTED.replace(SSN, "[REDACTED:us_ssn]")
TEXT = "Dear [PERSON_AB12CD], ok."
TEXT_EXPECTED = 'Dear Jane "JD" Doe, ok.'
ANSWER = Answer(TEXT, (ToolCall("send", ARGS),))


def run(stream: bytes, positions: list[int], json_content: bool = False) -> list[bytes]:
    core = StreamRestorer(TokenRestorer(ORIGINALS.get, rule()), json_content=json_content)
    out, start = [], 0
    for cut in [*sorted(positions), len(stream)]:
        out.append(core.feed(stream[start:cut]))
        start = cut
    out.append(core.close())
    return [o for o in out if o]


def events(chunks: list[bytes]) -> list[dict[str, object]]:
    decoder = SSEDecoder()
    out = []
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            if frame.data and frame.data != "[DONE]":
                out.append(json.loads(frame.data))
    return out


def chat_channels(chunks: list[bytes]) -> tuple[list[str], list[str]]:
    text, args = [], []
    for event in events(chunks):
        for choice in event["choices"]:  # type: ignore[attr-defined]
            delta = choice.get("delta", {})
            if delta.get("content"):
                text.append(delta["content"])
            for call in delta.get("tool_calls", []):
                piece = call.get("function", {}).get("arguments")
                if piece:
                    args.append(piece)
    return text, args


def responses_channels(chunks: list[bytes]) -> tuple[list[str], list[str]]:
    text, args = [], []
    for event in events(chunks):
        if event["type"] == "response.output_text.delta":
            text.append(str(event["delta"]))
        elif event["type"] == "response.function_call_arguments.delta":
            args.append(str(event["delta"]))
        elif event["type"] == "response.function_call_arguments.done":
            assert event["arguments"] == ARGS_REDACTED
        elif event["type"] == "response.output_text.done":
            assert event["text"] == TEXT_EXPECTED
    return text, args


def anthropic_channels(chunks: list[bytes]) -> tuple[list[str], list[str]]:
    text, args = [], []
    for event in events(chunks):
        if event["type"] == "content_block_delta":
            delta = event["delta"]
            assert isinstance(delta, dict)
            if delta["type"] == "text_delta":
                text.append(delta["text"])
            else:
                args.append(delta["partial_json"])
    return text, args


FORMATS: dict[str, tuple[bytes, Callable[[list[bytes]], tuple[list[str], list[str]]]]] = {
    "chat": (b"".join(_openai_stream(ANSWER, "m", 7)), chat_channels),
    "responses": (b"".join(_responses_stream(ANSWER, "m", 7)), responses_channels),
    "anthropic": (b"".join(_anthropic_stream(ANSWER, "m", 7)), anthropic_channels),
}


def check(name: str, positions: list[int]) -> None:
    stream, channels = FORMATS[name]
    text, args = channels(run(stream, positions))
    assert "".join(text) == TEXT_EXPECTED, (name, positions)
    joined = "".join(args)
    assert joined == ARGS_REDACTED, (name, positions)
    assert json.loads(joined)["name"] == 'Jane "JD" Doe'
    assert_nothing_withheld(args)
    for piece in text + args:
        assert "[PERSON_" not in piece and "[EMAIL_" not in piece


@pytest.mark.slow
class TestFormatsEveryCut:
    @pytest.mark.parametrize("name", sorted(FORMATS))
    def test_every_single_cut(self, name: str) -> None:
        """Each format, cut at every byte: exact restored text and valid restored JSON."""
        stream, _ = FORMATS[name]
        for i in range(len(stream) + 1):
            check(name, [i])

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(sorted(FORMATS)), st.lists(st.integers(0, 100_000), max_size=8))
    def test_any_cuts(self, name: str, raw: list[int]) -> None:
        """Two and more cuts anywhere in any format."""
        size = len(FORMATS[name][0]) + 1
        check(name, [c % size for c in raw])

    def test_two_cuts_around_the_arguments(self) -> None:
        """Exhaustive pairs of cuts over the bytes that carry the tool arguments (chat)."""
        stream, _ = FORMATS["chat"]
        first = stream.index(b'"arguments":"{')
        positions = range(first, min(len(stream), first + 160), 3)
        for i in positions:
            for j in positions:
                if j >= i:
                    check("chat", [i, j])

    def test_structured_output_content_is_json_escaped(self) -> None:
        """With response_format JSON, originals in the content are escaped as JSON."""
        content = json.dumps({"customer": "[PERSON_AB12CD]"})
        stream = b"".join(_openai_stream(content, "m", 5))
        text, _ = chat_channels(run(stream, [], json_content=True))
        assert json.loads("".join(text)) == {"customer": 'Jane "JD" Doe'}


@pytest.mark.parametrize(
    ("text", "written"),
    [
        (
            'config: password = "correct horse battery 9staple" done',
            "correct horse battery 9staple",
        ),
        ("set api_key = 'q8{z} |<x>, Lm;P9' then", "q8{z} |<x>, Lm;P9"),
        ('db:\n  password: "xK9#mP 2qLz wq"\n', "xK9#mP 2qLz wq"),
    ],
)
def test_a_quoted_secret_with_spaces_is_held_to_its_closing_quote(text: str, written: str) -> None:
    """A quoted value after a secret's key is one value up to its closing quote: cut
    anywhere, no word of it goes out before the quote closes and shows it whole."""
    assert_withheld_at_every_cut(text, written)


@pytest.mark.parametrize(
    ("text", "written"),
    [
        (
            "db:\n  user: app\n  password: correct horse battery staple\n  port: 1\n",
            "correct horse battery staple",
        ),
        ("user: app\npassword: tiger lily moon 42\n", "tiger lily moon 42"),
        ("- name: prod\n  db_password: Hunter two birds # rotated\n", "Hunter two birds"),
    ],
)
def test_a_yaml_passphrase_is_held_to_its_line_end(text: str, written: str) -> None:
    """A YAML plain scalar runs to the line's end: cut anywhere, no word of a password's
    words goes out before the line ends and shows them whole."""
    assert_withheld_at_every_cut(text, written)


def test_a_quoted_secret_holding_the_other_quote_is_held_whole() -> None:
    assert_withheld_at_every_cut('then password = "it\'s 9 my Secret" ok', "it's 9 my Secret")


@settings(max_examples=60)
@given(
    key=st.sampled_from(("password", "api_key", '"client_secret"', "db_pwd", "token")),
    operator=st.sampled_from((" = ", ": ", " := ", "=")),
    quote=st.sampled_from("\"'`"),
    words=st.lists(
        st.text("abcdefXYZ0123456789#!%&", min_size=2, max_size=9), min_size=1, max_size=5
    ),
    cut=st.integers(0, 200),
)
def test_a_quoted_secret_streamed_cut_anywhere_never_leaks_a_piece(
    key: str, operator: str, quote: str, words: list[str], cut: int
) -> None:
    """Whatever the quoted value holds, wherever the stream is cut: when the whole text
    shows it withheld, no piece the caller gets holds four characters of it."""
    value = " ".join(words)
    text = f"conf {key}{operator}{quote}{value}{quote} end"
    spans = rule().withheld(text)
    start = text.index(quote) + 1
    if not any(s <= start < e for s, e, _kind in spans):
        return  # too plain to be a secret: nothing to withhold
    windows = {value[i : i + 4] for i in range(len(value) - 3)} - {" " * 4}
    for piece in feed(cuts(text, [min(cut, len(text))])):
        assert not [w for w in windows if w in piece], (text, cut, piece)


@settings(max_examples=60)
@given(
    key=st.sampled_from(("mrn", "medical_record_number", "password", "ssn")),
    value=st.text('abcXYZ019 -"\\/é', min_size=6, max_size=40).filter(lambda v: v.strip()),
    before=st.sampled_from(("", '"a": 1, ', '"note": "ok", ')),
    cut=st.integers(0, 120),
)
def test_a_keyed_json_value_streamed_cut_anywhere_never_leaks_a_piece(
    key: str, value: str, before: str, cut: int
) -> None:
    """JSON a model streams (tool arguments): a value under a key naming a kind, with or
    without a shape of its own, escaped quotes and backslashes included. When the whole
    text shows it withheld, no piece the caller gets holds four characters of it."""
    written = json.dumps(value, ensure_ascii=False)[1:-1]
    text = f'{{{before}"{key}": "{written}", "z": 0}}'
    start = text.index(f'"{key}": "') + len(key) + 5
    spans = rule().withheld(text)
    if not any(s <= start < e for s, e, _kind in spans):
        return
    windows = {written[i : i + 4] for i in range(len(written) - 3)} - {" " * 4}
    pieces = feed(cuts(text, [min(cut, len(text))]))
    for piece in pieces:
        assert not [w for w in windows if w in piece], (text, cut, piece)


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("Found it: 00123456 is the patient's MRN, thanks", "00123456"),
        ("so D1234567 was her driver's license.", "D1234567"),
    ],
)
def test_a_number_named_after_it_is_held_until_its_label_arrives(text: str, written: str) -> None:
    """The detectors read a label after the number ("… is the patient's MRN"): cut
    anywhere, the number does not go out before the words that name it."""
    assert any(text[s:e] == written for s, e, _kind in rule().withheld(text))
    assert_withheld_at_every_cut(text, written)


def test_a_number_followed_by_other_words_is_not_held() -> None:
    """Only a verb that may start its naming holds a number: "shipped" releases it."""
    out = feed(["Order 12345678 shipped", " today and more"])
    assert out[0].startswith("Order 12345678 ")


def test_a_number_whose_sentence_ends_without_a_label_is_released() -> None:
    out = feed(["Order 12345678 is on its way. And", " then more"])
    assert out[0].startswith("Order 12345678 is on its way.")


@settings(max_examples=60)
@given(
    value=st.from_regex(r"[A-Z]?[0-9]{7,9}", fullmatch=True),
    verb=st.sampled_from(("is", "was")),
    label=st.sampled_from(
        ("the patient's MRN", "her medical record number", "my driver's license number")
    ),
    before=st.sampled_from(("", "Found it: ", "ok\n")),
    after=st.sampled_from(("", ".", ", thanks", " for the visit")),
    cut=st.integers(0, 120),
)
def test_a_number_named_after_it_streamed_cut_anywhere_never_leaks_a_piece(
    value: str, verb: str, label: str, before: str, after: str, cut: int
) -> None:
    """When the whole text shows the number withheld, no piece holds four of its
    characters, wherever the stream is cut."""
    text = f"{before}{value} {verb} {label}{after}"
    start = len(before)
    if not any(s <= start < e for s, e, _kind in rule().withheld(text)):
        return
    windows = fragments(value)
    for piece in feed(cuts(text, [min(cut, len(text))])):
        assert not [w for w in windows if w in piece], (text, cut, piece)
