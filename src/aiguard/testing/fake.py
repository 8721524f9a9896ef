"""`FakeModel`: an OpenAI-compatible (and Anthropic Messages-compatible) model on a mock
transport, or on a loopback HTTP server, that records exactly what it received.

It speaks Chat Completions (text, tool calls, ``n`` choices), Responses (text and
function calls), Embeddings and Anthropic Messages (text and ``tool_use``), whole or
streamed. A reply is text, or an `Answer` with `ToolCall` s.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import httpx

__all__ = ["Answer", "FakeModel", "RecordedRequest", "ToolCall"]


@dataclass(frozen=True)
class ToolCall:
    """A tool (function) call the fake model makes; ``arguments`` is JSON text."""

    name: str
    arguments: str
    id: str = "call_fake_1"


@dataclass(frozen=True)
class Answer:
    """A scripted answer: text, tool calls, or both."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


Reply = Callable[[dict[str, Any]], "str | Answer"]


@dataclass(frozen=True)
class RecordedRequest:
    """A request exactly as the model received it."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body as JSON; None when there is none or it is not JSON (an upload)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and "text" in part
        )
    return ""


def _last_user_text(payload: dict[str, Any]) -> str:
    for key in ("messages", "input"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            for message in reversed(value):
                if isinstance(message, dict) and message.get("role") == "user":
                    return _text_of(message.get("content"))
    return ""


class FakeModel:
    """A model that answers locally: echo, scripted replies, or a function of the request.

    ``reply`` is None (echo the last user message), a string or `Answer`, a list of them
    used in turn, or a callable receiving the request JSON and returning one. Chat
    requests with ``n`` get that many choices. ``fail_next(n)`` makes the next ``n``
    calls fail with HTTP 500 (to exercise SDK retries). Streaming requests get server-sent
    events with ``chunk_size`` characters of text per event (OpenAI chat chunks, with a
    usage chunk when ``stream_options.include_usage`` is set; Anthropic message events;
    OpenAI Responses events on ``/responses``).

    How the events travel is adjustable, to exercise stream parsers: ``stream_bytes``
    cuts the body into pieces of that many bytes, anywhere (None: one piece per event);
    ``keepalive`` puts a comment line between events; ``crlf`` ends lines with CRLF;
    ``fail_stream_after`` drops the connection (a ``ReadError``) after that many pieces.
    ``serve()`` runs the same model on a loopback HTTP server (127.0.0.1).
    """

    def __init__(
        self,
        reply: str | Answer | Sequence[str | Answer] | Reply | None = None,
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
        self._script: list[str | Answer] | None = (
            list(reply) if isinstance(reply, (list, tuple)) else None
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

    def fail_next(
        self, count: int = 1, status: int = 500, headers: dict[str, str] | None = None
    ) -> None:
        """The next ``count`` calls fail with ``status`` (and ``headers``, e.g. Retry-After)."""
        with self._lock:
            self._failures = count
            self._failure_status = status
            self._failure_headers = dict(headers or {})

    @property
    def bodies(self) -> list[Any]:
        """The JSON bodies received, in order."""
        return [r.json for r in self.requests]

    def _answer(self, payload: dict[str, Any]) -> Answer:
        reply: Any
        if self._script is not None:
            with self._lock:
                if not self._script:
                    raise AssertionError("FakeModel ran out of scripted replies")
                reply = self._script.pop(0)
        elif callable(self._reply):
            reply = self._reply(payload)
        elif isinstance(self._reply, (str, Answer)):
            reply = self._reply
        else:
            reply = "Echo: " + _last_user_text(payload)
        return reply if isinstance(reply, Answer) else Answer(str(reply))

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
                    headers=self._failure_headers,
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
        if payload is None and path.endswith("/files"):
            return module.Response(
                200, json={"id": "file-fake", "object": "file", "bytes": len(recorded.body)}
            )
        if not isinstance(payload, dict):
            return module.Response(400, json={"error": {"message": "expected a JSON object"}})
        model = self.model or str(payload.get("model", "fake-model"))
        if path.endswith("/embeddings"):
            return module.Response(200, json=_embeddings(payload, model))
        answer = self._answer(payload)
        anthropic = path.endswith("/messages")
        responses = path.endswith("/responses")
        count = payload.get("n")
        n = count if isinstance(count, int) and count > 0 else 1
        if payload.get("stream"):
            if anthropic:
                events = _anthropic_stream(answer, model, self.chunk_size)
            elif responses:
                events = _responses_stream(answer, model, self.chunk_size)
            else:
                options = payload.get("stream_options")
                usage = isinstance(options, dict) and bool(options.get("include_usage"))
                events = _openai_stream(answer, model, self.chunk_size, usage, n)
            return module.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=_piece_stream(module)(self._pieces(events), self.fail_stream_after),
            )
        if anthropic:
            return module.Response(200, json=_anthropic_message(answer, model, payload))
        if responses:
            return module.Response(200, json=_responses_body(answer, model, payload))
        return module.Response(200, json=_chat_completion(answer, model, payload, n))

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve this model over HTTP on 127.0.0.1; yields the base URL (``http://127.0.0.1:N``).

        The same answers as the mock transport, through a real socket: chunked
        streaming, and ``fail_stream_after`` cuts the connection mid-body.
        """
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)

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


def _chat_completion(
    answer: Answer, model: str, payload: dict[str, Any], n: int = 1
) -> dict[str, Any]:
    prompt, completion = _usage(payload, answer.text)
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in answer.tool_calls
        ]
    elif message["content"] is None:
        message["content"] = ""
    finish = "tool_calls" if answer.tool_calls else "stop"
    return {
        "id": f"chatcmpl-fake{int(time.time() * 1000)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "finish_reason": finish, "message": message} for i in range(max(1, n))
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _anthropic_message(answer: Answer, model: str, payload: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = _usage(payload, answer.text)
    content: list[dict[str, Any]] = []
    if answer.text or not answer.tool_calls:
        content.append({"type": "text", "text": answer.text})
    for call in answer.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": json.loads(call.arguments),
            }
        )
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if answer.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def _responses_items(answer: Answer) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if answer.text or not answer.tool_calls:
        items.append(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": answer.text, "annotations": []}],
            }
        )
    for number, call in enumerate(answer.tool_calls):
        items.append(
            {
                "id": f"fc_fake{number}",
                "type": "function_call",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                "status": "completed",
            }
        )
    return items


def _responses_body(answer: Answer, model: str, payload: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = _usage(payload, answer.text)
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "status": "completed",
        "output": _responses_items(answer),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
        },
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
    # Compact, as OpenAI and Anthropic write their events.
    return (prefix + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode("utf-8")


def _openai_stream(
    answer: Answer | str, model: str, size: int, usage: bool = False, n: int = 1
) -> list[bytes]:
    if isinstance(answer, str):
        answer = Answer(answer)
    base = {
        "id": "chatcmpl-fakestream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    choices = range(max(1, n))

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice: dict[str, Any] = {"index": index, "delta": delta}
        if finish is not None:
            choice["finish_reason"] = finish
        return _sse({**base, "choices": [choice]})

    events = [chunk(i, {"role": "assistant", "content": ""}) for i in choices]
    for piece in _chunks(answer.text, size):
        events.extend(chunk(i, {"content": piece}) for i in choices)
    for position, call in enumerate(answer.tool_calls):
        start = {
            "index": position,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        events.extend(chunk(i, {"tool_calls": [start]}) for i in choices)
        for piece in _chunks(call.arguments, size):
            more = {"index": position, "function": {"arguments": piece}}
            events.extend(chunk(i, {"tool_calls": [more]}) for i in choices)
    finish = "tool_calls" if answer.tool_calls else "stop"
    events.extend(chunk(i, {}, finish) for i in choices)
    if usage:
        completion = max(1, len(answer.text) // 4)
        counts = {"prompt_tokens": 1, "completion_tokens": completion}
        events.append(
            _sse({**base, "choices": [], "usage": {**counts, "total_tokens": 1 + completion}})
        )
    events.append(b"data: [DONE]\n\n")
    return events


def _anthropic_stream(answer: Answer | str, model: str, size: int) -> list[bytes]:
    if isinstance(answer, str):
        answer = Answer(answer)
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
    ]
    blocks: list[tuple[dict[str, Any], str, str]] = []
    if answer.text or not answer.tool_calls:
        blocks.append(({"type": "text", "text": ""}, "text_delta", answer.text))
    for call in answer.tool_calls:
        start = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        blocks.append((start, "input_json_delta", call.arguments))
    for index, (block, delta_type, text) in enumerate(blocks):
        field = "text" if delta_type == "text_delta" else "partial_json"
        events.append(
            _sse(
                {"type": "content_block_start", "index": index, "content_block": block},
                "content_block_start",
            )
        )
        for piece in _chunks(text, size):
            events.append(
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": delta_type, field: piece},
                    },
                    "content_block_delta",
                )
            )
        events.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "tool_use" if answer.tool_calls else "end_turn",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": max(1, len(answer.text) // 4)},
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return events


def _responses_stream(answer: Answer | str, model: str, size: int) -> list[bytes]:
    """OpenAI Responses API events for a text output and function calls."""
    if isinstance(answer, str):
        answer = Answer(answer)
    created = int(time.time())
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
    events: list[dict[str, Any]] = [{"type": "response.created", "response": response}]
    items = _responses_items(answer)
    for output_index, item in enumerate(items):
        if item["type"] == "message":
            item_id = item["id"]
            text = item["content"][0]["text"]
            events += [
                {
                    "type": "response.output_item.added",
                    "output_index": output_index,
                    "item": {**item, "status": "in_progress", "content": []},
                },
                {
                    "type": "response.content_part.added",
                    "item_id": item_id,
                    "output_index": output_index,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []},
                },
            ]
            where = {"item_id": item_id, "output_index": output_index, "content_index": 0}
            for piece in _chunks(text, size):
                events.append({"type": "response.output_text.delta", **where, "delta": piece})
            events += [
                {"type": "response.output_text.done", **where, "text": text},
                {"type": "response.content_part.done", **where, "part": item["content"][0]},
            ]
        else:
            where = {"item_id": item["id"], "output_index": output_index}
            events.append(
                {
                    "type": "response.output_item.added",
                    "output_index": output_index,
                    "item": {**item, "arguments": "", "status": "in_progress"},
                }
            )
            for piece in _chunks(item["arguments"], size):
                events.append(
                    {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                )
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    **where,
                    "arguments": item["arguments"],
                }
            )
        events.append(
            {"type": "response.output_item.done", "output_index": output_index, "item": item}
        )
    completion = max(1, len(answer.text) // 4)
    events.append(
        {
            "type": "response.completed",
            "response": {
                **response,
                "status": "completed",
                "output": items,
                "usage": {
                    "input_tokens": 1,
                    "output_tokens": completion,
                    "total_tokens": 1 + completion,
                },
            },
        }
    )
    return [
        _sse({**event, "sequence_number": number}, event["type"])
        for number, event in enumerate(events)
    ]


def _handler_for(fake: FakeModel) -> type[BaseHTTPRequestHandler]:
    """An http.server handler that answers through ``fake`` (its mock transport logic)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None  # request lines are test noise (and may hold paths)

        def _serve(self) -> None:
            module = fake._module
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            host = self.headers.get("host", "127.0.0.1")
            request = module.Request(
                self.command,
                f"http://{host}{self.path}",
                headers=list(self.headers.items()),
                content=body,
            )
            response = fake._handle(request)
            streamed = response.headers.get("content-type", "").startswith("text/event-stream")
            self.send_response(response.status_code)
            for name, value in response.headers.multi_items():
                if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                    self.send_header(name, value)
            if not streamed:
                content = response.read()
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
                return
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            try:
                for piece in response.stream:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
            except OSError:
                # fail_stream_after: drop the connection without the closing chunk.
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler
