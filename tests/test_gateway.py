"""The gateway on real loopback sockets: a uvicorn server in a thread on 127.0.0.1, a
fake upstream that records what it received, driven by the OpenAI SDK and raw httpx."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import re
import socket
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

import aiguard  # noqa: E402
from _servers import serve  # noqa: E402
from aiguard.doors.gateway import ApiKey, GatewayConfig, create_app, default_policy, hash_key  # noqa: E402
from aiguard.provenance.chain import ProvenanceLog  # noqa: E402
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid  # noqa: E402
from aiguard.vault.tokens import TOKEN_RE  # noqa: E402

VALUES = {
    "email": "jane.doe@example.com",
    "phone": "+1 415 555 2671",
    "card": "4111 1111 1111 1111",
    "ssn": "536-22-1234",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "aws": "AKIAZ7VRSQ4LXKD5QPME",
    "github": "ghp_4f9Qa7Lm2Xc8Vb1Nz6Ks3Dt0Rw5Yp9Hj2Ue7",
    "slack": "xoxb-2847561039-6612093847561-aB3dE5fG7hJ9kL1mN3pQ5rS7",
}
PROMPT = (
    f"Customer {VALUES['email']} (phone {VALUES['phone']}) paid with card {VALUES['card']}, "
    f"SSN {VALUES['ssn']}, IBAN {VALUES['iban']}. Keys: {VALUES['aws']} {VALUES['github']} "
    f"{VALUES['slack']} ."
)

# Cyrillic look-alikes of Latin letters, to undo a homoglyph "token".
_CONFUSABLES = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0445\u0443\u0410\u0412\u0415\u041a\u041c\u041d\u041e"
    "\u0420\u0421\u0422\u0425",
    "aeopcxyABEKMHOPCTX",
)


# -- servers ------------------------------------------------------------------------------


class Scripted:
    """A loopback chat-completions upstream whose answer the test sets: text pieces,
    each one SSE event when streamed, with an optional delay before each."""

    def __init__(self) -> None:
        self.pieces: list[str] = ["Hello"]
        self.delay = 0.0
        self.requests: list[tuple[dict[str, str], bytes]] = []
        #: Extra headers of a whole answer, as Starlette takes them (Latin-1 text).
        self.answer_headers: dict[str, str] = {}

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            body = await request.body()
            self.requests.append((dict(request.headers), body))
            payload = json.loads(body)
            pieces = list(self.pieces)
            if not payload.get("stream"):
                await asyncio.sleep(self.delay)
                # A cookie the gateway must neither pass on nor send back upstream.
                return JSONResponse(
                    _completion("".join(pieces)),
                    headers={"set-cookie": "lb=node-7; Path=/", **self.answer_headers},
                )

            async def events() -> AsyncIterator[bytes]:
                for piece in pieces:
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    yield _sse(_chunk({"content": piece}))
                yield _sse(_chunk({}, "stop"))
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _guard(upstream: str, **policy_changes: Any) -> tuple[aiguard.Guard, InMemorySink]:
    sink = InMemorySink()
    policy = default_policy(upstream)
    if policy_changes:
        target = policy.destinations["upstream"].model_copy(update=policy_changes)
        policy = policy.model_copy(update={"destinations": {"upstream": target}})
    return aiguard.Guard(policy, sinks=[sink]), sink


@contextlib.contextmanager
def gateway(
    upstream: str, *, config: dict[str, Any] | None = None, **policy_changes: Any
) -> Iterator[tuple[str, aiguard.Guard, InMemorySink]]:
    guard, sink = _guard(upstream, **policy_changes)
    app = create_app(guard, GatewayConfig(upstream=upstream, **(config or {})))
    with serve(app) as (url, _server):
        yield url, guard, sink


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeModel, str]]:
    model = FakeModel(chunk_size=3)
    with model.serve() as base:
        yield model, base + "/v1"


@pytest.fixture(scope="module")
def fake_gateway(
    fake: tuple[FakeModel, str],
) -> Iterator[tuple[FakeModel, str, aiguard.Guard, InMemorySink]]:
    model, upstream = fake
    with gateway(upstream) as (url, guard, sink):
        yield model, url, guard, sink


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[Scripted, str]]:
    upstream = Scripted()
    with serve(upstream.app()) as (base, _server):
        yield upstream, base + "/v1"


# -- what may reach the upstream ---------------------------------------------------------


def _encodings(value: str) -> set[str]:
    raw = value.encode()
    compact = value.replace(" ", "")
    out = {value, compact, json.dumps(value)[1:-1]}
    for form in (value, compact):
        data = form.encode()
        out |= {
            urllib.parse.quote(form),
            urllib.parse.quote_plus(form),
            urllib.parse.quote(form, safe=""),
            base64.b64encode(data).decode(),
            base64.urlsafe_b64encode(data).decode(),
            base64.b64encode(data).decode().rstrip("="),
            data.hex(),
            data.hex().upper(),
        }
    out.add(raw.hex())
    return {e for e in out if len(e) >= 6}


def assert_nothing_raw(bodies: list[bytes], values: list[str]) -> None:
    """No value, nor its percent-, base64- or hex-encoding, nor a look-alike spelling,
    in what the upstream received; and every token is a vault token, not an encoding."""
    for body in bodies:
        text = body.decode("utf-8")
        unescaped = json.dumps(json.loads(text), ensure_ascii=False)
        folded = unicodedata.normalize("NFKC", unescaped).translate(_CONFUSABLES)
        for value in values:
            for encoded in _encodings(value):
                assert encoded not in text, f"an encoding of a {len(value)}-char value went up"
                assert encoded not in unescaped
                assert encoded.lower() not in folded.lower()
        for match in TOKEN_RE.finditer(unescaped):
            inner = match.group(2)
            for value in values:
                compact = value.replace(" ", "").upper()
                # A 4-character random suffix can occur inside a long value by chance
                # (1 in 32^4 per position); what must never happen is the value in a token.
                assert compact not in inner and inner != compact
                for decode in (base64.b32decode, base64.b16decode):
                    with contextlib.suppress(ValueError):
                        assert value.encode() not in decode(inner + "=" * (-len(inner) % 8))


def _client(url: str, key: str = "unused", **headers: str) -> Any:
    return openai.OpenAI(
        base_url=url + "/v1", api_key=key, max_retries=0, default_headers=headers or None
    )


# -- round trips ---------------------------------------------------------------------------


def test_chat_whole_and_streamed_round_trip_with_the_sdk(
    fake_gateway: tuple[FakeModel, str, aiguard.Guard, InMemorySink],
) -> None:
    model, url, _guard, sink = fake_gateway
    before = len(model.requests)
    client = _client(url)
    messages: Any = [
        {"role": "system", "content": f"Escalate to {VALUES['email']}."},
        {"role": "user", "content": PROMPT},
    ]
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert whole.choices[0].message.content == "Echo: " + PROMPT
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == "Echo: " + PROMPT
    received = model.requests[before:]
    assert len(received) == 2
    assert_nothing_raw([r.body for r in received], list(VALUES.values()))
    # Every kind was tokenized, and the upstream body carried a Content-Length.
    for request in received:
        assert int(request.headers["content-length"]) == len(request.body)
        assert "authorization" not in {k.lower() for k in request.headers} or (
            "unused" not in request.headers.get("authorization", "")
        )
    findings = sink.calls()[-1]["findings"]
    for kind in ("email", "phone", "credit_card", "us_ssn", "iban", "aws_access_key"):
        assert findings.get(kind), kind
    assert findings.get("github_token") and findings.get("slack_token")
    assert_chain_valid(sink)


def test_responses_and_embeddings_round_trip(
    fake_gateway: tuple[FakeModel, str, aiguard.Guard, InMemorySink],
) -> None:
    model, url, _guard, _sink = fake_gateway
    before = len(model.requests)
    client = _client(url)
    answer = client.responses.create(
        model="gpt-4o-mini",
        instructions=f"Never share {VALUES['github']}.",
        input=PROMPT,
    )
    assert answer.output_text == "Echo: " + PROMPT
    events = client.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Echo: " + PROMPT
    vectors = client.embeddings.create(model="text-embedding-3-small", input=[PROMPT, "plain"])
    assert len(vectors.data) == 2
    assert_nothing_raw([r.body for r in model.requests[before:]], list(VALUES.values()))


def test_raw_httpx_stream_and_models_passthrough(
    fake_gateway: tuple[FakeModel, str, aiguard.Guard, InMemorySink],
) -> None:
    model, url, _guard, _sink = fake_gateway
    with httpx.Client(base_url=url) as client:
        listed = client.get("/v1/models")
        assert listed.status_code == 200 and listed.json()["data"]
        body = {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        text = ""
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:])["choices"]:
                        text += choice["delta"].get("content") or ""
        assert text == "Echo: " + PROMPT
    assert_nothing_raw([model.requests[-1].body], list(VALUES.values()))


# -- the output rule ---------------------------------------------------------------------

#: (what stands before the value, the value, its kind). The last three are known by the
#: label before them only, so every split from the label's start on is tried too.
NEW_VALUES = [
    ("Write to ", "bob.smith@evil-corp.example", "email"),
    ("Write to ", "+1 212 555 0187", "phone"),
    ("Write to ", "4242 4242 4242 4242", "credit_card"),
    ("Write to ", "AKIAQ3EGRX7BVN5KYLTW", "aws_access_key"),
    ("Your MRN: ", "40021934", "medical_record_number"),
    ("Their DL# ", "D123-4567-8901", "driver_license"),
    ("My bank account number is ", "912803456", "account_number"),
]


@pytest.mark.parametrize(("before", "value", "expected_kind"), NEW_VALUES)
def test_new_personal_data_split_at_every_offset_never_reaches_the_client(
    scripted: tuple[Scripted, str], before: str, value: str, expected_kind: str
) -> None:
    upstream, base = scripted
    answer = f"Sure. {before}{value} today."
    expected = f"Sure. {before}[REDACTED:{expected_kind}] today."
    with gateway(base) as (url, _guard, sink), httpx.Client(base_url=url) as client:
        start = answer.index(before)
        splits = [[answer]] + [
            [answer[:cut], answer[cut:]]
            for cut in range(start, start + len(before) + len(value) + 1)
        ]
        splits.append(list(answer))  # one character per event
        for pieces in splits:
            upstream.pieces = pieces
            received: list[str] = []
            body = {
                "model": "gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        for choice in json.loads(line[6:])["choices"]:
                            received.append(choice["delta"].get("content") or "")
            assert "".join(received) == expected, pieces
            for piece in received:
                for size in range(4, len(value) + 1):
                    for i in range(len(value) - size + 1):
                        assert value[i : i + size] not in piece
        upstream.pieces = [answer]
        whole = client.post("/v1/chat/completions", json={**body, "stream": False})
        assert whole.json()["choices"][0]["message"]["content"] == expected
        assert sink.calls()[-1]["leaks"] == {expected_kind: 1}


def test_values_the_call_sent_come_back_whole_when_split(scripted: tuple[Scripted, str]) -> None:
    upstream, base = scripted
    value = VALUES["email"]
    with gateway(base) as (url, _guard, _sink), httpx.Client(base_url=url) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": f"mail {value}"}]}
        first = client.post("/v1/chat/completions", json=body)
        assert first.status_code == 200
        sent = upstream.requests[-1][1].decode()
        token = TOKEN_RE.search(sent)
        assert token is not None and value not in sent
        answer = f"I wrote to {token.group(0)}."
        for cut in range(len(answer) + 1):
            upstream.pieces = [answer[:cut], answer[cut:]]
            text = ""
            with client.stream(
                "POST", "/v1/chat/completions", json={**body, "stream": True}
            ) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        text += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            assert text == f"I wrote to {value}."


# -- who may call, and with which context ------------------------------------------------


def test_keys_scopes_and_the_upstream_credential(
    scripted: tuple[Scripted, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream, base = scripted
    monkeypatch.setenv("AIGUARD_UPSTREAM_API_KEY", "sk-upstream-secret")
    keys = [
        ApiKey(sha256=hash_key("gw-billing"), principal="billing", tenant="acme"),
        ApiKey(sha256=hash_key("gw-embed"), principal="search", scopes=["embeddings"]),
    ]
    with gateway(base, config={"keys": keys}) as (url, _guard, sink):
        upstream.pieces = ["ok"]
        with pytest.raises(openai.AuthenticationError):
            _client(url, "wrong").chat.completions.create(model="m", messages=[])
        missing = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": []})
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "missing_api_key"
        with pytest.raises(openai.PermissionDeniedError) as denied:
            _client(url, "gw-embed").chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        assert denied.value.body["code"] == "scope_not_allowed"  # type: ignore[index]
        answer = _client(url, "gw-billing").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content == "ok"
        headers = upstream.requests[-1][0]
        # The upstream key from the environment, never the client's gateway key.
        assert headers["authorization"] == "Bearer sk-upstream-secret"
        assert all("gw-billing" not in v for v in headers.values())
        event = sink.calls()[-1]
        assert event["principal"] == "billing" and event["tenant"] == "acme"


def test_missing_subject_where_consent_is_required_is_a_403(
    scripted: tuple[Scripted, str],
) -> None:
    upstream, base = scripted
    with gateway(base, purposes=["inference", "third_party_sharing"]) as (url, guard, sink):
        count = len(upstream.requests)
        client = _client(url, **{"X-AIGuard-Purpose": "third_party_sharing"})
        with pytest.raises(openai.PermissionDeniedError) as denied:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        error = denied.value.body
        assert isinstance(error, dict) and error["code"] == "consent_required"
        assert error["type"] == "permission_error" and "subject" in error["message"]
        assert len(upstream.requests) == count
        assert sink.events[-1]["type"] == "refusal"
        # A subject with consent, given in body metadata, goes through; the metadata
        # that carried it does not reach the upstream.
        guard.consent.grant("cust-42", "third_party_sharing", terms_version="v1")
        upstream.pieces = ["fine"]
        with httpx.Client(base_url=url) as raw:
            answer = raw.post(
                "/v1/chat/completions",
                headers={"X-AIGuard-Purpose": "third_party_sharing"},
                json={
                    "model": "m",
                    "messages": [{"role": "user", "content": "x"}],
                    "metadata": {"aiguard_subject": "cust-42", "ticket": "T-1"},
                },
            )
        assert answer.status_code == 200, answer.text
        sent = json.loads(upstream.requests[-1][1])
        assert sent["metadata"] == {"ticket": "T-1"}
        assert sink.calls()[-1]["subject"].startswith("hmac-sha256:")


# -- refusals, limits and upstream failures -----------------------------------------------


def test_unreadable_bodies_and_paths_are_refused_not_forwarded(
    scripted: tuple[Scripted, str],
) -> None:
    upstream, base = scripted
    with gateway(base, config={"max_body_bytes": 4096}) as (url, _g, _s):
        count = len(upstream.requests)
        with httpx.Client(base_url=url) as client:
            malformed = client.post(
                "/v1/chat/completions",
                content=b'{"model": "m", "messages": [',
                headers={"content-type": "application/json"},
            )
            assert malformed.status_code == 400
            assert malformed.json()["error"]["code"] == "malformed_payload"
            packed = client.post(
                "/v1/chat/completions",
                content=gzip.compress(json.dumps({"model": "m", "messages": []}).encode()),
                headers={"content-type": "application/json", "content-encoding": "gzip"},
            )
            assert packed.status_code == 400
            form = client.post("/v1/chat/completions", data={"a": "b"})
            assert form.status_code == 400
            unknown = client.post("/v1/files", json={"a": 1})
            assert unknown.status_code == 404
            assert unknown.json()["error"]["code"] == "unknown_path"
            walk = client.get("/v1/models/../files")
            assert walk.status_code == 404
            big = client.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]},
            )
            assert big.status_code == 413
        assert len(upstream.requests) == count


def test_upstream_unreachable_and_slow(scripted: tuple[Scripted, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    dead = f"http://127.0.0.1:{closed}/v1"
    with gateway(dead) as (url, _g, sink), httpx.Client(base_url=url) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["upstream"] is False
        failed = client.post("/v1/chat/completions", json={"model": "m", "messages": []})
        assert failed.status_code == 502 and failed.json()["error"]["code"] == "upstream_error"
        assert sink.events[-1]["type"] == "error"
    upstream, base = scripted
    upstream.delay = 1.0
    try:
        with (
            gateway(base, config={"upstream_timeout": 0.3}) as (url, _g, _s),
            httpx.Client(base_url=url) as client,
        ):
            assert client.get("/readyz").status_code == 200
            slow = client.post("/v1/chat/completions", json={"model": "m", "messages": []})
            assert slow.status_code == 504
    finally:
        upstream.delay = 0.0


def test_stream_limit_metrics_and_draining(scripted: tuple[Scripted, str]) -> None:
    upstream, base = scripted
    upstream.pieces = ["one ", "two ", "three"]
    upstream.delay = 0.2
    guard, sink = _guard(base)
    app = create_app(guard, GatewayConfig(upstream=base, max_streams=1))
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    try:
        with serve(app, timeout_graceful_shutdown=10) as (url, server):
            first: list[str] = []

            def read() -> None:
                with (
                    httpx.Client(base_url=url) as c,
                    c.stream("POST", "/v1/chat/completions", json=body) as response,
                ):
                    for line in response.iter_lines():
                        if line.startswith("data: {"):
                            delta = json.loads(line[6:])["choices"][0]["delta"]
                            first.append(delta.get("content") or "")

            reader = threading.Thread(target=read)
            reader.start()
            time.sleep(0.15)
            with httpx.Client(base_url=url) as client:
                second = client.post("/v1/chat/completions", json=body)
                assert second.status_code == 429
                assert second.json()["error"]["type"] == "rate_limit_error"
                metrics = client.get("/metrics").text
                assert "aiguard_gateway_active_streams 1.0" in metrics
            # Shut down while the stream is in flight: it is drained, not cut.
            app.state.gateway.draining = True
            server.should_exit = True
            reader.join(10)
            assert "".join(first) == "one two three"
        assert sink.calls()[-1]["status"] == "ok"
        text = app.state.gateway.metrics.render()[0].decode()
        assert 'aiguard_gateway_decisions_total{code="",decision="allow"}' in text
        assert 'aiguard_gateway_requests_total{endpoint="chat.completions",status="429"}' in text
        assert "aiguard_gateway_request_duration_seconds_bucket" in text
    finally:
        upstream.delay = 0.0


def test_a_body_that_does_not_arrive_in_time_is_a_408(scripted: tuple[Scripted, str]) -> None:
    """A client that sends its headers and then trickles (here: stops) its body gets a 408
    once ``body_timeout`` has passed; nothing goes upstream."""
    upstream, base = scripted
    sent_before = len(upstream.requests)
    with gateway(base, config={"body_timeout": 0.3}) as (url, _g, sink):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            started = time.monotonic()
            client.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                b'content-type: application/json\r\ncontent-length: 100\r\n\r\n{"model"'
            )
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                piece = client.recv(4096)
                if not piece:
                    break
                answer += piece
            waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert 0.25 <= waited < 3.0
    error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert "send it whole within" in error["message"] and "body_timeout" in error["message"]
    assert len(upstream.requests) == sent_before  # nothing went upstream
    assert sink.calls() == []  # nor was anything recorded of a body never read


def test_an_upstream_cookie_is_not_sent_back_for_the_next_caller(
    scripted: tuple[Scripted, str],
) -> None:
    """The upstream's Set-Cookie is not kept by the gateway: one caller's cookie never
    reaches the upstream on another caller's request (nor the caller)."""
    upstream, base = scripted
    upstream.pieces = ["ok"]
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with gateway(base) as (url, _g, _s), httpx.Client(base_url=url) as client:
        first = client.post("/v1/chat/completions", json=body)
        second = client.post("/v1/chat/completions", json=body)
    assert first.status_code == second.status_code == 200
    assert "set-cookie" not in first.headers
    sent = [headers for headers, _body in upstream.requests[-2:]]
    assert all("cookie" not in headers for headers in sent), sent


def test_header_values_that_are_not_ascii_pass_as_bytes(scripted: tuple[Scripted, str]) -> None:
    """A forwarded header whose value is UTF-8 reaches the upstream, and an allowed
    answer header the client, in the bytes it was sent in. They used to be written back
    as text: a 500 for the client's header, and for the upstream's a 500 after the model
    was called (or its bytes changed to Latin-1)."""
    upstream, base = scripted
    upstream.pieces = ["ok"]
    organization = "org-Łódź".encode()
    request_id = "req-Grüße-ł".encode()
    # Starlette writes header text as Latin-1: this is the UTF-8 bytes of request_id.
    upstream.answer_headers = {"x-request-id": request_id.decode("latin-1")}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    try:
        with gateway(base) as (url, _g, sink), httpx.Client(base_url=url) as client:
            answer = client.post(
                "/v1/chat/completions",
                json=body,
                headers=[(b"openai-organization", organization)],
            )
    finally:
        upstream.answer_headers = {}
    assert answer.status_code == 200, answer.text
    sent, _body = upstream.requests[-1]
    assert sent["openai-organization"].encode("latin-1") == organization
    assert (b"x-request-id", request_id) in answer.headers.raw
    assert [event["status"] for event in sink.calls()] == ["ok"]


def test_a_client_that_leaves_mid_stream_stops_the_relay(scripted: tuple[Scripted, str]) -> None:
    """The client closes its connection after the first event: the gateway stops reading
    the upstream at once (not when the answer would have ended), frees the stream slot
    and records the call as abandoned."""
    upstream, base = scripted
    upstream.pieces = [f"piece{i} " for i in range(20)]
    upstream.delay = 0.2  # 4 s for the whole answer
    email = "leaving.caller@example.com"
    body = json.dumps(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"hi {email}"}]}
    ).encode()
    guard, sink = _guard(base)
    app = create_app(guard, GatewayConfig(upstream=base))
    relay = app.state.gateway
    try:
        with serve(app) as (url, _server):
            port = int(url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                    b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                    % (len(body), body)
                )
                received = b""
                while b"piece0" not in received:
                    received += client.recv(4096)
            left = time.monotonic()
            events: list[dict[str, Any]] = []
            while time.monotonic() - left < 2.0:
                events = [e for e in sink.calls() if e.get("error") == "StreamAbandoned"]
                if events and relay.streams == 0:
                    break
                time.sleep(0.02)
            assert events, "no abandoned-stream event within 2 s of the client leaving"
            assert relay.streams == 0
            assert time.monotonic() - left < 2.0  # the answer had 3.8 s still to run
            # Neither the upstream nor the log saw the caller's value raw.
            assert email not in upstream.requests[-1][1].decode()
            assert email not in json.dumps(events)
    finally:
        upstream.delay = 0.0


def test_metrics_count_findings_and_refusals(scripted: tuple[Scripted, str]) -> None:
    upstream, base = scripted
    upstream.pieces = ["ok"]
    with gateway(base) as (url, _g, _s), httpx.Client(base_url=url) as client:
        client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": PROMPT}]},
        )
        client.post(
            "/v1/chat/completions",
            headers={"X-AIGuard-Purpose": "analytics"},
            json={"model": "m", "messages": []},
        )
        text = client.get("/metrics").text
    assert 'aiguard_gateway_findings_total{action="tokenize",kind="email"} 1.0' in text
    assert 'aiguard_gateway_decisions_total{code="policy_denied",decision="deny"} 1.0' in text
    assert "jane" not in text


def test_provenance_sink_down_is_503() -> None:
    class Broken:
        required = True

        def emit(self, record: Any) -> None:
            raise OSError("disk full")

        def flush(self) -> None:
            return None

        def close(self) -> None:
            return None

    model = FakeModel()
    with model.serve() as base:
        upstream = base + "/v1"
        guard = aiguard.Guard(
            default_policy(upstream), log=ProvenanceLog("t", [Broken()], retry_interval=0)
        )
        app = create_app(guard, GatewayConfig(upstream=upstream))
        with serve(app) as (url, _server), httpx.Client(base_url=url) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            answers = [client.post("/v1/chat/completions", json=body) for _ in range(2)]
            assert answers[-1].status_code == 503
            assert answers[-1].json()["error"]["code"] == "provenance_error"
            assert client.get("/readyz").status_code == 503
        assert len(model.requests) <= 1  # the first went out before its event failed


def test_create_app_refuses_an_upstream_outside_the_policy() -> None:
    guard, _sink = _guard("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="no destination"):
        create_app(guard, upstream="http://127.0.0.1:10/v1")


def test_a_chain_on_disk_from_the_cli(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`aiguard gateway` with no config: the default policy, said at start-up, a JSONL
    chain in the working directory, started with the upstream down, drained on SIGTERM."""
    import signal
    import subprocess
    import sys

    tmp_path = tmp_path_factory.mktemp("gateway-cli")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = FakeModel()
    with model.serve() as base:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiguard",
                "gateway",
                "--upstream",
                base + "/v1",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
            answer = _client(url).chat.completions.create(
                model="m", messages=[{"role": "user", "content": PROMPT}]
            )
            assert answer.choices[0].message.content == "Echo: " + PROMPT
        finally:
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=20)
    # uvicorn re-raises the signal it handled once shutdown is complete.
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "safe default policy" in err and "aiguard-gateway.jsonl" in err
    assert_nothing_raw([model.requests[-1].body], list(VALUES.values()))
    log = tmp_path / "aiguard-gateway.jsonl"
    assert_chain_valid(log)
    assert '"type":"call"' in log.read_text()
    assert not re.search(re.escape(VALUES["email"]), log.read_text())
