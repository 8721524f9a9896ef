"""The pure streaming core: token hold-back, SSE decoding and re-framing."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aiguard._json import dumps, dumps_bytes
from aiguard.doors.streaming import (
    MAX_HOLD,
    MAX_TOKEN_LENGTH,
    HoldBack,
    SSEDecoder,
    StreamRestorer,
    TokenRestorer,
    held_tail_start,
    loads_event,
)
from aiguard.testing.fake import _anthropic_stream, _openai_stream, _responses_stream
from aiguard.vault.tokens import HOST_REACH, HOST_WINDOW, TOKEN_RE

ORIGINALS = {
    "[EMAIL_7Q2K]": "jane.doe@example.com",
    "[PERSON_AB12CD]": 'Jane "JD" Doe',
    "[US_SSN_0123456789ABCDEFGHJKMNPQRS]": "123-45-6789",
}


def restorer(redact: bool = False) -> StreamRestorer:
    return StreamRestorer(TokenRestorer(ORIGINALS.get))


def restore(text: str) -> str:
    for token, original in ORIGINALS.items():
        text = text.replace(token, original)
    return text


def minimal_chat(text: str, size: int) -> bytes:
    """Chunks with nothing but choices: no id, no model, no created."""
    frames = [
        "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text[i : i + size]}}]})
        for i in range(0, len(text), size)
    ]
    frames.append('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
    frames.append("data: [DONE]")
    return ("\n\n".join(frames) + "\n\n").encode()


def frames_of(chunk: bytes) -> list[dict[str, object] | str]:
    decoder = SSEDecoder()
    out: list[dict[str, object] | str] = []
    for frame in [*decoder.feed(chunk), *decoder.close()]:
        if frame.data is None:
            continue
        out.append(frame.data if frame.data == "[DONE]" else json.loads(frame.data))
    return out


def chat_deltas(chunks: Iterable[bytes]) -> list[str]:
    """Every content delta the caller sees, chunk by chunk (frames never straddle chunks)."""
    deltas: list[str] = []
    for chunk in chunks:
        for frame in frames_of(chunk):
            if isinstance(frame, dict):
                for choice in frame["choices"]:  # type: ignore[attr-defined]
                    content = choice.get("delta", {}).get("content")
                    if content:
                        deltas.append(content)
    return deltas


def run(stream: bytes, cuts: Iterable[int]) -> list[bytes]:
    core = restorer()
    pieces: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        pieces.append(core.feed(stream[start:cut]))
        start = cut
    pieces.append(core.close())
    return [p for p in pieces if p]


def assert_no_partial_tokens(deltas: list[str]) -> None:
    for delta in deltas:
        for token in ORIGINALS:
            assert token not in delta, "a token reached the caller unrestored"
            for k in range(1, len(token)):
                assert not delta.endswith(token[:k]), f"{delta!r} ends with part of {token}"
            for k in range(1, len(token) - 1):  # a lone "]" is ordinary text
                assert not delta.startswith(token[k:]), f"{delta!r} starts with part of {token}"


ANSWER = "Hi [EMAIL_7Q2K], ok [1] [PERSON_AB12CD]!"


class TestHeldTail:
    def test_text_without_a_bracket_is_released(self) -> None:
        """Plain text is never held."""
        assert held_tail_start("hello world") == len("hello world")

    def test_brackets_that_cannot_start_a_token_are_released(self) -> None:
        """Citations, lowercase and closed brackets do not match the grammar's prefix."""
        for text in ("see [1", "a [b", "[EMAIL_7Q2K]", "[A-", "[EMAIL_7q"):
            assert held_tail_start(text) == len(text), text

    def test_a_possible_token_start_is_held(self) -> None:
        """The tail from the last bracket is held while it can still become a token."""
        assert held_tail_start("Hi [EMAIL_7Q") == 3
        assert held_tail_start("x [") == 2
        assert held_tail_start("[A_B] [US_SSN_0") == 6

    @given(st.from_regex(TOKEN_RE, fullmatch=True), st.data())
    def test_every_proper_prefix_of_a_token_is_held(self, token: str, data: st.DataObject) -> None:
        """No prefix of any grammatical token can slip out."""
        cut = data.draw(st.integers(1, len(token) - 1))
        assert held_tail_start("abc " + token[:cut]) == 4

    def test_the_bound_follows_the_grammar(self) -> None:
        """The longest token is 2 + 64 + 1 + 26 characters; one less is held while it may
        still become one, and with the host-name run after a whole token, what `in_host`
        reads after it (`HOST_WINDOW`) less one."""
        longest = "[" + "A" * 64 + "_" + "0" * 26 + "]"
        assert TOKEN_RE.fullmatch(longest) and len(longest) == MAX_TOKEN_LENGTH
        assert MAX_HOLD == MAX_TOKEN_LENGTH + HOST_WINDOW - 1 == 2 * MAX_TOKEN_LENGTH + HOST_REACH
        assert held_tail_start(longest[:-1]) == 0
        assert held_tail_start("[" + "A" * 65) == 66
        tail = "." + "a" * (HOST_WINDOW - 2)
        assert held_tail_start(longest + tail, hosts=True) == 0
        assert held_tail_start(longest + tail + "a", hosts=True) == len(longest + tail) + 1

    def test_a_whole_token_is_held_while_it_may_be_a_host_label(self) -> None:
        """With ``hosts``, a token is held while the host-name characters after it run to
        the end: "[EMAIL_…].evil.example" keeps the token, which the restore must see."""
        assert held_tail_start("Hi [EMAIL_7Q2K]", hosts=True) == 3
        assert held_tail_start("Hi [EMAIL_7Q2K].evil.exa", hosts=True) == 3
        assert held_tail_start("Hi [A_1234].[EMAIL_7Q2K]-x.e", hosts=True) == 3
        for done in ("Hi [EMAIL_7Q2K] ", "Hi [EMAIL_7Q2K].\n", "Hi [EMAIL_7Q2K]/x", "[A_1234] b"):
            assert held_tail_start(done, hosts=True) == len(done), done
        assert held_tail_start("Hi [EMAIL_7Q2K]") == len("Hi [EMAIL_7Q2K]")


class TestHoldBack:
    def test_split_token_is_released_whole_and_restored(self) -> None:
        """`[EMAIL_7Q` then `2K]` gives nothing, then the original."""
        hold = HoldBack(TokenRestorer(ORIGINALS.get).text)
        assert hold.feed("Hi [EMAIL_7Q") == "Hi "
        assert hold.feed("2K] bye") == "jane.doe@example.com bye"
        assert hold.flush() == ""

    def test_unknown_token_passes_through(self) -> None:
        """Token-shaped text that was never issued is not touched."""
        hold = HoldBack(TokenRestorer(ORIGINALS.get).text)
        assert hold.feed("[EMAIL_ZZZZ") == ""
        assert hold.feed("] x") == "[EMAIL_ZZZZ] x"

    def test_truncated_token_is_flushed_as_is(self) -> None:
        """An answer cut inside a token (max_tokens) ends with that text, unrestored."""
        hold = HoldBack(TokenRestorer(ORIGINALS.get).text)
        assert hold.feed("end [EMAIL_7Q") == "end "
        assert hold.flush() == "[EMAIL_7Q"

    @settings(max_examples=300)
    @given(st.lists(st.text(alphabet="[]AEMLI_7Q2K x", max_size=40), max_size=30))
    def test_held_text_stays_bounded_and_nothing_is_lost(self, parts: list[str]) -> None:
        """Whatever the cut, hold-back never exceeds the bound and output equals input."""
        hold = HoldBack(lambda text: text)
        out = []
        for part in parts:
            out.append(hold.feed(part))
            assert len(hold.held) <= MAX_HOLD
        out.append(hold.flush())
        assert "".join(out) == "".join(parts)


class TestSSEDecoder:
    STREAM = (
        b"\xef\xbb\xbf: comment\r\nevent: a\r\ndata: 1\r\ndata: 2\r\n\r\n"
        b"data: x\rid: 7\r\r"
        b": keep-alive\n\n"
        b"data:no-space\n\n"
        b"data: tail"
    )

    def decode(self, pieces: Iterable[bytes]) -> list[tuple[str | None, str | None, str | None]]:
        decoder = SSEDecoder()
        frames = [f for piece in pieces for f in decoder.feed(piece)] + decoder.close()
        return [(f.event, f.data, f.id) for f in frames]

    def test_fields_line_ends_comments_and_tail(self) -> None:
        """CRLF, CR and LF lines, multi-line data, ids, comments, BOM, an unterminated end."""
        assert self.decode([self.STREAM]) == [
            ("a", "1\n2", None),
            (None, "x", "7"),
            (None, None, None),
            (None, "no-space", None),
            (None, "tail", None),
        ]

    def test_any_split_gives_the_same_frames_and_bytes(self) -> None:
        """Every one- and two-cut of the bytes gives the same frames and the same raw bytes."""
        whole = self.decode([self.STREAM])
        size = len(self.STREAM)
        for i in range(size + 1):
            for j in range(i, size + 1):
                pieces = [self.STREAM[:i], self.STREAM[i:j], self.STREAM[j:]]
                assert self.decode(pieces) == whole, (i, j)
                decoder = SSEDecoder()
                frames = [f for p in pieces for f in decoder.feed(p)] + decoder.close()
                assert b"".join(f.raw for f in frames) == self.STREAM

    def test_one_byte_at_a_time(self) -> None:
        """A byte per chunk, CR LF split between chunks, is still one line end."""
        pieces = [self.STREAM[i : i + 1] for i in range(len(self.STREAM))]
        assert self.decode(pieces) == self.decode([self.STREAM])

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.one_of(
                # Whole one-line events (the decoder's fast path) and everything near them.
                st.text(max_size=12).map(lambda t: ("data: " + t + "\n\n").encode()),
                st.builds(
                    lambda head, body, tail: (head + body + tail).encode(),
                    st.sampled_from(["data: ", "data:", "data:  ", "\ufeffdata: ", ": "]),
                    st.text(alphabet="ab \r\n:", max_size=6),
                    st.sampled_from(["\n\n", "\r\n\r\n", "\n", "\r", ""]),
                ),
            ),
            max_size=6,
        )
    )
    def test_reads_of_whole_events_decode_as_byte_by_byte(self, reads: list[bytes]) -> None:
        """One read per event takes a shorter path; it must give the frames and raw bytes
        that the same bytes give one at a time. (A frame without fields is passed through
        as it is: a CR LF cut after its CR may leave its LF as such a frame.)"""
        stream = b"".join(reads)
        singles = [stream[i : i + 1] for i in range(len(stream))]
        empty = (None, None, None)
        assert [f for f in self.decode(reads) if f != empty] == [
            f for f in self.decode(singles) if f != empty
        ]
        decoder = SSEDecoder()
        frames = [f for read in reads for f in decoder.feed(read)] + decoder.close()
        assert b"".join(f.raw for f in frames) == stream


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        _JSON.map(json.dumps),
        _JSON.map(lambda v: json.dumps(v, ensure_ascii=False)),
        st.text(max_size=30),
        st.sampled_from(
            [
                '{"a": NaN}',
                '{"a": -Infinity}',
                '{"s": "\\ud800"}',
                '{"n": 123456789012345678901234567890}',
                '{"k": 1, "k": 2}',
                '{"f": 1e400}',
                "[" * 2000 + "]" * 2000,
                '{"a": 1} x',
                "",
            ]
        ),
    )
)
def test_an_event_decodes_as_the_standard_library_decodes_it(data: str) -> None:
    """With or without orjson, an event's JSON is what ``json.loads`` makes of it, and
    what it refuses is refused (the restorer then treats the data as text)."""
    try:
        expected: object = ("ok", json.loads(data))
    except RecursionError:
        expected = ("deep",)
    except ValueError:
        expected = ("refused",)
    try:
        got: object = ("ok", loads_event(data))
    except RecursionError:
        got = ("deep",)
    except ValueError:
        got = ("refused",)
    # repr: NaN and -0.0 compare by their spelling, not by ==.
    assert repr(got) == repr(expected)


_JSON_ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_JSON_ANY, st.booleans())
# Hypothesis draws no lone surrogates: these raised UnicodeEncodeError before.
@example(["\ud800 jane@example.com", {"k\udc00": 1}], False)
@example({"a": "\ud83d"}, True)
def test_an_event_is_written_back_as_the_standard_library_would(value: object, ascii: bool) -> None:
    """What the restorer writes for an event it read reads back as the event itself,
    NaN, infinities, integers beyond 64 bits and lone surrogates included (orjson, when
    installed, would write NaN as null; such events go to the standard library)."""
    data = json.dumps(value, ensure_ascii=ascii)
    event = loads_event(data)
    # repr: NaN and -0.0 compare by their spelling, not by ==.
    assert repr(json.loads(dumps(event))) == repr(json.loads(data))
    # The guarded transport writes bodies it parsed the same way, as bytes.
    assert repr(json.loads(dumps_bytes(event))) == repr(json.loads(data))


class TestChatStream:
    @pytest.mark.slow
    def test_every_one_and_two_cut_gives_the_restored_text(self) -> None:
        """Exhaustive cuts of short minimal streams: exact text, never part of a token."""
        stream = minimal_chat(ANSWER, 5)
        expected = restore(ANSWER)
        for i in range(len(stream) + 1):
            deltas = chat_deltas(run(stream, [i]))
            assert "".join(deltas) == expected
            assert_no_partial_tokens(deltas)
        short = "[EMAIL_7Q2K]!"
        stream = minimal_chat(short, 5)
        expected = restore(short)
        size = len(stream)
        for i in range(size + 1):
            for j in range(i, size + 1):
                deltas = chat_deltas(run(stream, [i, j]))
                assert "".join(deltas) == expected, (i, j)
                assert_no_partial_tokens(deltas)

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(
            st.sampled_from([*ORIGINALS, "[EMAIL_ZZZZ]", "[1]", "[", "text ", "é€ ", "[A", "]"]),
            min_size=1,
            max_size=40,
        ),
        st.integers(1, 9),
        st.lists(st.integers(0, 100_000), max_size=6),
    )
    def test_long_answers_any_cuts(self, parts: list[str], size: int, cuts: list[int]) -> None:
        """Long answers with tokens, decoys and multi-byte text, cut at random bytes."""
        answer = "".join(parts)
        stream = b"".join(_openai_stream(answer, "m", size))
        cut_at = [c % (len(stream) + 1) for c in cuts]
        chunks = run(stream, cut_at)
        deltas = chat_deltas(chunks)
        assert "".join(deltas) == restore(answer)
        if not any(p in {"[", "[A"} for p in parts):
            assert_no_partial_tokens(deltas)
        assert frames_of(b"".join(chunks))[-1] == "[DONE]"

    def test_finish_reason_flushes_before_the_finish_chunk(self) -> None:
        """Held text comes out in a chunk before finish_reason, which keeps its envelope."""
        core = restorer()
        out = core.feed(
            b'data: {"id":"c1","model":"m","choices":'
            b'[{"index":0,"delta":{"content":"a [EMAIL_"}}]}\n\n'
            b'data: {"id":"c1","model":"m","choices":'
            b'[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
        )
        frames = frames_of(out)
        assert [f["choices"][0]["delta"] for f in frames] == [  # type: ignore[index]
            {"content": "a "},
            {"content": "[EMAIL_"},
            {},
        ]
        assert frames[1]["id"] == "c1" and frames[2]["choices"][0]["finish_reason"] == "length"  # type: ignore[index]

    def test_choices_are_restored_separately(self) -> None:
        """n > 1: each choice has its own hold-back."""
        core = restorer()
        out = b""
        for index, text in [(0, "[EMAIL"), (1, "[PERSON_AB"), (0, "_7Q2K]"), (1, "12CD]")]:
            chunk = {"choices": [{"index": index, "delta": {"content": text}}]}
            out += core.feed(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        texts: dict[int, str] = {0: "", 1: ""}
        for frame in frames_of(out + core.close()):
            for choice in frame["choices"]:  # type: ignore[index]
                texts[choice["index"]] += choice["delta"]["content"]
        assert texts == {0: ORIGINALS["[EMAIL_7Q2K]"], 1: ORIGINALS["[PERSON_AB12CD]"]}

    def test_tool_arguments_get_json_escaped_originals(self) -> None:
        """A restored value inside tool-call arguments keeps the arguments valid JSON."""
        core = restorer()
        args = json.dumps({"name": "[PERSON_AB12CD]"})
        out = b""
        for piece in (args[:12], args[12:]):
            call = {"index": 0, "function": {"arguments": piece}}
            chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
            out += core.feed(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        out += core.feed(
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
        )
        text = "".join(
            f["choices"][0]["delta"]
            .get("tool_calls", [{}])[0]
            .get("function", {})
            .get("arguments", "")  # type: ignore[index]
            for f in frames_of(out)
        )
        assert json.loads(text) == {"name": 'Jane "JD" Doe'}

    def test_usage_model_and_done_are_kept(self) -> None:
        """The answered model and usage are noted; [DONE] marks the stream complete."""
        core = restorer()
        stream = b"".join(_openai_stream("hi", "gpt-x", 1, usage=True))
        out = core.feed(stream)
        assert out == stream  # nothing to restore: byte for byte
        assert core.done and core.meta["gen_ai.response.model"] == "gpt-x"
        assert core.meta["gen_ai.usage.output_tokens"] == 1

    def test_error_frame_flushes_and_is_noted(self) -> None:
        """An upstream error event flushes held text first and names the error."""
        core = restorer()
        core.feed(b'data: {"choices":[{"index":0,"delta":{"content":"x [EMAIL_7Q"}}]}\n\n')
        out = core.feed(b'data: {"error":{"type":"server_error","message":"boom"}}\n\n')
        frames = frames_of(out)
        assert frames[0]["choices"][0]["delta"]["content"] == "[EMAIL_7Q"  # type: ignore[index]
        assert "error" in frames[1] and core.upstream_error == "server_error"  # type: ignore[operator]

    def test_keepalives_and_non_json_pass(self) -> None:
        """Comments go through untouched; non-JSON data is restored as text."""
        core = restorer()
        assert core.feed(b": ping\n\n") == b": ping\n\n"
        assert core.feed(b"data: hello [EMAIL_7Q2K]\n\n") == b"data: hello jane.doe@example.com\n\n"


class TestAnthropicStream:
    @pytest.mark.slow
    def test_every_cut_of_an_anthropic_stream(self) -> None:
        """text_delta events: exact text for every single cut, never part of a token."""
        stream = b"".join(_anthropic_stream(ANSWER, "claude", 3))
        for i in range(len(stream) + 1):
            text, deltas = "", []
            for chunk in run(stream, [i]):
                for frame in frames_of(chunk):
                    assert isinstance(frame, dict)
                    if frame["type"] == "content_block_delta":
                        deltas.append(frame["delta"]["text"])  # type: ignore[index]
                        text += deltas[-1]
            assert text == restore(ANSWER)
            assert_no_partial_tokens(deltas)

    def test_block_stop_flushes_and_events_keep_their_names(self) -> None:
        """Held text goes out as a content_block_delta (with its event line) before the stop."""
        core = restorer()
        core.feed(
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"[EMAIL_7Q"}}\n\n'
        )
        out = core.feed(
            b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        )
        decoder = SSEDecoder()
        frames = decoder.feed(out)
        assert [f.event for f in frames] == ["content_block_delta", "content_block_stop"]
        assert json.loads(frames[0].data or "")["delta"] == {
            "type": "text_delta",
            "text": "[EMAIL_7Q",
        }

    def test_input_json_delta_is_escaped(self) -> None:
        """partial_json is JSON text: originals are escaped inside it."""
        core = restorer()
        out = b""
        for piece in ('{"who": "[PER', 'SON_AB12CD]"}'):
            event = {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            out += core.feed(
                b"event: content_block_delta\ndata: " + json.dumps(event).encode() + b"\n\n"
            )
        out += core.close()
        text = "".join(f["delta"]["partial_json"] for f in frames_of(out))  # type: ignore[index]
        assert json.loads(text) == {"who": 'Jane "JD" Doe'}

    def test_thinking_is_left_alone(self) -> None:
        """Signed thinking must reach the caller exactly as the model wrote it."""
        core = restorer()
        frame = (
            b'data: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"thinking_delta","thinking":"[EMAIL_7Q2K]"}}\n\n'
        )
        assert core.feed(frame) == frame


class TestResponsesStream:
    def test_deltas_and_done_events_are_restored(self) -> None:
        """output_text deltas are held and restored; .done and completed carry whole text."""
        stream = b"".join(_responses_stream(ANSWER, "gpt-r", 4))
        for i in range(0, len(stream) + 1, 7):
            frames = [f for c in run(stream, [i]) for f in frames_of(c)]
            deltas = [
                f["delta"]
                for f in frames
                if isinstance(f, dict) and f["type"] == "response.output_text.delta"
            ]
            assert "".join(deltas) == restore(ANSWER)  # type: ignore[arg-type]
            assert_no_partial_tokens(deltas)  # type: ignore[arg-type]
            done = next(
                f
                for f in frames
                if isinstance(f, dict) and f["type"] == "response.output_text.done"
            )
            assert done["text"] == restore(ANSWER)
        core = restorer()
        core.feed(stream)
        assert core.done and core.meta["gen_ai.usage.input_tokens"] == 1


class TestMemory:
    def test_state_does_not_grow_with_the_answer(self) -> None:
        """After thousands of events only a bounded amount of text is held."""
        core = restorer()
        for number in range(5000):
            text = "[EMAIL_7Q" if number % 2 else "2K] and more text "
            chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
            core.feed(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            assert core.held <= MAX_HOLD
        assert len(core._decoder._partial) == 0 and len(core._decoder._raw) == 0


_TOKEN = "[EMAIL_0EQ6ZCG62CQ43]"
_INJECTING = 'a@b.c", "admin": true, "x": "'


class TestJsonContextAcrossPieces:
    @settings(max_examples=400, deadline=None)
    @given(
        parts=st.lists(
            st.sampled_from(['"', "\\", "n", " ", "{", ":", ",", _TOKEN, "[x]", "ab"]),
            max_size=24,
        ),
        cuts=st.lists(st.integers(0, 200), max_size=6),
        json_text=st.booleans(),
    )
    def test_pieces_restore_as_the_whole_text_does(
        self, parts: list[str], cuts: list[int], json_text: bool
    ) -> None:
        """A channel cut anywhere restores as the whole text would: the JSON string state
        (in a string, after a backslash) carries across pieces, so an original is escaped
        exactly where it stands inside a string, and can never close one."""
        from aiguard.vault.tokens import JsonState, swap_in_context

        text = "".join(parts)
        lookup = {_TOKEN: _INJECTING}.get
        whole, _state = swap_in_context(text, lookup, JsonState(), json_text)
        bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
        state = JsonState()
        out = []
        for start, end in itertools.pairwise(bounds):
            # A token is never cut in a real channel (the hold-back keeps it whole).
            piece = text[start:end]
            piece_out, state = swap_in_context(piece, lookup, state, json_text)
            out.append(piece_out)
        if all(not (m.start() < b < m.end()) for m in TOKEN_RE.finditer(text) for b in bounds):
            assert "".join(out) == whole

    def test_a_backslash_at_a_pieces_end_is_spent_by_the_next_piece(self) -> None:
        """`"x\\` then `n` then `" [token] "`: the quote after `\\n` closes the string, so
        the token after it stands outside and the next quote opens a new string."""
        from aiguard.vault.tokens import JsonState, swap_in_context

        lookup = {_TOKEN: _INJECTING}.get
        state = JsonState()
        pieces = ['{"a": "x\\', "n", f'", "b": "{_TOKEN}"}}']
        out = []
        for piece in pieces:
            restored, state = swap_in_context(piece, lookup, state)
            out.append(restored)
        document = json.loads("".join(out))
        assert document == {"a": "x\n", "b": _INJECTING}
