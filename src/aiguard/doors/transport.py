"""httpx transports that put every request through the guard.

``GuardTransport`` / ``AsyncGuardTransport`` wrap an inner transport (the network, or a
fake in tests). They work with ``httpx`` and with ``httpx2`` (the fork current OpenAI and
Anthropic SDKs are built on): the two share one API, so the transport only needs to know
which module's Request and Response classes to build.
"""

from __future__ import annotations

import contextvars
import dataclasses
import email.message
import email.utils
import functools
import json
import random
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
)
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx

from .._json import dumps_bytes, read_whole
from ..context import CallContext, current_context
from ..errors import AIGuardError, MalformedPayload
from ..pipeline.call import Call, parse_json_body, usage_of
from ..pipeline.routing import Router
from ..provenance.chain import new_request_id
from ..providers import Adapter, adapter_for
from ._request_parts import protect_headers, protect_url
from .streaming import DEFAULT_HOLD_LIMIT, StreamRestorer, TokenRestorer

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from ..pipeline.host import GuardHost
    from ..policy.model import DestinationPolicy, RetryPolicy

__all__ = ["AsyncGuardTransport", "GuardTransport", "Router", "build_client"]

#: The OpenAI SDK's defaults (openai._constants); a bare client would lose them.
SDK_TIMEOUT_SECONDS = 600.0
SDK_CONNECT_TIMEOUT_SECONDS = 5.0
SDK_MAX_CONNECTIONS = 1000
SDK_MAX_KEEPALIVE = 100

_HOP_HEADERS = frozenset({b"content-length", b"content-encoding", b"transfer-encoding"})

#: Bodies (requests or answers) at least this large are protected or restored in a
#: worker thread by the async transport, whatever the stores: scanning megabytes on the
#: event loop would stall every other request and stream it serves.
OFFLOAD_BYTES = 256 * 1024


def _operation(path: str) -> str:
    for suffix, name in (
        ("/chat/completions", "chat"),
        ("/completions", "text_completion"),
        ("/embeddings", "embeddings"),
        ("/responses", "responses"),
        ("/messages", "chat"),
    ):
        if path.endswith(suffix):
            return name
    return "other"


class _Exchange:
    """One attempt of one request through the guard; shared by the sync and async transports.

    ``follows`` is the previous attempt of the same call when aiguard itself retries:
    the new attempt shares its request id and takes the next attempt number.
    """

    def __init__(
        self,
        guard: GuardHost,
        module: ModuleType,
        request: Any,
        route: _Route,
        follows: _Exchange | None = None,
    ) -> None:
        self.guard = guard
        self.module = module
        self.request = request
        self.url, self.destination = route
        self.call: Call | None = None
        self.adapter: Adapter | None = None
        self.json_content = False
        self.key = ""
        self._follows = follows

    def prepare(self, raw: bytes) -> Any:
        """Decide and protect; return the request to send upstream (or raise, recorded)."""
        guard = self.guard
        request = self.request
        ctx = current_context() or CallContext()
        url, destination = self.url, self.destination
        target = guard.policy.destinations.get(destination) if destination else None
        # Read once: each lookup in the library's headers is a scan of all of them.
        pairs = request.headers.multi_items()
        headers = _by_name(pairs)
        try:
            retry_count = int(headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            retry_count = 0
        extra: dict[str, Any] = {"server.address": request.url.host}
        body: Any = None
        malformed: MalformedPayload | None = None
        unread: str | None = None
        path = request.url.path
        adapter: Adapter | None = None
        if raw:
            what = _unreadable(guard, headers)
            if what is not None:
                if target is not None and target.forward_unreadable:
                    unread = f"forwarded unread: the request body is {what} (forward_unreadable)"
                else:
                    malformed = MalformedPayload(
                        f"the request body is {what}, which aiguard cannot inspect, so it was "
                        "not sent. Send it as uncompressed JSON, or, to send such bodies "
                        f"unread, set forward_unreadable = true under [destinations."
                        f"{destination or '<name>'}] (every such event says so)"
                    )
            else:
                try:
                    body = parse_json_body(raw, "request")
                except MalformedPayload as exc:
                    malformed = exc
                adapter = adapter_for(path, target)
                if adapter is None and malformed is None:
                    if target is not None and target.unknown_paths == "protect":
                        adapter = _EVERY_STRING
                    else:
                        malformed = MalformedPayload(
                            f"no payload adapter reads requests to {guard.quotable(path)}, so "
                            "it was not "
                            "sent. Describe it with [[destinations."
                            f"{destination or '<name>'}.adapters]] (path, protect, keep, "
                            'restore), or set unknown_paths = "protect" there to protect '
                            "every string of its JSON"
                        )
        self.adapter = adapter
        self.json_content = adapter is not None and adapter.json_answer(body)
        model = body.get("model") if isinstance(body, dict) else None
        # The model name is the caller's text too: events and errors quote it only
        # when it holds no finding.
        model = guard.label_of(model) if isinstance(model, str) else None
        # The body is hashed once: its keyed digest is the event's input digest and,
        # with the scope and URL, what tells a retried attempt of the same call.
        input_digest = guard.digest_bytes(raw) if raw else None
        self.key = guard.digest_bytes(
            b"\x00".join(
                [
                    ctx.tenant.encode(),
                    (ctx.conversation or "").encode(),
                    url.encode(),
                    (input_digest or "").encode(),
                ]
            )
        )
        follows = self._follows
        if follows is not None and follows.call is not None:
            request_id = follows.call.request_id or new_request_id()
            attempt = follows.call.attempt + 1
            guard.attempts.bump(self.key, attempt)
        else:
            request_id, attempt = guard.attempts.resolve(self.key, retry_count, new_request_id())
            idempotency = headers.get("idempotency-key")
            if idempotency:
                # The caller chose it (it can hold anything): events get a keyed digest,
                # equal for the SDK's retries, which resend the same key.
                request_id = guard.caller_id("idem", ctx.tenant, idempotency)
        call = guard.begin(
            ctx,
            destination,
            model=model,
            operation=adapter.operation if adapter is not None else _operation(path),
            request_id=request_id,
            attempt=attempt,
            extra=extra,
            url=url,
        )
        self.call = call
        call.input_digest = input_digest
        if unread is not None and call.decision is not None:
            call.decision = dataclasses.replace(
                call.decision, reasons=(*call.decision.reasons, unread)
            )
        try:
            if malformed is not None:
                raise malformed
            if body is None:
                new_raw = raw
            else:
                protected = call.protect_json(body, adapter)
                # An untouched body is forwarded as the caller's bytes, not re-encoded,
                # unless a repeated key hides a value the parsed body does not hold.
                untouched = protected is body and read_whole(raw.decode("utf-8"), body)
                new_raw = raw if untouched else dumps_bytes(protected)
                call.sent_text = new_raw.decode("utf-8")
            # The URL and headers carry caller data too (extra_query, extra_headers,
            # path parameters): inspected like body values, refused or tokenized.
            new_url = protect_url(call, url)
            new_headers = protect_headers(call, pairs)
            same_headers = new_headers == pairs
            if new_raw is raw and new_url == url and same_headers:
                # Nothing to change: the request goes on as the SDK built it.
                return request
            return self._rebuilt(new_raw, new_url, None if same_headers else new_headers)
        except AIGuardError as exc:
            guard.finish(call, "refusal", "denied", error=exc.code, **extra)
            raise
        except Exception as exc:
            # Decided, tokens issued, nothing sent: the attempt is recorded all the same.
            guard.finish(call, "error", "error", error=type(exc).__name__, **extra)
            raise

    def _rebuilt(self, raw: bytes, url: str, headers: list[tuple[str, str]] | None) -> Any:
        """The request to send: ``raw`` to ``url``, with ``headers`` when protecting
        changed one (None: the SDK's own)."""
        request = self.request
        if headers is None:
            # The SDK's own bytes: a UTF-8 value is not re-encoded as ASCII (which
            # fails), and nothing is normalized again.
            sent = request.headers.copy()
        else:
            # Written back as they were read; a replacement that is not ASCII (a mask
            # keeps a value's punctuation) as UTF-8, which leaves ASCII as it is.
            encoding = request.headers.encoding
            sent = self.module.Headers(
                headers, encoding="utf-8" if encoding == "ascii" else encoding
            )
        sent["Content-Length"] = str(len(raw))
        return _with_body(
            self.module.Request(
                request.method,
                request.url if url == self.url else url,
                headers=sent,
                stream=self.module.ByteStream(raw),
                extensions=request.extensions,
            )
        )

    def failed(self, exc: BaseException) -> None:
        if self.call is not None:
            self.guard.finish(
                self.call,
                "error",
                "error",
                error=type(exc).__name__,
                **{"server.address": self.request.url.host},
            )

    def _restore(self, call: Call, raw: bytes, content_type: str, extra: dict[str, Any]) -> bytes:
        if not raw:
            return raw
        decoded = _answer_text(raw, content_type)
        if decoded is None:
            return raw
        text, codec, errors = decoded
        # UTF-8 JSON goes through the adapter; other text (other charsets, stray bytes)
        # is restored and scanned as text, which reads JSON in it too.
        if (errors, codec) == ("strict", "utf-8") and (
            "json" in content_type or text.lstrip()[:1] in ("{", "[")
        ):
            try:
                body = parse_json_body(raw, "response")
            except MalformedPayload:
                pass  # JSON-looking text that is not JSON: read as text below
            else:
                if isinstance(body, dict):
                    extra.update(usage_of(body))
                try:
                    restored = call.restore_json(body, self.adapter)
                    # Nothing restored or withheld: the caller gets the upstream bytes,
                    # unless a repeated key hides a value the output rule never read.
                    if restored is body and read_whole(text, body):
                        return raw
                    return dumps_bytes(restored)
                except RecursionError:
                    raise MalformedPayload(
                        "the answer nests too deeply for aiguard to inspect it; it was not "
                        "passed on. Check what the upstream sends (no model answer nests "
                        "this deep)"
                    ) from None
        restored_text = call.restore_text("$", text)
        if restored_text is text:
            return raw
        try:
            return restored_text.encode(codec, errors)
        except UnicodeError:
            # A restored original the declared charset cannot write (a Latin-1 answer,
            # a CJK name): written as "?" rather than failing the answer.
            return restored_text.encode(codec, "replace")

    def complete(self, response: Any, raw: bytes) -> Any:
        """Restore the answer and record the event; returns the response for the caller."""
        call = self.call
        assert call is not None
        call.output_digest = self.guard.digest_bytes(raw) if raw else None
        content_type = response.headers.get("content-type", "")
        extra: dict[str, Any] = {"server.address": self.request.url.host}
        try:
            new_raw = self._restore(call, raw, content_type, extra)
            answer = response if new_raw is raw else self._response(response, content=new_raw)
        except Exception as exc:
            # The model was called: the attempt is recorded even when its answer cannot
            # be given back (the vault is down), and the caller gets the error.
            self.guard.finish(
                call,
                "error",
                "error",
                http_status=response.status_code,
                error=exc.code if isinstance(exc, AIGuardError) else type(exc).__name__,
                **extra,
            )
            raise
        ok = 200 <= response.status_code < 300
        self.guard.finish(
            call,
            "call" if ok else "error",
            "ok" if ok else "error",
            http_status=response.status_code,
            error=None if ok else f"http_{response.status_code}",
            **extra,
        )
        return answer

    def streamed(self, response: Any, stream: Any) -> Any:
        """The caller's response for a server-sent event stream: restored as it is read."""
        return self._response(response, stream=stream)

    def _response(self, upstream: Any, *, content: bytes | None = None, stream: Any = None) -> Any:
        # Length and encoding change with restoring; the library sets them anew for a
        # stream, and a whole body gets its length here. The rest are the upstream's
        # bytes as they came: a UTF-8 value is not ASCII text, and written back as text
        # it would fail the answer the caller paid for.
        source = upstream.headers
        headers = self.module.Headers(
            [(k, v) for k, v in source.raw if k.lower() not in _HOP_HEADERS],
            encoding=source.encoding,
        )
        if content is not None:
            headers["Content-Length"] = str(len(content))
            return _with_body(
                self.module.Response(
                    upstream.status_code,
                    headers=headers,
                    request=self.request,
                    extensions=upstream.extensions,
                    stream=self.module.ByteStream(content),
                )
            )
        return self.module.Response(
            upstream.status_code,
            headers=headers,
            request=self.request,
            extensions=upstream.extensions,
            stream=stream,
        )


def _with_body(message: Any) -> Any:
    # Built from a stream (the library's own encoding step costs more than the rest of
    # the message) and read at once, so ``.content`` is there as with ``content=``.
    message.read()
    return message


def _is_stream(response: Any) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return 200 <= response.status_code < 300 and content_type.startswith("text/event-stream")


class _StreamSession:
    """The guard's side of one streamed answer: restore, digest, and record it once.

    Shared by the sync and async stream wrappers, which only move bytes. The event is
    written at the end of the stream, when the upstream fails, or when the caller closes
    the stream early: ``ok`` if the terminal event ([DONE], message_stop,
    response.completed) or the end of the stream was reached, ``error`` otherwise, with
    what happened in ``reasons``.
    """

    def __init__(self, exchange: _Exchange) -> None:
        call = exchange.call
        assert call is not None
        self._exchange = exchange
        self._call = call
        # Same restore and output rule as Call.restore_text, applied channel by channel.
        target = call.guard.policy.destinations.get(call.destination or "")
        self.restorer = StreamRestorer(
            TokenRestorer(call.lookup, call, call.link_lookup),
            json_content=exchange.json_content,
            hold_limit=target.stream_hold_limit if target is not None else DEFAULT_HOLD_LIMIT,
            restores_tool=call.restores_tool if call.keeps_some_tools else None,
            kept_lookup=call.lookup_in_tool,
        )
        self.guard = exchange.guard
        self._mac = exchange.guard.digester()
        self._received = 0
        self.finished = False

    def feed(self, chunk: bytes) -> bytes:
        self._mac.update(chunk)
        self._received += len(chunk)
        return self.restorer.feed(chunk)

    def end(self) -> bytes:
        """The upstream's stream ended: what is still held, for the caller."""
        return self.restorer.close()

    def outcome(self, failure: BaseException | None, abandoned: bool) -> dict[str, Any] | None:
        """The fields of the stream's one event, or None once it was recorded."""
        if self.finished:
            return None
        self.finished = True
        call = self._call
        restorer = self.restorer
        call.output_digest = self._mac.result() if self._received else None
        fields: dict[str, Any] = {
            "server.address": self._exchange.request.url.host,
            **restorer.meta,
        }
        note: str | None = None
        if failure is not None:
            error = type(failure).__name__
            note = f"stream: the upstream failed after {self._received} bytes ({error})"
        elif restorer.upstream_error is not None:
            error = restorer.upstream_error
            note = "stream: the upstream reported an error inside the stream"
        elif abandoned and not restorer.done:
            error = "StreamAbandoned"
            note = f"stream: the caller closed the stream after {self._received} bytes"
        else:
            error = None
        if note is not None and call.decision is not None:
            call.decision = dataclasses.replace(
                call.decision, reasons=(*call.decision.reasons, note)
            )
        ok = error is None
        return {
            "event_type": "call" if ok else "error",
            "status": "ok" if ok else "error",
            "http_status": 200,
            "error": error,
            **fields,
        }

    def record(self, outcome: dict[str, Any] | None) -> None:
        if outcome is None:
            return
        event_type = outcome.pop("event_type")
        status = outcome.pop("status")
        self._exchange.guard.finish(self._call, event_type, status, **outcome)


class _SyncStream:
    """Wraps the upstream's response stream; the sync half of the twin pair.

    Iterating again continues where the last iteration stopped: the SDKs drain a stream
    after its terminal event by iterating it a second time.
    """

    def __init__(self, session: _StreamSession, upstream: Any) -> None:
        self._session = session
        self._upstream = upstream
        self._iterator: Generator[bytes, None, None] | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self._iterator is None:
            self._iterator = self._restored()
        return self._iterator

    def _restored(self) -> Generator[bytes, None, None]:
        session = self._session
        try:
            for chunk in self._upstream.iter_bytes():
                out = session.feed(chunk)
                if out:
                    yield out
        except GeneratorExit:
            raise
        except BaseException as exc:
            # What is held is text the caller is owed; give it before the error.
            tail = session.end()
            session.record(session.outcome(exc, abandoned=False))
            if tail:
                yield tail
            raise
        tail = session.end()
        if tail:
            yield tail
        session.record(session.outcome(None, abandoned=False))

    def close(self) -> None:
        try:
            if self._iterator is not None:
                self._iterator.close()
            self._upstream.close()
        finally:
            self._session.record(self._session.outcome(None, abandoned=True))


class _AsyncStream:
    """The async twin of `_SyncStream`; the provenance write runs in a worker thread."""

    def __init__(self, session: _StreamSession, upstream: Any) -> None:
        self._session = session
        self._upstream = upstream
        self._iterator: AsyncGenerator[bytes, None] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterator is None:
            self._iterator = self._restored()
        return self._iterator

    async def _restored(self) -> AsyncGenerator[bytes, None]:
        session = self._session
        try:
            async for chunk in self._upstream.aiter_bytes():
                out = session.feed(chunk)
                if out:
                    yield out
        except GeneratorExit:
            raise
        except BaseException as exc:
            if _cancelled(exc):
                # The caller stopped waiting (a client that left the gateway, a timeout
                # around the SDK call): the stream was abandoned, the upstream did not fail.
                await _record_async(session, session.outcome(None, abandoned=True))
                raise
            tail = session.end()
            await _record_async(session, session.outcome(exc, abandoned=False))
            if tail:
                yield tail
            raise
        tail = session.end()
        if tail:
            yield tail
        await _record_async(session, session.outcome(None, abandoned=False))

    async def aclose(self) -> None:
        try:
            if self._iterator is not None:
                await self._iterator.aclose()
            await self._upstream.aclose()
        finally:
            await _record_async(self._session, self._session.outcome(None, abandoned=True))


def _cancelled(exc: BaseException) -> bool:
    """``exc`` is the running event loop's cancellation (asyncio's, or trio's via anyio)."""
    import anyio

    try:
        return isinstance(exc, anyio.get_cancelled_exc_class())
    except Exception:  # no async library is running: it cannot be a cancellation
        return False


async def _record_async(session: _StreamSession, outcome: dict[str, Any] | None) -> None:
    if outcome is None:
        return
    if not session.guard.stores_block:
        # In-memory stores and a queued (or in-memory) log: a thread hop per stream would
        # cost more than the record, and contend with the loop for the GIL. Nothing is
        # awaited, so nothing can cancel it.
        session.record(outcome)
        return
    import anyio
    import anyio.to_thread

    # Sinks may write files or talk to a server; keep that off the event loop. Shielded:
    # the SDKs drain streams under a short deadline, and a cancelled write would lose
    # the call's only event.
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(session.record, outcome)


_STREAM_TYPES: dict[tuple[str, bool], type] = {}


def _stream_type(module: ModuleType, asynchronous: bool) -> type:
    """The wrapper class for ``module`` (httpx or httpx2): its Response checks the base."""
    key = (module.__name__, asynchronous)
    found = _STREAM_TYPES.get(key)
    if found is None:
        if asynchronous:
            found = type("GuardedAsyncStream", (_AsyncStream, module.AsyncByteStream), {})
        else:
            found = type("GuardedSyncStream", (_SyncStream, module.SyncByteStream), {})
        _STREAM_TYPES[key] = found
    return found


#: For ``unknown_paths = "protect"``: no special handling, every string is data.
_EVERY_STRING = Adapter("json", "other")


def _by_name(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Header values by lower-case name, repeated ones joined with ", " as the
    library's ``headers.get`` joins them."""
    named: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        named[key] = f"{named[key]}, {value}" if key in named else value
    return named


def _unreadable(guard: GuardHost, headers: Mapping[str, str]) -> str | None:
    """What makes a request body unreadable for aiguard, or None when it is JSON.

    The header values are the caller's: quoted only when they hold no finding."""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding and encoding != "identity":
        return f"compressed (content-encoding {guard.label_of(encoding)})"
    content_type = headers.get("content-type", "application/json")
    if "json" not in content_type.lower():
        return guard.quotable(content_type.split(";")[0].strip() or content_type)
    return None


#: Answers that are media, not text: passed through unread when they are not UTF-8.
_BINARY_MEDIA = ("audio/", "image/", "video/", "font/")
_BINARY_TYPES = frozenset(
    {"application/octet-stream", "application/zip", "application/gzip", "application/pdf"}
)


def _answer_text(raw: bytes, content_type: str) -> tuple[str, str, str] | None:
    """An answer body as text for the output rule: (text, codec, errors) to write it
    back with, or None for media that is not text.

    A declared charset other than UTF-8 first (UTF-16 text of ASCII is valid UTF-8 too,
    NULs and all), or the UTF-16/32 that JSON's detection finds from a BOM or NULs;
    then UTF-8; else UTF-8 with the undecodable bytes kept as lone surrogates
    (``surrogateescape``), so a value in a body with one stray Latin-1 byte is still
    read, and the bytes around it go back exactly as they came.
    """
    lowered = content_type.lower()
    charset: str | None = None
    if "charset" in lowered and "utf-8" not in lowered:
        message = email.message.Message()
        message["content-type"] = content_type
        charset = message.get_content_charset()
    elif raw[:1] in (b"\x00", b"\xfe", b"\xff") or raw[1:2] == b"\x00":
        charset = json.detect_encoding(raw)
    if charset is not None and charset not in ("utf-8", "us-ascii"):
        try:
            return raw.decode(charset), charset, "strict"
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return raw.decode("utf-8"), "utf-8", "strict"
    except UnicodeDecodeError:
        pass
    media = lowered.split(";", 1)[0].strip()
    if media.startswith(_BINARY_MEDIA) or media in _BINARY_TYPES:
        return None
    return raw.decode("utf-8", "surrogateescape"), "utf-8", "surrogateescape"


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, ``retry-after`` seconds or date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


#: A request's URL and the destination it routes to (None: no destination covers it).
_Route = tuple[str, str | None]


def _route(guard: GuardHost, request: Any) -> _Route:
    # Once per request: each attempt and the retry policy read the same route.
    url = str(request.url)
    return url, guard.router.route(url)


def _retry_policy(guard: GuardHost, destination: str | None) -> RetryPolicy | None:
    target: DestinationPolicy | None = (
        guard.policy.destinations.get(destination) if destination else None
    )
    if target is None or target.retries.max_attempts <= 1:
        return None
    return target.retries


def _retrying_options(policy: RetryPolicy, module: ModuleType) -> dict[str, Any]:
    """tenacity options for one call: what is retried, how long to wait, when to stop."""
    from tenacity import stop_after_attempt, stop_before_delay

    statuses = frozenset(policy.statuses)
    errors: tuple[type[BaseException], ...] = (module.TransportError,)

    def retry(state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None:
            return False
        if outcome.failed:
            return policy.connection_errors and isinstance(outcome.exception(), errors)
        return bool(outcome.result().status_code in statuses)

    def wait(state: RetryCallState) -> float:
        backoff = min(policy.max_wait, 0.25 * 2 ** (state.attempt_number - 1))
        delay = backoff * (0.5 + random.random() / 2)
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            asked = _retry_after(outcome.result().headers)
            if asked is not None:
                delay = asked
        return float(min(delay, policy.max_wait))

    def give_up(state: RetryCallState) -> Any:
        # Out of attempts or time: the caller gets the last answer, or the last error.
        assert state.outcome is not None
        return state.outcome.result()

    return {
        "retry": retry,
        "wait": wait,
        "stop": stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_seconds),
        "retry_error_callback": give_up,
    }


class GuardTransport(httpx.BaseTransport):
    """Sync transport: protect, send through ``inner``, restore, record.

    With ``retries`` set on the destination, 429, 5xx and connection errors are retried
    here (tenacity, honouring ``Retry-After``), each attempt its own event under the
    call's request id.
    """

    def __init__(self, guard: GuardHost, inner: Any, module: ModuleType = httpx) -> None:
        self._guard = guard
        self._inner = inner
        self._module = module

    def handle_request(self, request: Any) -> Any:
        raw = request.read()
        route = _route(self._guard, request)
        policy = _retry_policy(self._guard, route[1])
        if policy is None:
            return self._attempt(_Exchange(self._guard, self._module, request, route), raw)
        from tenacity import Retrying

        last: list[_Exchange] = []

        def attempt() -> Any:
            exchange = _Exchange(
                self._guard, self._module, request, route, last[-1] if last else None
            )
            last.append(exchange)
            return self._attempt(exchange, raw)

        return Retrying(**_retrying_options(policy, self._module))(attempt)

    def _attempt(self, exchange: _Exchange, raw: bytes) -> Any:
        upstream = exchange.prepare(raw)
        try:
            response = self._inner.handle_request(upstream)
            if _is_stream(response):
                stream = _stream_type(self._module, False)(_StreamSession(exchange), response)
                return exchange.streamed(response, stream)
            try:
                body = response.read()
            finally:
                response.close()
        except BaseException as exc:
            exchange.failed(exc)
            raise
        return exchange.complete(response, body)

    def close(self) -> None:
        self._inner.close()


class AsyncGuardTransport(httpx.AsyncBaseTransport):
    """Async twin of `GuardTransport`."""

    def __init__(self, guard: GuardHost, inner: Any, module: ModuleType = httpx) -> None:
        self._guard = guard
        self._inner = inner
        self._module = module

    async def handle_async_request(self, request: Any) -> Any:
        raw = await request.aread()
        route = _route(self._guard, request)
        policy = _retry_policy(self._guard, route[1])
        if policy is None:
            return await self._attempt(_Exchange(self._guard, self._module, request, route), raw)
        import anyio
        from tenacity import AsyncRetrying

        last: list[_Exchange] = []

        async def attempt() -> Any:
            exchange = _Exchange(
                self._guard, self._module, request, route, last[-1] if last else None
            )
            last.append(exchange)
            return await self._attempt(exchange, raw)

        options = _retrying_options(policy, self._module)
        return await AsyncRetrying(sleep=anyio.sleep, **options)(attempt)

    async def _attempt(self, exchange: _Exchange, raw: bytes) -> Any:
        # SQLite and PostgreSQL stores do real I/O, and a large body takes long to scan:
        # then the pipeline runs in a worker thread (the call context travels with it)
        # so the event loop is never blocked.
        blocking = self._guard.stores_block or len(raw) >= OFFLOAD_BYTES
        if blocking:
            upstream = await _to_thread(_in_context(exchange.prepare, raw))
        else:
            upstream = exchange.prepare(raw)
        try:
            response = await self._inner.handle_async_request(upstream)
            if _is_stream(response):
                stream = _stream_type(self._module, True)(_StreamSession(exchange), response)
                return exchange.streamed(response, stream)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        except BaseException as exc:
            exchange.failed(exc)
            raise
        if blocking or len(body) >= OFFLOAD_BYTES:
            return await _to_thread(_in_context(exchange.complete, response, body))
        return exchange.complete(response, body)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _to_thread(fn: Callable[[], Any]) -> Any:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(fn)


def _in_context(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """``fn(*args)`` bound to the caller's contextvars, for a worker thread."""
    context = contextvars.copy_context()
    return functools.partial(context.run, fn, *args)


def _httpx2() -> ModuleType | None:
    try:
        import httpx2
    except ImportError:
        return None
    return httpx2


def module_for(transport: Any) -> ModuleType:
    """The HTTP library a transport belongs to (httpx or httpx2)."""
    if transport is None:
        return _httpx2() or httpx
    if isinstance(transport, (httpx.BaseTransport, httpx.AsyncBaseTransport)):
        return httpx
    second = _httpx2()
    if second is not None and isinstance(
        transport, (second.BaseTransport, second.AsyncBaseTransport)
    ):
        return second
    raise TypeError(
        f"transport must be an httpx or httpx2 transport, not {type(transport).__name__}"
    )


def build_client(
    guard: GuardHost, transport: Any, *, asynchronous: bool, options: dict[str, Any]
) -> Any:
    module = module_for(transport)
    if transport is None:
        limits = module.Limits(
            max_connections=SDK_MAX_CONNECTIONS, max_keepalive_connections=SDK_MAX_KEEPALIVE
        )
        factory = module.AsyncHTTPTransport if asynchronous else module.HTTPTransport
        transport = factory(limits=limits)
    options.setdefault(
        "timeout", module.Timeout(SDK_TIMEOUT_SECONDS, connect=SDK_CONNECT_TIMEOUT_SECONDS)
    )
    options.setdefault("follow_redirects", True)
    if asynchronous:
        guarded = AsyncGuardTransport(guard, transport, module)
        return module.AsyncClient(transport=guarded, **options)
    return module.Client(transport=GuardTransport(guard, transport, module), **options)
