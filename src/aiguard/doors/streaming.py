"""Restoring tokens in streamed answers: an incremental SSE decoder, a hold-back restorer
and re-framers for the OpenAI (chat, completions, Responses) and Anthropic event shapes.

Everything here is pure: bytes in, bytes out, no I/O and no HTTP library. The sync and
async transports wrap the same `StreamRestorer`, so both behave identically.

The contract of `StreamRestorer`:

* the caller never receives part of a token: text is held back only while its tail could
  still grow into a token (``[`` LABEL ``_`` SUFFIX ``]``), and released as soon as it
  cannot, so held text never exceeds `MAX_HOLD` characters per text channel;
* output does not depend on how the upstream cut its bytes (frames split anywhere,
  several frames per chunk, CR, LF or CRLF line ends);
* memory is bounded by one SSE frame plus the held text of each channel, whatever the
  length of the answer.

The output rule (secrets and REGULATED values the call never sent are redacted) runs on
the text of each channel as one piece, not per released segment: text is also held back
while its tail could still be the start of such a value, and a value the model streams
across any number of chunks is redacted whole. Values are runs of non-space characters,
joined across single spaces between digit groups (card and phone numbers, IBANs), or a
PEM block; so the held tail is usually the word being written. It is bounded by
``hold_limit`` characters (default 8 KB): past it the held text is redacted, never
released, and so is the rest of that run (fail closed). Without an output rule only the
token grammar holds text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..pipeline.call import usage_of
from ..providers.walk import map_strings
from ..vault.surrogates import restore_surrogates
from ..vault.tokens import MAX_SUFFIX, TOKEN_RE

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
    "value_tail_start",
]

MAX_LABEL = 64
#: The longest text the token grammar accepts: ``[`` + label + ``_`` + suffix + ``]``.
MAX_TOKEN_LENGTH = 2 + MAX_LABEL + 1 + MAX_SUFFIX
#: The most text one channel ever holds: a token missing only its closing bracket.
MAX_HOLD = MAX_TOKEN_LENGTH - 1

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

    def record_leak(self, kind: str, value: str) -> None:
        """Count one withheld value for the event (never logged raw)."""
        ...


def _joins(before: str, after: str | None) -> bool:
    """Whether a single space between these characters can lie inside one value.

    Digit groups (``4111 1111``, ``+1 (415) 555``), and letters next to digits
    (``GB82 WEST``, ``AB 12 34 56 C``); ``after`` None means not seen yet.
    """
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
    """
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
    """Where the run that ``text`` starts in ends, or None if it has not ended yet."""
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


def held_tail_start(text: str) -> int:
    """Where the part of ``text`` that could still become a token begins (``len`` if none).

    A token holds no ``[`` after its first character, so only the last ``[`` can start one.
    """
    start = text.rfind("[")
    if start < 0 or _PREFIX_RE.fullmatch(text, start) is None:
        return len(text)
    return start


class TokenRestorer:
    """Replaces tokens by their originals; unknown token-shaped text passes unchanged.

    ``lookup`` maps a token to its original (None when the caller may not see one);
    ``rule`` is the output rule, applied to whole strings by `text` / `json_text` and
    to streamed text by `HoldBack`. `json_text` is for strings that are themselves JSON
    (tool arguments, structured output), where originals must be escaped.
    """

    __slots__ = ("_lookup", "rule")

    def __init__(self, lookup: Lookup, rule: OutputRule | None = None) -> None:
        self._lookup = lookup
        self.rule = rule

    def redact(self, text: str) -> str:
        """``text`` with what the output rule withholds redacted (and counted)."""
        if self.rule is None or not text:
            return text
        return _redact_spans(text, self.rule.withheld(text), self.rule, 0, len(text), 0)

    def swap(self, text: str) -> str:
        """Tokens (and realistic surrogates of them) to originals, nothing else."""
        text = restore_surrogates(text, self._lookup)
        if "[" not in text:
            return text
        return TOKEN_RE.sub(self._swap, text)

    def swap_json(self, text: str) -> str:
        """Tokens (and surrogates) to JSON-escaped originals, nothing else."""
        text = restore_surrogates(text, self._lookup_escaped)
        if "[" not in text:
            return text
        return TOKEN_RE.sub(self._swap_escaped, text)

    def _lookup_escaped(self, token: str) -> str | None:
        original = self._lookup(token)
        return None if original is None else json.dumps(original, ensure_ascii=False)[1:-1]

    def text(self, text: str) -> str:
        return self.swap(self.redact(text))

    def json_text(self, text: str) -> str:
        return self.swap_json(self.redact(text))

    def value(self, path: str, text: str) -> str:
        """For `map_strings`: JSON-in-a-string fields get escaped originals."""
        if path.endswith((".arguments", ".partial_json")) or _looks_json(text):
            return self.json_text(text)
        return self.text(text)

    def _swap(self, match: re.Match[str]) -> str:
        token = match.group(0)
        original = self._lookup(token)
        return token if original is None else original

    def _swap_escaped(self, match: re.Match[str]) -> str:
        token = match.group(0)
        original = self._lookup(token)
        return token if original is None else json.dumps(original, ensure_ascii=False)[1:-1]


def _looks_json(text: str) -> bool:
    stripped = text.strip()
    if len(stripped) < 2 or (stripped[0], stripped[-1]) not in {("{", "}"), ("[", "]")}:
        return False
    try:
        return isinstance(json.loads(stripped), (dict, list))
    except ValueError:
        return False


def _redact_spans(
    text: str,
    spans: Sequence[tuple[int, int, str]],
    rule: OutputRule,
    lo: int,
    hi: int,
    shift: int,
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
        rule.record_leak(kind, text[start:end])
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

    __slots__ = ("_context", "_held", "_limit", "_restore", "_rule", "_suppress")

    def __init__(
        self, restore: Transform, rule: OutputRule | None = None, limit: int = DEFAULT_HOLD_LIMIT
    ) -> None:
        self._restore = restore
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
            cut = held_tail_start(text)
            self._held = text[cut:]
            return self._restore(text[:cut]) if cut else ""
        buf = self._held + text
        if self._suppress is not None:
            end = _run_end(buf, self._suppress)
            if end is None:
                # Keep a trailing space and the character before it: they may still join.
                self._held = buf[-2:] if buf.endswith(" ") else ""
                return ""
            self._suppress = None
            buf = buf[end:]
        cut = min(held_tail_start(buf), value_tail_start(buf))
        context = self._context
        window = context + buf if context else buf
        spans = rule.withheld(window)
        shift = len(context)
        # A withheld value that reaches into the held tail is held whole.
        for start, end, _kind in reversed(spans):
            if end - shift > cut:
                cut = min(cut, max(start - shift, 0))
        released = _redact_spans(buf, spans, rule, 0, cut, shift) if spans else buf[:cut]
        held = buf[cut:]
        if len(held) > self._limit:
            # Fail closed: whatever the held run is, it does not go out.
            rule.record_leak("held_text", held)
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
            return self._restore(released)
        return ""

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
                held = _redact_spans(held, spans, rule, 0, len(held), len(context))
            self._context = (context + held)[-_CONTEXT:]
        return self._restore(held)


@dataclass(frozen=True, slots=True)
class SSEFrame:
    """One server-sent event as received: its fields and its exact bytes.

    ``data`` is None for frames without a data field (keep-alive comments, stray blank
    lines); such frames are passed through untouched.
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


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


Key = tuple[Any, ...]


def _carries_nothing(chunk: dict[str, Any]) -> bool:
    """A chat chunk whose only payload was text that is now held back."""
    if chunk.get("usage"):
        return False
    for choice in chunk["choices"]:
        if not isinstance(choice, dict) or choice.get("finish_reason") or choice.get("logprobs"):
            return False
        delta = choice.get("delta", {})
        if not isinstance(delta, dict) or choice.get("text"):
            return False
        for name, value in delta.items():
            if name == "tool_calls" and isinstance(value, list):
                if not all(
                    isinstance(call, dict)
                    and set(call) <= {"index", "function"}
                    and call.get("function") == {"arguments": ""}
                    for call in value
                ):
                    return False
            elif name not in {"content", "refusal"} or value:
                return False
    return True


def _within(prefix: Key) -> Callable[[Key], bool]:
    return lambda key: key[: len(prefix)] == prefix


@dataclass(slots=True)
class _Channel:
    hold: HoldBack
    #: Builds the data of a frame that carries text flushed out of this channel.
    make: Callable[[str], dict[str, Any]]
    event: str | None


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
_ANTHROPIC_FIELDS = {"text_delta": "text", "input_json_delta": "partial_json"}
_RESPONSES_DELTAS = {
    "response.output_text.delta": False,
    "response.refusal.delta": False,
    "response.function_call_arguments.delta": True,
}
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
    _decoder: SSEDecoder = field(default_factory=SSEDecoder)
    _channels: dict[Key, _Channel] = field(default_factory=dict)

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
        data = frame.data
        if data is None:
            return [frame.raw]
        if data.startswith("[DONE]"):
            self.done = True
            return [*self._flush(lambda _key: True), frame.raw]
        try:
            obj = json.loads(data)
        except ValueError:
            restored = self.restorer.text(data)
            return [frame.raw if restored == data else encode_frame(restored, frame.event)]
        if not isinstance(obj, dict):
            return self._whole(frame, obj)
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

    def _whole(self, frame: SSEFrame, obj: Any) -> list[bytes]:
        restored = map_strings(obj, self.restorer.value)
        if restored == obj:
            return [frame.raw]
        return [encode_frame(_dumps(restored), frame.event, frame.id)]

    def _error(self, frame: SSEFrame, obj: dict[str, Any]) -> list[bytes]:
        error = obj.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        self.upstream_error = kind if isinstance(kind, str) and kind else "upstream_error"
        return [*self._flush(lambda _key: True), *self._whole(frame, obj)]

    def _channel(
        self, key: Key, json_text: bool, make: Callable[[str], dict[str, Any]], event: str | None
    ) -> _Channel:
        channel = self._channels.get(key)
        if channel is None:
            restorer = self.restorer
            json_text = json_text or self.json_content
            restore = restorer.swap_json if json_text else restorer.swap
            channel = _Channel(HoldBack(restore, restorer.rule, self.hold_limit), make, event)
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

    # -- OpenAI chat completions and completions --------------------------------------

    def _openai(self, frame: SSEFrame, obj: dict[str, Any]) -> list[bytes]:
        self.meta.update(usage_of(obj))
        choices = obj.get("choices")
        if not isinstance(choices, list):
            return self._whole(frame, obj)
        envelope = {k: v for k, v in obj.items() if k not in {"choices", "usage"}}
        changed = False
        before: list[bytes] = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            finishing = choice.get("finish_reason") is not None
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for name in ("content", "refusal"):
                    changed |= self._chat_text(envelope, delta, index, name, finishing)
                calls = delta.get("tool_calls")
                if isinstance(calls, list):
                    for call in calls:
                        if isinstance(call, dict):
                            changed |= self._chat_tool(envelope, call, index, finishing)
            elif isinstance(choice.get("text"), str):
                changed |= self._completion_text(envelope, choice, index, finishing)
            if finishing:
                before.extend(self._flush(_within(("chat", index))))
        if not changed:
            return [*before, frame.raw]
        if _carries_nothing(obj):
            return before  # all of its text is held; an empty chunk would only be noise
        return [*before, encode_frame(_dumps(obj), frame.event, frame.id)]

    def _released(self, channel: _Channel, text: str, finishing: bool) -> str:
        out = channel.hold.feed(text)
        return out + channel.hold.flush() if finishing else out

    def _chat_text(
        self, envelope: dict[str, Any], delta: dict[str, Any], index: Any, name: str, end: bool
    ) -> bool:
        text = delta.get(name)
        if not isinstance(text, str):
            return False

        def make(rest: str) -> dict[str, Any]:
            return {**envelope, "choices": [{"index": index, "delta": {name: rest}}]}

        channel = self._channel(("chat", index, name), False, make, None)
        out = self._released(channel, text, end)
        delta[name] = out
        return out != text

    def _chat_tool(
        self, envelope: dict[str, Any], call: dict[str, Any], index: Any, end: bool
    ) -> bool:
        function = call.get("function")
        text = function.get("arguments") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(text, str):
            return False
        position = call.get("index", 0)

        def make(rest: str) -> dict[str, Any]:
            tool = {"index": position, "function": {"arguments": rest}}
            return {**envelope, "choices": [{"index": index, "delta": {"tool_calls": [tool]}}]}

        channel = self._channel(("chat", index, "tool", position), True, make, None)
        out = self._released(channel, text, end)
        function["arguments"] = out
        return out != text

    def _completion_text(
        self, envelope: dict[str, Any], choice: dict[str, Any], index: Any, end: bool
    ) -> bool:
        text: str = choice["text"]

        def make(rest: str) -> dict[str, Any]:
            return {**envelope, "choices": [{"index": index, "text": rest}]}

        channel = self._channel(("chat", index, "text"), False, make, None)
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
                return [frame.raw]  # thinking and signatures must reach the caller unchanged
            index = obj.get("index", 0)
            delta_type = delta["type"]

            def make(rest: str) -> dict[str, Any]:
                return {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": delta_type, name: rest},
                }

            json_text = name == "partial_json"
            channel = self._channel(("anthropic", index), json_text, make, "content_block_delta")
            out = channel.hold.feed(text)
            if out == text:
                return [frame.raw]
            if not out:
                return []
            delta[name] = out
            return [encode_frame(_dumps(obj), frame.event, frame.id)]
        if kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                self.meta.update(usage_of(message))
            return self._plain(frame, obj)
        if kind == "content_block_stop":
            index = obj.get("index", 0)
            return [*self._flush(_within(("anthropic", index))), frame.raw]
        if kind == "message_delta":
            self.meta.update(usage_of(obj))
        elif kind == "message_stop":
            self.done = True
        if kind == "ping":
            return [frame.raw]
        return [*self._flush(lambda _key: True), *self._plain(frame, obj)]

    def _plain(self, frame: SSEFrame, obj: dict[str, Any]) -> list[bytes]:
        """A frame without deltas: strings in it are whole, restore them only if needed."""
        data = frame.data or ""
        return self._whole(frame, obj) if "[" in data else [frame.raw]

    # -- OpenAI Responses --------------------------------------------------------------

    def _responses(self, frame: SSEFrame, obj: dict[str, Any], kind: str) -> list[bytes]:
        json_text = _RESPONSES_DELTAS.get(kind)
        if json_text is not None:
            text = obj.get("delta")
            if not isinstance(text, str):
                return [frame.raw]
            base = kind.removesuffix(".delta")
            where = (obj.get("output_index"), obj.get("content_index"))
            template = {k: v for k, v in obj.items() if k != "delta"}

            def make(rest: str) -> dict[str, Any]:
                return {**template, "delta": rest}

            channel = self._channel(("responses", base, *where), json_text, make, frame.event)
            out = channel.hold.feed(text)
            if out == text:
                return [frame.raw]
            if not out:
                return []
            obj["delta"] = out
            return [encode_frame(_dumps(obj), frame.event, frame.id)]
        before: list[bytes] = []
        if kind.endswith(".done"):
            base = kind.removesuffix(".done")
            where = (obj.get("output_index"), obj.get("content_index"))
            before = self._flush(_within(("responses", base, *where)))
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
        return [*before, *self._plain(frame, obj)]
