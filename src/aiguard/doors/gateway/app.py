"""The gateway's ASGI app: an OpenAI-compatible proxy whose every call goes through the guard.

Requests are forwarded with ``guard.async_http_client()``, so they take exactly the path
a wrapped SDK client takes: the same decision, adapters, tokens, streaming restore,
output rule and provenance events. This module only adds what a server needs on top:
who the caller is, which context a request carries, limits, and HTTP error mapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ...context import CallContext
from ...errors import (
    AIGuardError,
    MalformedPayload,
    PolicyDenied,
    PolicyError,
    ProvenanceError,
    VaultError,
)
from ...pipeline.host import GuardHost
from ..transport import AsyncGuardTransport, module_for
from ._netstream import asyncio_timeout, use_asyncio_backend
from .config import ANONYMOUS, GatewayConfig, Principal, lookup_key
from .metrics import GatewayMetrics, instrument

__all__ = ["Gateway", "RelayedStream", "create_app"]

log = logging.getLogger("aiguard.gateway")

#: The late restore of tool arguments (`Gateway.restore_tool_arguments`): its path, and
#: the scope a gateway key needs for it (``*`` holds it).
RESTORE_PATH = "/aiguard/tool-arguments/restore"
RESTORE_SCOPE = "tool_arguments.restore"

#: Gateway path -> (scope name, path below the upstream's base URL).
_ENDPOINTS: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("chat.completions", "/chat/completions"),
    "/v1/responses": ("responses", "/responses"),
    "/v1/embeddings": ("embeddings", "/embeddings"),
}

#: Request headers passed upstream (names as ASGI gives them: lower-case bytes);
#: everything else (cookies, the client's credentials, X-AIGuard-*, proxies' headers)
#: stays here.
_FORWARD_REQUEST = frozenset(
    {
        b"accept",
        b"content-type",
        b"content-encoding",
        b"idempotency-key",
        b"openai-beta",
        b"openai-organization",
        b"openai-project",
        # aiguard links an SDK's retries to one request id by it (docs/payloads.md).
        b"x-stainless-retry-count",
    }
)
#: Answer headers passed back: the body's type, the request id and when to retry. The
#: upstream's account headers (``openai-organization``, ``x-ratelimit-*``, processing
#: times) stay here unless `GatewayConfig.forward_response_headers` names them.
_FORWARD_RESPONSE = frozenset({"content-type", "x-request-id", "retry-after", "retry-after-ms"})

#: Body metadata keys that carry the context; removed before the body goes upstream.
_META = {
    "aiguard_subject": "subject",
    "aiguard_purpose": "purpose",
    "aiguard_use_for_training": "use_for_training",
    "aiguard_conversation": "conversation",
}
_HEADERS = {
    "x-aiguard-subject": "subject",
    "x-aiguard-purpose": "purpose",
    "x-aiguard-use-for-training": "use_for_training",
    "x-aiguard-conversation": "conversation",
}
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,255}")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}


class GatewayError(Exception):
    """An answer the gateway gives itself, in OpenAI's error format."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.code, self.headers)


def error_response(
    status: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _mapped(exc: AIGuardError) -> GatewayError:
    """aiguard's typed errors as HTTP statuses (their messages never hold raw values)."""
    if isinstance(exc, PolicyDenied):
        return GatewayError(403, exc.message, exc.code)
    if isinstance(exc, MalformedPayload):
        return GatewayError(400, exc.message, exc.code)
    if isinstance(exc, (ProvenanceError, VaultError)):
        # Fail closed and tell the client it may come back: nothing was sent.
        return GatewayError(503, exc.message, exc.code, {"retry-after": "1"})
    if isinstance(exc, PolicyError):
        return GatewayError(500, exc.message, exc.code)
    return GatewayError(500, exc.message, exc.code)


class Gateway:
    """The state behind one app: the guard, its upstream client, limits and metrics."""

    def __init__(
        self,
        guard: GuardHost,
        config: GatewayConfig,
        *,
        transport: Any = None,
        metrics: GatewayMetrics | None = None,
        owns_guard: bool = False,
    ) -> None:
        self.guard = guard
        self.config = config
        self.owns_guard = owns_guard
        destinations = guard.policy.destinations
        upstream = config.upstream
        if upstream is None:
            if config.destination is None or config.destination not in destinations:
                raise ValueError("name the upstream (--upstream URL) or a policy destination")
            upstream = destinations[config.destination].base_url
        self.upstream = upstream.rstrip("/")
        routed = guard.router.route(self.upstream + "/chat/completions")
        destination = config.destination or routed
        if destination is None or destination not in destinations:
            raise ValueError(
                f"the policy names no destination whose base_url covers {self.upstream}; "
                "add one under [destinations] (approved, with the purposes it serves)"
            )
        if routed != destination:
            raise ValueError(
                f"the upstream {self.upstream} is not under the base_url of destination "
                f"{destination!r} ({destinations[destination].base_url})"
            )
        self.destination = destination
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        instrument(guard, self.metrics)
        self.keys = config.key_table()
        self.anonymous = config.anonymous_allowed()
        self.upstream_key = config.upstream_key()
        self.response_headers = _FORWARD_RESPONSE | {
            name.lower() for name in config.forward_response_headers
        }
        # httpx2 when it is installed: httpx's pool walks every idle connection (and
        # counts them again per connection) on each request, which at a hundred streams
        # costs the gateway more than the streams themselves; httpx2's pool does not.
        http = module_for(transport)
        self._timeout_error: type[Exception] = http.TimeoutException
        self._transport_error: type[Exception] = http.TransportError
        inner = transport
        if inner is None:
            limits = http.Limits(
                max_connections=config.max_streams + 64, max_keepalive_connections=100
            )
            inner = http.AsyncHTTPTransport(limits=limits)
            use_asyncio_backend(inner)
        # Requests are built by a client (its timeouts) and sent by the guarded transport
        # itself: the client's layers (auth, redirects, hooks, a bound stream around every
        # chunk) are work per request and per chunk, and its cookie jar would hand one
        # caller's upstream cookies to the next caller.
        self._guarded: Any = AsyncGuardTransport(guard, inner, http)
        self.client: Any = http.AsyncClient(
            transport=self._guarded,
            timeout=http.Timeout(config.upstream_timeout, connect=config.connect_timeout),
            # A redirect would be a request the caller did not make; let them see it.
            follow_redirects=False,
        )
        self.streams = 0
        self.draining = False
        self._reachable: tuple[float, bool] = (0.0, False)
        self._idle = asyncio.Event()
        self._idle.set()

    # -- who and what ------------------------------------------------------------------

    def principal(self, request: Request) -> Principal:
        presented = request.headers.get("x-aiguard-key")
        if presented is None and not self.config.forward_client_authorization:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                presented = token.strip()
        if self.keys:
            if presented:
                found = lookup_key(self.keys, presented)
                if found is not None:
                    return found
                raise GatewayError(401, "the gateway API key is not valid", "invalid_api_key")
            if self.anonymous:
                return ANONYMOUS
            raise GatewayError(
                401,
                "a gateway API key is required (Authorization: Bearer <key>, or X-AIGuard-Key)",
                "missing_api_key",
            )
        if self.anonymous:
            # No keys configured: whatever key an SDK insists on sending means nothing here.
            return ANONYMOUS
        raise GatewayError(401, "the gateway accepts no callers (no keys configured)", "no_keys")

    def context_of(
        self, request: Request, principal: Principal, body: Any
    ) -> tuple[dict[str, Any], bool]:
        """The call context's fields from headers and body metadata; True if the body's
        metadata held some (they are removed from ``body`` in place)."""
        found: dict[str, str] = {}
        for header, name in _HEADERS.items():
            value = request.headers.get(header)
            if value is not None:
                found[name] = value.strip()
        changed = False
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if isinstance(metadata, dict):
            for key, name in _META.items():
                if key not in metadata:
                    continue
                value = metadata.pop(key)
                changed = True
                text = str(value).lower() if isinstance(value, bool) else value
                if not isinstance(text, str):
                    raise GatewayError(400, f"metadata.{key} must be a string", "invalid_metadata")
                if name in found and found[name] != text.strip():
                    raise GatewayError(
                        400,
                        f"metadata.{key} and the X-AIGuard header for {name} disagree",
                        "conflicting_context",
                    )
                found[name] = text.strip()
            if changed and not metadata:
                del body["metadata"]
        default = (
            principal.purposes[0]
            if principal.purposes and principal.purposes[0] != "*"
            else self.config.default_purpose
        )
        purpose = found.get("purpose") or default
        # The purpose is the caller's text: quoted only when it is a plain name, and an
        # unknown one is refused here, so it never reaches an event or a log raw.
        if not principal.may_claim(purpose):
            raise GatewayError(
                403,
                f"this gateway key may not claim purpose {self.guard.quotable(purpose)}; "
                f"it may claim {', '.join(principal.purposes)}",
                "purpose_not_allowed",
            )
        policy = self.guard.policy
        if policy.purpose(purpose) is None:
            raise GatewayError(
                403,
                f"unknown purpose {self.guard.quotable(purpose)}; use a built-in purpose "
                f"({', '.join(sorted(policy.all_purposes))}) or one declared under [purposes]",
                PolicyDenied.code,
            )
        subject = found.get("subject") or None
        if subject is not None and not principal.may_name(subject):
            # Never quoted: a subject id is personal data.
            raise GatewayError(
                403,
                "this gateway key may not name that data subject (X-AIGuard-Subject or "
                "metadata.aiguard_subject); the key's `subjects` in gateway.toml list the "
                "ones it may",
                "subject_not_allowed",
            )
        training = found.get("use_for_training", "false").lower()
        if training not in _TRUE | _FALSE:
            raise GatewayError(
                400, "X-AIGuard-Use-For-Training must be true or false", "invalid_header"
            )
        context = {
            "subject": subject,
            "tenant": principal.tenant,
            "purpose": purpose,
            "conversation": found.get("conversation") or None,
            "principal": principal.name,
            "use_for_training": training in _TRUE,
            "destination": self.destination,
            "known": (),
        }
        return context, changed

    # -- forwarding ------------------------------------------------------------------

    async def _off_loop(self, raw: bytes, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, in a worker thread when ``raw`` is large (parsing megabytes on
        the event loop would stall every stream in flight)."""
        if len(raw) >= self.config.offload_bytes:
            return await anyio.to_thread.run_sync(fn, *args)
        return fn(*args)

    async def read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise _too_big(limit)
            except ValueError:
                raise GatewayError(400, "invalid Content-Length", "invalid_request") from None
        body = bytearray()
        # A client trickling its body would hold a connection (and a slot) for ever.
        # asyncio's own deadline where there is one (Python 3.11+): anyio's cancel scope
        # costs several times more, on every request.
        timeout = self.config.body_timeout
        try:
            async with _body_deadline(timeout):
                await _read_into(request, body, limit)
        except TimeoutError:
            raise GatewayError(
                408,
                f"the request body did not arrive within {timeout:g} s; send it whole "
                "within that time (the gateway's body_timeout)",
                "request_timeout",
            ) from None
        return bytes(body)

    def headers_for_upstream(self, request: Request) -> list[tuple[bytes, bytes]]:
        # The client's bytes as they came: Starlette reads them as Latin-1 text, which
        # httpx would write back as ASCII and fail on a value that is not.
        raw = request.headers.raw
        headers = [(k, v) for k, v in raw if k.lower() in _FORWARD_REQUEST]
        client_auth = (
            next((v for k, v in raw if k.lower() == b"authorization"), None)
            if self.config.forward_client_authorization
            else None
        )
        if client_auth is not None:
            headers.append((b"authorization", client_auth))
        elif self.upstream_key is not None:
            headers.append((b"authorization", f"Bearer {self.upstream_key}".encode()))
        return headers

    async def proxy(self, request: Request, endpoint: str, suffix: str) -> Response:
        started = time.perf_counter()
        streaming = False
        try:
            if self.draining:
                raise GatewayError(
                    503, "the gateway is shutting down", "draining", {"retry-after": "1"}
                )
            principal = self.principal(request)
            if not principal.may_call(endpoint):
                raise GatewayError(
                    403, f"this gateway key may not call {endpoint}", "scope_not_allowed"
                )
            raw = await self.read_body(request) if request.method == "POST" else b""
            body: Any = None
            if raw:
                body = await self._off_loop(raw, _parse_body, raw)
            context, changed = self.context_of(request, principal, body)
            if changed:
                raw = await self._off_loop(raw, _dump_body, body)
            wants_stream = isinstance(body, dict) and body.get("stream") is True
            if wants_stream:
                if self.streams >= self.config.max_streams:
                    raise GatewayError(
                        429,
                        f"the gateway is serving its limit of {self.config.max_streams} "
                        "streams; retry shortly",
                        "too_many_streams",
                        {"retry-after": "1"},
                    )
                self._stream_opened()
            try:
                upstream = await self.send(request, suffix, raw, context)
            except BaseException:
                if wants_stream:
                    self._stream_closed()
                raise
            headers = _answer_headers(upstream.headers, self.response_headers)
            if _is_event_stream(upstream):
                streaming = True
                return RelayedStream(
                    self._relay(upstream, endpoint, started),
                    status_code=upstream.status_code,
                    headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
                )
            if wants_stream:
                self._stream_closed()  # the upstream answered with an error, not a stream
            try:
                content = await upstream.aread()
            finally:
                await upstream.aclose()
            response: Response = Response(content, upstream.status_code, headers=headers)
        except GatewayError as exc:
            response = exc.response()
        except Exception:
            log.exception("gateway: unexpected error")  # the exception names no values
            response = error_response(500, "internal gateway error", "internal_error")
        finally:
            if not streaming:
                self.metrics.latency.labels(endpoint, "false").observe(
                    time.perf_counter() - started
                )
        self.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    async def restore_tool_arguments(self, request: Request) -> Response:
        """``POST /aiguard/tool-arguments/restore``: `Guard.restore_tool_arguments` for an
        agent that reaches the model through the gateway.

        A destination that lists the tools it trusts (``restore_tool_arguments``) hands
        the others' arguments over with tokens; where the agent runs one of its own
        tools, it sends ``{"arguments": …, "tool": name}`` (the call's JSON text, or its
        object; the name for the ``tool_restore`` event) here and gets ``{"arguments":
        …}`` back with the originals. The key's tenant and the
        ``X-AIGuard-Subject`` / ``X-AIGuard-Conversation`` headers name the scope and
        the owner, as for a call, and the key needs the ``tool_arguments.restore``
        scope. It reads nothing a call's answer could not: tokens restore only for the
        subjects the key may name.
        """
        started = time.perf_counter()
        try:
            principal = self.principal(request)
            if not principal.may_call(RESTORE_SCOPE):
                raise GatewayError(
                    403, f"this gateway key may not call {RESTORE_SCOPE}", "scope_not_allowed"
                )
            raw = await self.read_body(request)
            body = await self._off_loop(raw, _parse_body, raw) if raw else None
            arguments = body.get("arguments") if isinstance(body, dict) else None
            tool = body.get("tool") if isinstance(body, dict) else None
            named = tool is None or isinstance(tool, str)
            if not isinstance(arguments, (str, dict, list)) or not named:
                raise GatewayError(
                    400,
                    'send {"arguments": …, "tool": "<name>"} with the tool call\'s arguments '
                    "(their JSON text or object) and, optionally, the tool's name",
                    "invalid_request",
                )
            context, _ = self.context_of(request, principal, body)
            restore = functools.partial(
                self.guard.restore_tool_arguments, arguments, CallContext(**context), tool=tool
            )
            if self.guard.stores_block:
                restored = await anyio.to_thread.run_sync(restore)
            else:
                restored = restore()
            response: Response = JSONResponse({"arguments": restored})
        except AIGuardError as exc:
            response = _mapped(exc).response()
        except GatewayError as exc:
            response = exc.response()
        except Exception:
            log.exception("gateway: unexpected error")  # the exception names no values
            response = error_response(500, "internal gateway error", "internal_error")
        self.metrics.latency.labels(RESTORE_SCOPE, "false").observe(time.perf_counter() - started)
        self.metrics.requests.labels(RESTORE_SCOPE, str(response.status_code)).inc()
        return response

    async def send(self, request: Request, suffix: str, raw: bytes, context: dict[str, Any]) -> Any:
        """The upstream's answer (an httpx or httpx2 response), opened as a stream."""
        url = self.upstream + suffix
        if request.url.query:
            url += "?" + request.url.query
        outgoing = self.client.build_request(
            request.method, url, headers=self.headers_for_upstream(request), content=raw or None
        )
        try:
            async with self.guard.context(**context):
                response = await self._guarded.handle_async_request(outgoing)
            response.request = outgoing
            return response
        except AIGuardError as exc:
            raise _mapped(exc) from None
        except self._timeout_error:
            raise GatewayError(
                504, "the upstream did not answer in time", "upstream_timeout"
            ) from None
        except self._transport_error as exc:
            # Only the class: httpx's message can quote the URL, and its query is the caller's.
            log.warning("gateway: the upstream failed: %s", type(exc).__name__)
            raise GatewayError(
                502, f"the upstream could not be reached ({type(exc).__name__})", "upstream_error"
            ) from None

    async def _relay(self, upstream: Any, endpoint: str, started: float) -> AsyncIterator[bytes]:
        """The restored stream, then its event (the transport records it on close)."""
        status = "200"
        try:
            # The response's own byte stream (the transport's restoring stream): the
            # response's iterator would only add a layer and a chunker per event.
            async for chunk in upstream.stream:
                yield chunk
        except Exception:
            # The transport released what it held (restored and ruled) and recorded the
            # failure; the client sees the stream end early, never a partial value.
            status = "502"
            log.warning("gateway: the upstream stream failed")
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
            self._stream_closed()
            self.metrics.requests.labels(endpoint, status).inc()
            self.metrics.latency.labels(endpoint, "true").observe(time.perf_counter() - started)

    def _stream_opened(self) -> None:
        self.streams += 1
        self._idle.clear()
        self.metrics.active_streams.set(self.streams)

    def _stream_closed(self) -> None:
        self.streams -= 1
        self.metrics.active_streams.set(self.streams)
        if self.streams == 0:
            self._idle.set()

    # -- health ------------------------------------------------------------------------

    async def upstream_reachable(self) -> bool:
        """A TCP connection to the upstream opens (cached 2 s; no request, no key spent)."""
        checked, result = self._reachable
        now = time.monotonic()
        if now - checked < 2.0:
            return result
        parts = urlsplit(self.upstream)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
        except (OSError, asyncio.TimeoutError):
            result = False
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            result = True
        self._reachable = (now, result)
        return result

    async def drain(self, timeout: float | None = None) -> bool:
        """Stop taking requests and wait for streams in flight; True if they all ended."""
        self.draining = True
        wait = self.config.drain_seconds if timeout is None else timeout
        with anyio.move_on_after(wait):
            await self._idle.wait()
        return self._idle.is_set()

    async def aclose(self) -> None:
        """Drain, close the upstream client, and flush (or close) the guard's sinks."""
        await self.drain()
        await self.client.aclose()
        close = self.guard.close if self.owns_guard else self.guard.flush
        await anyio.to_thread.run_sync(close)


def _parse_body(raw: bytes) -> Any:
    """The body as JSON, or None when it is not JSON (the transport then refuses it)."""
    try:
        return json.loads(raw)
    except ValueError:
        return None
    except RecursionError:
        raise GatewayError(
            400, "the request body nests too deeply to be inspected", "malformed_payload"
        ) from None


def _dump_body(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _is_event_stream(response: Any) -> bool:
    content_type = str(response.headers.get("content-type", ""))
    status = int(response.status_code)
    return 200 <= status < 300 and content_type.startswith("text/event-stream")


def _answer_headers(headers: Any, allowed: frozenset[str]) -> dict[str, str]:
    """The allowed headers of an upstream answer (httpx headers), as Starlette takes
    them: text it writes as Latin-1, so each value is its bytes read as Latin-1 and goes
    back out byte for byte (a UTF-8 value is neither re-encoded nor a failure)."""
    out: dict[str, str] = {}
    for name, value in headers.raw:
        lower = name.decode("latin-1").lower()
        if lower in allowed:
            out[lower] = value.decode("latin-1")
    return out


@contextlib.asynccontextmanager
async def _anyio_deadline(timeout: float) -> AsyncIterator[None]:
    with anyio.fail_after(timeout):
        yield


#: A deadline that raises TimeoutError: asyncio's own on Python 3.11+, anyio's before.
_body_deadline: Any = asyncio_timeout or _anyio_deadline


def _too_big(limit: int) -> GatewayError:
    return GatewayError(413, f"the request body is larger than {limit} bytes", "request_too_large")


async def _read_into(request: Request, body: bytearray, limit: int) -> None:
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_big(limit)


class RelayedStream(Response):
    """A streamed answer sent on chunk by chunk, and stopped when the client goes away.

    Starlette's ``StreamingResponse`` does the same inside an anyio task group (a cancel
    scope, a task handle and anyio's cancellation delivery for every response). At a
    hundred streams a second that is measurable CPU on the gateway's one event loop, so
    the relay and the watch for the client's disconnect are two plain asyncio tasks.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.body_iterator = content
        self.status_code = status_code
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.ensure_future(self._send_all(send))
        watch = asyncio.ensure_future(_until_disconnect(receive, relay))
        try:
            await relay
        except asyncio.CancelledError:
            if not watch.done() or watch.cancelled():
                raise  # cancelled from outside (the server stops), not by the client leaving
        finally:
            watch.cancel()

    async def _send_all(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive, relay: asyncio.Future[None]) -> None:
    """Wait for the client to go away, then stop ``relay`` (which closes the upstream)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    relay.cancel()


def create_app(
    guard: GuardHost,
    config: GatewayConfig | None = None,
    *,
    upstream: str | None = None,
    transport: Any = None,
    metrics: GatewayMetrics | None = None,
    owns_guard: bool = False,
) -> Starlette:
    """The gateway as an ASGI app, to serve with uvicorn or mount in another app.

    ``upstream`` (or ``config.upstream``) is the base URL requests are forwarded to; it
    must lie under an approved destination of ``guard.policy``. ``transport`` is the
    inner httpx transport towards the upstream (default: a pooled network transport).
    ``app.state.gateway`` is the `Gateway`; its ``aclose`` runs at lifespan shutdown.
    """
    if config is None:
        config = GatewayConfig(upstream=upstream)
    elif upstream is not None:
        config = config.model_copy(update={"upstream": upstream.rstrip("/")})
    gateway = Gateway(guard, config, transport=transport, metrics=metrics, owns_guard=owns_guard)

    def endpoint_for(name: str, suffix: str) -> Any:
        async def handle(request: Request) -> Response:
            return await gateway.proxy(request, name, suffix)

        return handle

    async def models(request: Request) -> Response:
        suffix = "/models"
        model = request.path_params.get("model")
        if model is not None:
            # A model id, nothing that could walk to another upstream path ("../files").
            if not _MODEL_ID.fullmatch(model) or ".." in model:
                return await not_found(request)
            suffix += "/" + model
        return await gateway.proxy(request, "models", suffix)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        checks = {
            "accepting": not gateway.draining,
            "provenance": guard.log.healthy,
            "upstream": await gateway.upstream_reachable(),
        }
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        body, content_type = gateway.metrics.render()
        return Response(body, headers={"content-type": content_type})

    async def not_found(request: Request) -> Response:
        # Refused, never forwarded: the gateway reads only the paths it knows.
        return error_response(
            404,
            f"the gateway does not serve {request.method} {request.url.path}; it serves "
            f"POST {', '.join([*_ENDPOINTS, RESTORE_PATH])} and GET /v1/models",
            "unknown_path",
        )

    routes = [
        Route(path, endpoint_for(name, suffix), methods=["POST"])
        for path, (name, suffix) in _ENDPOINTS.items()
    ]
    routes += [
        Route(RESTORE_PATH, gateway.restore_tool_arguments, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route(
            "/{path:path}",
            not_found,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        ),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app
