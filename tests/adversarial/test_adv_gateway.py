"""Issue #19 item 6 (gateway part): a large body stalled the event loop, no read
timeouts, a 500 on deep JSON, and the upstream's account headers passed through."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

from _adv import serve  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

import aiguard  # noqa: E402
from aiguard.classify.detectors import Finding, builtin_detector  # noqa: E402
from aiguard.doors.gateway import GatewayConfig, create_app, default_policy  # noqa: E402
from aiguard.testing import InMemorySink  # noqa: E402

ACCOUNT_HEADERS = {
    "openai-organization": "org-victim-inc",
    "openai-processing-ms": "312",
    "x-ratelimit-remaining-requests": "4999",
    "anthropic-ratelimit-tokens-remaining": "100",
}


def _upstream_app() -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        await request.body()
        body = {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
        }
        return JSONResponse(body, headers={**ACCOUNT_HEADERS, "x-request-id": "req-1"})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


class _ThreadSpy:
    """A detector that records the threads it ran on (and finds what the built-in does)."""

    def __init__(self) -> None:
        self.inner = builtin_detector()
        self.threads: set[int] = set()

    def detect(self, text: str) -> Sequence[Finding]:
        self.threads.add(threading.get_ident())
        return self.inner.detect(text)


def _gateway(upstream: str, **config: Any) -> Any:
    sink = InMemorySink()
    spy = _ThreadSpy()
    guard = aiguard.Guard(default_policy(upstream), sinks=[sink], detectors=[spy])
    app = create_app(guard, GatewayConfig(upstream=upstream, **config))
    return app, spy


def test_upstream_account_headers_are_not_passed_back() -> None:
    with serve(_upstream_app()) as (base, _s):
        app, _spy = _gateway(base + "/v1")
        with serve(app) as (url, _g):
            response = httpx.post(
                url + "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-1"
    for name in ACCOUNT_HEADERS:
        assert name not in response.headers


def test_a_configured_response_header_is_passed_back() -> None:
    with serve(_upstream_app()) as (base, _s):
        app, _spy = _gateway(
            base + "/v1", forward_response_headers=["X-RateLimit-Remaining-Requests"]
        )
        with serve(app) as (url, _g):
            response = httpx.post(
                url + "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
    assert response.headers["x-ratelimit-remaining-requests"] == "4999"
    assert "openai-organization" not in response.headers


def test_deep_json_is_a_typed_400_not_a_500() -> None:
    with serve(_upstream_app()) as (base, _s):
        app, _spy = _gateway(base + "/v1")
        with serve(app) as (url, _g):
            deep = '{"model": "m", "messages": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
            response = httpx.post(
                url + "/v1/chat/completions",
                content=deep,
                headers={"content-type": "application/json"},
            )
            shallow_but_deep = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            node: Any = "x"
            for _ in range(300):
                node = [node]
            shallow_but_deep["metadata"] = {"n": node}
            second = httpx.post(url + "/v1/chat/completions", json=shallow_but_deep)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "malformed_payload"
    assert second.status_code == 400, second.text


def test_a_large_body_is_protected_off_the_event_loop() -> None:
    with serve(_upstream_app()) as (base, _s):
        app, spy = _gateway(base + "/v1")
        with serve(app) as (url, _server):

            def small() -> None:
                httpx.post(
                    url + "/v1/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                )

            small()
            loop_threads = set(spy.threads)  # a small body is protected on the loop
            spy.threads.clear()
            big = "lorem ipsum dolor " * 20_000  # 360 KB
            response = httpx.post(
                url + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": big}]},
                timeout=60,
            )
    assert response.status_code == 200
    assert spy.threads and not (spy.threads & loop_threads)


def _raw_socket(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_a_body_that_does_not_arrive_in_time_is_a_408() -> None:
    with serve(_upstream_app()) as (base, _s):
        app, _spy = _gateway(base + "/v1", body_timeout=0.5)
        with serve(app) as (url, _g):
            sock = _raw_socket(url)
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                b'content-type: application/json\r\ncontent-length: 100\r\n\r\n{"model"'
            )
            started = time.monotonic()
            answer = sock.recv(4096)
            sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:40]
    assert time.monotonic() - started < 4


def test_headers_that_do_not_arrive_in_time_close_the_connection() -> None:
    from aiguard.cli.gateway import http_protocol

    with serve(_upstream_app()) as (base, _s):
        app, _spy = _gateway(base + "/v1")
        with serve(app, http=http_protocol(0.5)) as (url, _g):
            sock = _raw_socket(url)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")  # no end
            started = time.monotonic()
            closed = sock.recv(4096)
            sock.close()
            # The deadline is per request's headers: a complete request still works.
            ok = httpx.post(
                url + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
    assert closed == b"" or not closed.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 4
    assert ok.status_code == 200
    assert json.loads(ok.text)["choices"][0]["message"]["content"] == "ok"


def test_json_too_deep_to_parse_inside_a_string_is_a_400() -> None:
    """Past the parser's limit inside a tool result (a string), not the body itself."""
    with serve(_upstream_app()) as (base, _s):
        app, _spy = _gateway(base + "/v1")
        with serve(app) as (url, _g):
            deep = "[" * 100_000 + "]" * 100_000
            message = {"role": "tool", "tool_call_id": "c", "content": deep}
            response = httpx.post(
                url + "/v1/chat/completions", json={"model": "m", "messages": [message]}
            )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "malformed_payload"
