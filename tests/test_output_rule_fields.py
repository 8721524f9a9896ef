"""The output rule over every answer field, every encoding, every door (issue #16).

A loopback upstream (uvicorn on 127.0.0.1) answers with new values the call never sent
— one of each built-in kind withheld at ``sensitive`` — in one answer field at a time,
written plain, percent-encoded, base64, hex, base32, as HTML entities or ``\\u``
escapes, with "+" for its spaces or its digits spelled out one by one, or in forms
the detectors fold (full-width or Arabic-Indic digits, zero-width characters inside,
no-break spaces or tabs between groups), and streamed whole in one event, split in the
middle of each value, or one character per event (and as a whole JSON answer). It also
echoes the token of the caller's own value. Through the gateway, the sync and async
OpenAI SDKs and the Anthropic SDK (Messages), the client must never receive a raw
value nor any part of one, and must still get its own value back.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

import aiguard  # noqa: E402
from _servers import serve  # noqa: E402
from aiguard.doors.gateway import GatewayConfig, create_app, default_policy  # noqa: E402
from aiguard.policy.model import Action, ActionsPolicy  # noqa: E402
from aiguard.testing import InMemorySink  # noqa: E402
from aiguard.vault.tokens import TOKEN_RE  # noqa: E402

#: (label written before it, value): every kind the gateway's default withholds.
NEW = [
    ("mail", "jane.doe@example.com"),
    ("phone", "+1 415 555 2671"),
    ("card", "4111 1111 1111 1111"),
    ("SSN", "536-22-1234"),
    ("IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("key", "AKIAZ7VRSQ4LXKD5QPME"),
    ("token", "ghp_4f9Qa7Lm2Xc8Vb1Nz6Ks3Dt0Rw5Yp9Hj2Ue7"),
]
OWN = "owner@corp-mail.net"
#: How the upstream writes each value: plain, in the encodings a model can use to smuggle
#: one (#16 item 2), and in the look-alike forms the detectors fold (full-width and
#: Arabic-Indic digits, invisible characters inside, no-break spaces, tabs).
FORMS = (
    "plain",
    "percent",
    "base64",
    "entities",
    "u_escapes",
    "full_width",
    "zero_width",
    "no_break_space",
    "tab",
    "arabic_digits",
    "plus_spaces",
    "spelled_out",
    "spelled_words",
    "hex",
    "base32",
)
MODES = ("one_event", "split", "per_char", "whole")
SPOKEN = ("oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CHAT_FIELDS = ("content", "refusal", "tool_arguments", "reasoning_content", "content_part")
ANTHROPIC_FIELDS = ("text", "tool_input", "thinking")
#: The shortest part of a value the client must not see.
PART = 6


def encode(value: str, form: str) -> str:
    if form == "percent":
        return urllib.parse.quote(value, safe="")
    if form == "base64":
        return base64.b64encode(value.encode()).decode()
    if form == "entities":
        return "".join(ch if ch.isalpha() else f"&#{ord(ch)};" for ch in value)
    if form == "u_escapes":
        return "".join(ch if ch.isalpha() else f"\\u{ord(ch):04x}" for ch in value)
    if form == "full_width":
        return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in value)
    if form == "zero_width":
        return "\u200b".join(value)
    if form == "no_break_space":
        return value.replace(" ", "\u00a0")
    if form == "tab":
        return value.replace(" ", "\t")
    if form == "arabic_digits":
        return "".join(chr(0x0660 + int(ch)) if ch.isdigit() else ch for ch in value)
    if form == "hex":
        return value.encode().hex()
    if form == "base32":
        return base64.b32encode(value.encode()).decode()
    if form == "plus_spaces":  # a form-encoded space, as in a URL's query
        return value.replace(" ", "+")
    digits_only = value.replace("+", "").replace("-", "").replace(" ", "").isdigit()
    if form == "spelled_out" and digits_only:
        # Digits one by one, as call transcripts write numbers (values of digits only).
        return " ".join(ch for ch in value if ch.isdigit())
    if form == "spelled_words" and digits_only:
        # Read out as words, in any case, with spaces, commas and dashes between.
        words = [SPOKEN[int(ch)] for ch in value if ch.isdigit()]
        cased = [w.title() if i % 3 else w.upper() for i, w in enumerate(words)]
        gaps = [", " if i % 4 == 3 else "-" if i % 5 == 4 else " " for i in range(len(words))]
        return "".join(w + gap for w, gap in zip(cased, gaps, strict=True)).rstrip(" ,-")
    return value


def answer_text(form: str, own_token: str) -> tuple[str, list[str]]:
    """The field's text and the encoded values in it."""
    encoded = [encode(value, form) for _label, value in NEW]
    body = " ".join(f"{label} {value} ." for (label, _v), value in zip(NEW, encoded, strict=True))
    return f"Own {own_token} ok. {body} Bye.", encoded


def pieces_of(text: str, encoded: list[str], mode: str) -> list[str]:
    if mode == "per_char":
        return list(text)
    if mode == "split":
        cuts = sorted(text.index(value) + len(value) // 2 for value in encoded)
        bounds = [0, *cuts, len(text)]
        return [text[a:b] for a, b in itertools.pairwise(bounds)]
    return [text]


@dataclass
class Scenario:
    where: str = "content"
    form: str = "plain"
    mode: str = "one_event"
    requests: list[bytes] = field(default_factory=list)


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-o",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _chat_delta(name: str, piece: str, first: bool) -> dict[str, Any]:
    if name == "tool_arguments":
        call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
        if first:
            call.update(id="call_1", type="function")
            call["function"]["name"] = "send"
        return {"tool_calls": [call]}
    if name == "content_part":
        return {"content": [{"type": "text", "text": piece}]}
    return {name: piece}


def _chat_message(name: str, text: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if name == "tool_arguments":
        message["tool_calls"] = [
            {"id": "call_1", "type": "function", "function": {"name": "send", "arguments": text}}
        ]
    elif name == "content_part":
        message["content"] = [{"type": "text", "text": text}]
    else:
        message[name] = text
    return message


def _field_text(scenario: Scenario, own_token: str) -> tuple[str, list[str]]:
    text, encoded = answer_text(scenario.form, own_token)
    if scenario.where in {"tool_arguments", "tool_input"}:
        # JSON text: the values sit inside a JSON string of it.
        text = json.dumps({"note": text})
        encoded = [json.dumps(value)[1:-1] for value in encoded]
    return text, encoded


def upstream_app(scenario: Scenario) -> Starlette:
    async def chat(request: Request) -> Response:
        raw = await request.body()
        scenario.requests.append(raw)
        found = TOKEN_RE.search(raw.decode())
        own = found.group(0) if found else "[NONE_0000]"
        text, encoded = _field_text(scenario, own)
        payload = json.loads(raw)
        if not payload.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-o",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": _chat_message(scenario.where, text),
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
        pieces = pieces_of(text, encoded, scenario.mode)

        async def events() -> AsyncIterator[bytes]:
            yield _sse(_chunk({"role": "assistant"}))
            for i, piece in enumerate(pieces):
                yield _sse(_chunk(_chat_delta(scenario.where, piece, i == 0)))
            yield _sse(_chunk({}, "stop"))
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def messages(request: Request) -> Response:
        raw = await request.body()
        scenario.requests.append(raw)
        found = TOKEN_RE.search(raw.decode())
        own = found.group(0) if found else "[NONE_0000]"
        text, encoded = _field_text(scenario, own)
        block, delta_type, name = {
            "text": ({"type": "text", "text": ""}, "text_delta", "text"),
            "tool_input": (
                {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {}},
                "input_json_delta",
                "partial_json",
            ),
            "thinking": (
                {"type": "thinking", "thinking": "", "signature": ""},
                "thinking_delta",
                "thinking",
            ),
        }[scenario.where]
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
        if not json.loads(raw).get("stream"):
            if scenario.where == "tool_input":
                whole = {**block, "input": json.loads(text)}
            else:
                whole = {**block, name: text}
            return JSONResponse({**message, "content": [whole], "stop_reason": "end_turn"})
        pieces = pieces_of(text, encoded, scenario.mode)

        async def events() -> AsyncIterator[bytes]:
            yield _sse({"type": "message_start", "message": message}, "message_start")
            start = {"type": "content_block_start", "index": 0, "content_block": block}
            yield _sse(start, "content_block_start")
            for piece in pieces:
                delta = {"type": delta_type, name: piece}
                data = {"type": "content_block_delta", "index": 0, "delta": delta}
                yield _sse(data, "content_block_delta")
            yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            end = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}
            yield _sse(end, "message_delta")
            yield _sse({"type": "message_stop"}, "message_stop")

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
        ]
    )


@dataclass
class World:
    scenario: Scenario
    upstream: str
    gateway: str
    gateway_sink: InMemorySink
    sdk: aiguard.Guard
    sdk_sink: InMemorySink
    seen: list[str] = field(default_factory=list)


def sdk_policy(upstream: str) -> aiguard.Policy:
    target = aiguard.DestinationPolicy(
        base_url=upstream + "/v1",
        approved=True,
        purposes=["inference"],
        max_raw_level=aiguard.Level.INTERNAL,
        output_rule_level=aiguard.Level.SENSITIVE,
    )
    return aiguard.Policy(
        destinations={
            "openai": target,
            "anthropic": target.model_copy(update={"base_url": upstream}),
        },
        actions=ActionsPolicy(sensitive=Action.TOKENIZE, regulated=Action.TOKENIZE),
    )


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    scenario = Scenario()
    with serve(upstream_app(scenario)) as (upstream, _upstream_server):
        gateway_sink = InMemorySink()
        gateway_guard = aiguard.Guard(default_policy(upstream + "/v1"), sinks=[gateway_sink])
        app = create_app(gateway_guard, GatewayConfig(upstream=upstream + "/v1"))
        with serve(app) as (gateway, _gateway_server):
            sdk_sink = InMemorySink()
            sdk = aiguard.Guard(sdk_policy(upstream), sinks=[sdk_sink])
            yield World(scenario, upstream, gateway, gateway_sink, sdk, sdk_sink)


# -- what a client received ---------------------------------------------------------


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def documents(raw: bytes, streamed: bool) -> list[Any]:
    if not streamed:
        return [json.loads(raw)]
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line[6:].strip() != "[DONE]":
            out.append(json.loads(line[6:]))
    return out


def field_text(docs: list[Any], name: str) -> str:
    """The field's text as the client reassembles it."""
    out: list[str] = []
    for doc in docs:
        if doc.get("type") == "content_block_delta":
            delta = doc["delta"]
            out.append(
                delta.get("text") or delta.get("partial_json") or delta.get("thinking") or ""
            )
            continue
        if doc.get("type") == "message":
            block = doc["content"][0]
            if "input" in block:
                out.append(json.dumps(block["input"]))
            else:
                out.append(block.get("text") or block.get("thinking") or "")
            continue
        for choice in doc.get("choices", []):
            part = choice.get("delta") or choice.get("message") or {}
            if name == "tool_arguments":
                for call in part.get("tool_calls") or []:
                    out.append(call["function"].get("arguments") or "")
            elif name == "content_part":
                for item in part.get("content") or []:
                    out.append(item.get("text", ""))
            else:
                out.append(part.get(name) or "")
    return "".join(out)


def check(raw: bytes, world: World, streamed: bool) -> str:
    scenario = world.scenario
    docs = documents(raw, streamed)
    text = field_text(docs, scenario.where)
    everything = [*strings(docs), text, raw.decode()]
    for _label, value in NEW:
        for form in FORMS:
            shown = encode(value, form)
            windows = {shown[i : i + PART] for i in range(len(shown) - PART + 1)}
            for piece in everything:
                leaked = [w for w in windows if w in piece]
                assert not leaked, (scenario, form, leaked[:3])
    restored = (
        json.loads(text)["note"] if scenario.where in {"tool_arguments", "tool_input"} else text
    )
    if scenario.where == "thinking" and streamed:
        # Streamed signed thinking keeps its tokens (restoring them would void the
        # signature); a whole answer's thinking is restored like any other field.
        assert TOKEN_RE.search(restored), (scenario, restored)
    else:
        assert f"Own {OWN} ok." in restored, (scenario, restored)
    assert restored.count("[REDACTED:") >= len(NEW), (scenario, restored)
    return text


CHAT_CASES = [(f, form, mode) for f in CHAT_FIELDS for form in FORMS for mode in MODES]
ANTHROPIC_CASES = [(f, form, mode) for f in ANTHROPIC_FIELDS for form in FORMS for mode in MODES]
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Mail {OWN} please"}]}


def _set(world: World, name: str, form: str, mode: str) -> bool:
    world.scenario.where, world.scenario.form, world.scenario.mode = name, form, mode
    return mode != "whole"


@pytest.mark.parametrize(("name", "form", "mode"), CHAT_CASES)
def test_gateway(world: World, name: str, form: str, mode: str) -> None:
    streamed = _set(world, name, form, mode)
    headers = {"X-AIGuard-Subject": "cust-1"}
    with httpx.Client(base_url=world.gateway, timeout=30) as client:
        response = client.post(
            "/v1/chat/completions", json={**BODY, "stream": streamed}, headers=headers
        )
        assert response.status_code == 200, response.text
        check(response.content, world, streamed)
    event = world.gateway_sink.calls()[-1]
    assert sum(event["leaks"].values()) >= len(NEW)
    assert event["leak_paths"] and all("@" not in p for p in event["leak_paths"])
    assert OWN not in json.dumps(event) and NEW[0][1] not in json.dumps(event)
    # The caller's own value went upstream as a token only.
    assert OWN.encode() not in world.scenario.requests[-1]


def _openai(world: World) -> Any:
    return openai.OpenAI(
        http_client=world.sdk.http_client(),
        base_url=world.upstream + "/v1",
        api_key="test",
        max_retries=0,
    )


@pytest.mark.parametrize(("name", "form", "mode"), CHAT_CASES)
def test_sync_sdk(world: World, name: str, form: str, mode: str) -> None:
    streamed = _set(world, name, form, mode)
    client = _openai(world)
    with (
        world.sdk.context(subject="cust-1", purpose="inference"),
        client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=BODY["messages"], stream=streamed
        ) as response,
    ):
        raw = b"".join(response.iter_bytes())
    check(raw, world, streamed)
    assert OWN.encode() not in world.scenario.requests[-1]
    assert sum(world.sdk_sink.calls()[-1]["leaks"].values()) >= len(NEW)


@pytest.mark.parametrize(("name", "form", "mode"), CHAT_CASES)
def test_async_sdk(world: World, name: str, form: str, mode: str) -> None:
    streamed = _set(world, name, form, mode)

    async def go() -> bytes:
        client = openai.AsyncOpenAI(
            http_client=world.sdk.async_http_client(),
            base_url=world.upstream + "/v1",
            api_key="test",
            max_retries=0,
        )
        async with (
            world.sdk.context(subject="cust-1", purpose="inference"),
            client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=BODY["messages"], stream=streamed
            ) as response,
        ):
            return b"".join([chunk async for chunk in response.iter_bytes()])

    raw = asyncio.run(go())
    check(raw, world, streamed)
    assert OWN.encode() not in world.scenario.requests[-1]


@pytest.mark.parametrize(("name", "form", "mode"), ANTHROPIC_CASES)
def test_anthropic_messages(world: World, name: str, form: str, mode: str) -> None:
    streamed = _set(world, name, form, mode)
    client = anthropic.Anthropic(
        http_client=world.sdk.http_client(), base_url=world.upstream, api_key="test", max_retries=0
    )
    with (
        world.sdk.context(subject="cust-1", purpose="inference"),
        client.messages.with_streaming_response.create(
            model="claude-x",
            max_tokens=64,
            messages=[{"role": "user", "content": f"Mail {OWN} please"}],
            stream=streamed,
        ) as response,
    ):
        raw = b"".join(response.iter_bytes())
    check(raw, world, streamed)
    assert OWN.encode() not in world.scenario.requests[-1]
    paths = world.sdk_sink.calls()[-1]["leak_paths"]
    assert paths, paths


def test_sdk_default_keeps_its_documented_level(world: World) -> None:
    """Without ``output_rule_level`` the SDK withholds secrets and REGULATED values only;
    the same key set to ``sensitive`` (as the gateway's default does) withholds emails."""
    _set(world, "content", "plain", "one_event")
    policy = sdk_policy(world.upstream)
    target = policy.destinations["openai"].model_copy(
        update={"output_rule_level": aiguard.Level.REGULATED}
    )
    guard = aiguard.Guard(
        policy.model_copy(update={"destinations": {"openai": target}}), sinks=[InMemorySink()]
    )
    client = openai.OpenAI(
        http_client=guard.http_client(), base_url=world.upstream + "/v1", api_key="t", max_retries=0
    )
    with guard.context(subject="cust-1", purpose="inference"):
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=BODY["messages"])
    text = answer.choices[0].message.content or ""
    assert "jane.doe@example.com" in text  # sensitive: flagged, not withheld
    assert "4111 1111 1111 1111" not in text and "536-22-1234" not in text
    assert (
        aiguard.DestinationPolicy(base_url="https://x").output_rule_level is aiguard.Level.REGULATED
    )
    assert default_policy("http://127.0.0.1:1").destinations["upstream"].output_rule_level is (
        aiguard.Level.SENSITIVE
    )
