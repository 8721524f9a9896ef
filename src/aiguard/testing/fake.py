"""`FakeModel`: an OpenAI-compatible (and Anthropic Messages-compatible) model on a mock
transport that records exactly what it received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx

__all__ = ["FakeModel", "RecordedRequest"]

Reply = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class RecordedRequest:
    """A request exactly as the model received it."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _last_user_text(payload: dict[str, Any]) -> str:
    messages = payload.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(part.get("text", "")) for part in content if isinstance(part, dict)
                )
    value = payload.get("input")
    return value if isinstance(value, str) else ""


class FakeModel:
    """A model that answers locally: echo, scripted replies, or a function of the request.

    ``reply`` is None (echo the last user message), a string, a list of strings used in
    turn, or a callable receiving the request JSON. ``fail_next(n)`` makes the next ``n``
    calls fail with HTTP 500 (to exercise SDK retries). Streaming requests get server-sent
    events with ``chunk_size`` characters of text per event (OpenAI chat chunks, with a
    usage chunk when ``stream_options.include_usage`` is set; Anthropic message events;
    OpenAI Responses events on ``/responses``).

    How the events travel is adjustable, to exercise stream parsers: ``stream_bytes``
    cuts the body into pieces of that many bytes, anywhere (None: one piece per event);
    ``keepalive`` puts a comment line between events; ``crlf`` ends lines with CRLF;
    ``fail_stream_after`` drops the connection (a ``ReadError``) after that many pieces.
    """

    def __init__(
        self,
        reply: str | Sequence[str] | Reply | None = None,
        *,
        model: str | None = None,
        chunk_size: int = 4,
        http: str = "auto",
        stream_bytes: int | None = None,
        keepalive: bool = False,
        crlf: bool = False,
        fail_stream_after: int | None = None,
    ) -> None:
        self._reply = reply
        self._script: list[str] | None = (
            [str(r) for r in reply] if isinstance(reply, (list, tuple)) else None
        )
        self.model = model
        self.chunk_size = max(1, chunk_size)
        self.stream_bytes = stream_bytes
        self.keepalive = keepalive
        self.crlf = crlf
        self.fail_stream_after = fail_stream_after
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._failures = 0
        self._module = _module(http)
        self._transport = self._module.MockTransport(self._handle)

    @property
    def transport(self) -> Any:
        """The mock transport to hand to ``guard.http_client(transport=...)``."""
        return self._transport

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        with self._lock:
            self._failures = count
            self._failure_status = status

    @property
    def bodies(self) -> list[Any]:
        """The JSON bodies received, in order."""
        return [r.json for r in self.requests]

    def _answer(self, payload: dict[str, Any]) -> str:
        if self._script is not None:
            with self._lock:
                if not self._script:
                    raise AssertionError("FakeModel ran out of scripted replies")
                return self._script.pop(0)
        if callable(self._reply):
            return str(self._reply(payload))
        if isinstance(self._reply, str):
            return self._reply
        return "Echo: " + _last_user_text(payload)

    def _handle(self, request: Any) -> Any:
        module = self._module
        recorded = RecordedRequest(
            request.method, str(request.url), dict(request.headers), request.read()
        )
        with self._lock:
            self.requests.append(recorded)
            if self._failures > 0:
                self._failures -= 1
                return module.Response(
                    self._failure_status,
                    json={"error": {"message": "fake upstream failure", "type": "server_error"}},
                )
        path = request.url.path
        if request.method == "GET" and path.endswith("/models"):
            return module.Response(
                200,
                json={
                    "object": "list",
                    "data": [
                        {"id": self.model or "gpt-4o-mini", "object": "model", "owned_by": "fake"}
                    ],
                },
            )
        payload = recorded.json if recorded.body else {}
        if not isinstance(payload, dict):
            return module.Response(400, json={"error": {"message": "expected a JSON object"}})
        model = self.model or str(payload.get("model", "fake-model"))
        if path.endswith("/embeddings"):
            return module.Response(200, json=_embeddings(payload, model))
        text = self._answer(payload)
        anthropic = path.endswith("/messages")
        if payload.get("stream"):
            if anthropic:
                events = _anthropic_stream(text, model, self.chunk_size)
            elif path.endswith("/responses"):
                events = _responses_stream(text, model, self.chunk_size)
            else:
                options = payload.get("stream_options")
                usage = isinstance(options, dict) and bool(options.get("include_usage"))
                events = _openai_stream(text, model, self.chunk_size, usage)
            return module.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=_piece_stream(module)(self._pieces(events), self.fail_stream_after),
            )
        if anthropic:
            return module.Response(200, json=_anthropic_message(text, model, payload))
        return module.Response(200, json=_chat_completion(text, model, payload))

    def _pieces(self, events: list[bytes]) -> list[bytes]:
        if self.keepalive:
            events = [part for event in events for part in (b": keep-alive\n\n", event)]
        if self.crlf:
            events = [event.replace(b"\n", b"\r\n") for event in events]
        size = self.stream_bytes
        if size is None:
            return events
        body = b"".join(events)
        return [body[i : i + size] for i in range(0, len(body), max(1, size))]


class _Pieces:
    """A response body delivered piece by piece, sync or async, that may break midway."""

    def __init__(self, pieces: list[bytes], fail_after: int | None) -> None:
        self._pieces = pieces
        self._fail_after = fail_after

    def _error(self) -> Exception:
        error: type[Exception] = getattr(self, "read_error", OSError)
        return error("fake upstream dropped the stream")

    def __iter__(self) -> Iterator[bytes]:
        for number, piece in enumerate(self._pieces):
            if self._fail_after is not None and number >= self._fail_after:
                raise self._error()
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import anyio.lowlevel

        for number, piece in enumerate(self._pieces):
            if self._fail_after is not None and number >= self._fail_after:
                raise self._error()
            # Let other tasks run between pieces, as a network would.
            await anyio.lowlevel.checkpoint()
            yield piece

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


_PIECE_TYPES: dict[str, type] = {}


def _piece_stream(module: ModuleType) -> type:
    found = _PIECE_TYPES.get(module.__name__)
    if found is None:
        bases = (_Pieces, module.SyncByteStream, module.AsyncByteStream)
        found = type("FakeStream", bases, {"read_error": module.ReadError})
        _PIECE_TYPES[module.__name__] = found
    return found


def _module(http: str) -> ModuleType:
    if http not in {"auto", "httpx", "httpx2"}:
        raise ValueError("http must be 'auto', 'httpx' or 'httpx2'")
    if http in {"auto", "httpx2"}:
        try:
            import httpx2
        except ImportError:
            if http == "httpx2":
                raise
        else:
            return httpx2
    return httpx


def _usage(payload: dict[str, Any], text: str) -> tuple[int, int]:
    prompt = len(json.dumps(payload.get("messages", payload.get("input", "")))) // 4
    return max(1, prompt), max(1, len(text) // 4)


def _chat_completion(text: str, model: str, payload: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = _usage(payload, text)
    return {
        "id": f"chatcmpl-fake{int(time.time() * 1000)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text},
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _anthropic_message(text: str, model: str, payload: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = _usage(payload, text)
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def _embeddings(payload: dict[str, Any], model: str) -> dict[str, Any]:
    raw = payload.get("input", "")
    items = raw if isinstance(raw, list) else [raw]
    data = []
    for i, item in enumerate(items):
        seed = sum(ord(c) for c in str(item))
        data.append(
            {
                "object": "embedding",
                "index": i,
                "embedding": [((seed * (k + 7)) % 97) / 97.0 for k in range(8)],
            }
        )
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
    }


def _chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _sse(data: Any, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    return (prefix + "data: " + json.dumps(data) + "\n\n").encode("utf-8")


def _openai_stream(text: str, model: str, size: int, usage: bool = False) -> list[bytes]:
    base = {
        "id": "chatcmpl-fakestream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    events = [
        _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    ]
    for piece in _chunks(text, size):
        events.append(_sse({**base, "choices": [{"index": 0, "delta": {"content": piece}}]}))
    events.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if usage:
        completion = max(1, len(text) // 4)
        counts = {"prompt_tokens": 1, "completion_tokens": completion}
        events.append(
            _sse({**base, "choices": [], "usage": {**counts, "total_tokens": 1 + completion}})
        )
    events.append(b"data: [DONE]\n\n")
    return events


def _anthropic_stream(text: str, model: str, size: int) -> list[bytes]:
    events = [
        _sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 1, "output_tokens": 1},
                },
            },
            "message_start",
        ),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
    ]
    for piece in _chunks(text, size):
        events.append(
            _sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
                "content_block_delta",
            )
        )
    events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": max(1, len(text) // 4)},
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return events


def _responses_stream(text: str, model: str, size: int) -> list[bytes]:
    """OpenAI Responses API events for one text output."""
    created = int(time.time())
    item_id = "msg_fake"
    response: dict[str, Any] = {
        "id": "resp_fake",
        "object": "response",
        "created_at": created,
        "model": model,
        "status": "in_progress",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {
                "id": item_id,
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            },
        },
        {
            "type": "response.content_part.added",
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
    ]
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    for piece in _chunks(text, size):
        events.append({"type": "response.output_text.delta", **where, "delta": piece})
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }
    completion = max(1, len(text) // 4)
    events += [
        {"type": "response.output_text.done", **where, "text": text},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {
            "type": "response.completed",
            "response": {
                **response,
                "status": "completed",
                "output": [item],
                "usage": {
                    "input_tokens": 1,
                    "output_tokens": completion,
                    "total_tokens": 1 + completion,
                },
            },
        },
    ]
    return [
        _sse({**event, "sequence_number": number}, event["type"])
        for number, event in enumerate(events)
    ]
