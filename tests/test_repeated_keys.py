"""JSON that names a key twice holds a value its parsed document does not.

A parser keeps one value of a repeated key (the last, in Python; others keep the
first). The guard inspects the parsed document, and where nothing in it changed it
used to pass the text on as it came, with the other value unread: a card number went
to the model in ``{"messages": [<card>], "messages": [<hi>]}``, and to the caller in an
answer or a streamed event written the same way. Such text now goes on as the
document the guard read; text without a repeated key still goes on byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from aiguard._json import keys_unique, loads, read_whole
from aiguard.testing import InMemorySink

openai = pytest.importorskip("openai")

CARD = "4111 1111 1111 1111"
HIDDEN = f"card {CARD}"
URL = "https://api.openai.com/v1/chat/completions"
POLICY = aiguard.Policy(
    destinations={
        "openai": aiguard.DestinationPolicy(
            base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
        )
    }
)


class Obj(list):  # type: ignore[type-arg]
    """A JSON object written as its (key, value) pairs, so that a key can repeat."""


def dump(node: Any) -> str:
    if isinstance(node, Obj):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(dump(v) for v in node) + "]"
    return json.dumps(node)


def objects(node: Any) -> list[Obj]:
    found: list[Obj] = []
    if isinstance(node, Obj):
        found.append(node)
        for _key, value in node:
            found.extend(objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(objects(value))
    return found


_KEYS = st.sampled_from(["a", "note", "meta", "content", "role", "x"])
_LEAVES = st.one_of(
    st.integers(-1000, 1000), st.sampled_from(["hi", "ok", "thanks", ""]), st.none()
)
_TREES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(_KEYS, inner), min_size=1, max_size=3).map(
            lambda pairs: Obj(dict(pairs).items())
        ),
    ),
    max_leaves=8,
)


@st.composite
def with_a_hidden_value(draw: st.DrawFn, make: Any) -> str:
    """``make(tree)``'s JSON text with one object repeating a key: first holding
    `HIDDEN`, then its own value (which the parse keeps)."""
    document = make(draw(_TREES))
    target = draw(st.sampled_from(objects(document)))
    at = draw(st.integers(0, len(target) - 1))
    target.insert(at, (target[at][0], HIDDEN))
    text = dump(document)
    assert HIDDEN not in json.dumps(json.loads(text))  # the parse drops it
    return text


def _request(tree: Any) -> Obj:
    message = Obj([("role", "user"), ("content", "hi")])
    return Obj([("model", "m"), ("messages", [message]), ("metadata", tree)])


def _answer(tree: Any) -> Obj:
    message = Obj([("role", "assistant"), ("content", "hi")])
    choice = Obj([("index", 0), ("message", message), ("finish_reason", "stop")])
    return Obj([("id", "c"), ("object", "chat.completion"), ("choices", [choice]), ("x", tree)])


def _chunk(tree: Any) -> Obj:
    delta = Obj([("content", "hi")])
    choice = Obj([("index", 0), ("delta", delta), ("finish_reason", None)])
    return Obj(
        [("id", "c"), ("object", "chat.completion.chunk"), ("choices", [choice]), ("x", tree)]
    )


def _role_chunk(tree: Any) -> Obj:
    """A chat chunk without text (the first one names the role): nothing held back."""
    choice = Obj([("index", 0), ("delta", Obj([("role", "assistant")]))])
    return Obj([("id", "c"), ("choices", [choice]), ("x", tree)])


def _anthropic_delta(tree: Any) -> Obj:
    delta = Obj([("type", "text_delta"), ("text", "hi")])
    return Obj([("type", "content_block_delta"), ("index", 0), ("delta", delta), ("x", tree)])


def _other_event(tree: Any) -> Obj:
    """An event of no shape the stream knows: read as whole values."""
    return Obj([("kind", "progress"), ("x", tree)])


def _guarded(handler: Any) -> tuple[aiguard.Guard, httpx.Client]:
    guard = aiguard.Guard(POLICY, sinks=[InMemorySink()])
    return guard, guard.http_client(transport=httpx.MockTransport(handler))


def _json_answer(body: bytes) -> Any:
    return lambda _request: httpx.Response(
        200, content=body, headers={"content-type": "application/json"}
    )


@settings(max_examples=80, deadline=None)
@given(with_a_hidden_value(_request))
def test_a_request_never_carries_the_hidden_value_upstream(text: str) -> None:
    sent: list[bytes] = []

    def model(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        return httpx.Response(200, json={}, headers={"content-type": "application/json"})

    guard, client = _guarded(model)
    with guard.context(purpose="inference"):
        client.post(URL, content=text.encode(), headers={"content-type": "application/json"})
    assert CARD.encode() not in sent[0]
    assert json.loads(sent[0]) == json.loads(text)  # what the guard read, and no more


@settings(max_examples=80, deadline=None)
@given(with_a_hidden_value(_answer))
def test_an_answer_never_hands_the_hidden_value_to_the_caller(text: str) -> None:
    guard, client = _guarded(_json_answer(text.encode()))
    with guard.context(purpose="inference"):
        answer = client.post(URL, json={"model": "m", "messages": []})
    assert CARD.encode() not in answer.content
    assert answer.json() == json.loads(text)


@pytest.mark.parametrize(
    "shape",
    [_chunk, _role_chunk, _anthropic_delta, _other_event],
    ids=["chat text", "chat role", "anthropic text", "other"],
)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_streamed_event_never_hands_the_hidden_value_to_the_caller(
    shape: Any, data: st.DataObject
) -> None:
    text = data.draw(with_a_hidden_value(shape))
    body = f"data: {text}\n\ndata: [DONE]\n\n".encode()
    guard, client = _guarded(
        lambda _request: httpx.Response(
            200, content=body, headers={"content-type": "text/event-stream"}
        )
    )
    with (
        guard.context(purpose="inference"),
        client.stream("POST", URL, json={"model": "m", "stream": True, "messages": []}) as answer,
    ):
        out = answer.read()
    assert CARD.encode() not in out


def test_tool_arguments_and_results_written_with_a_repeated_key() -> None:
    """JSON text inside a string (a tool call's arguments, a tool's result) too."""
    sent: list[bytes] = []

    def model(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        return httpx.Response(200, json={}, headers={"content-type": "application/json"})

    arguments = f'{{"card": "{CARD}", "card": "x"}}'
    result = f'{{"n": "{HIDDEN}", "n": 1}}'
    body = {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "t",
                        "type": "function",
                        "function": {"name": "f", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "t", "content": result},
        ],
    }
    guard, client = _guarded(model)
    with guard.context(purpose="inference"):
        client.post(URL, json=body)
    assert CARD.encode() not in sent[0]
    messages = json.loads(sent[0])["messages"]
    assert json.loads(messages[0]["tool_calls"][0]["function"]["arguments"]) == {"card": "x"}
    assert json.loads(messages[1]["content"]) == {"n": 1}


def test_through_the_openai_sdk() -> None:
    text = dump(_answer(Obj([("note", HIDDEN), ("note", "ok")])))
    guard = aiguard.Guard(POLICY, sinks=[InMemorySink()])
    client = openai.OpenAI(
        http_client=guard.http_client(transport=httpx.MockTransport(_json_answer(text.encode()))),
        base_url="https://api.openai.com/v1",
        api_key="test",
        max_retries=0,
    )
    with guard.context(purpose="inference"):
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert CARD.encode() not in raw.content
    assert raw.parse().choices[0].message.content == "hi"


def test_text_without_a_repeated_key_still_goes_on_byte_for_byte() -> None:
    """The untouched fast path stays: the caller's bytes (spacing and escapes as they
    were) to the model, the model's to the caller."""
    request = b'{"model": "m",  "messages": [{"role": "user", "content": "caf\\u00e9"}]}'
    answer = b'{"id": "c", "choices": [{"message": {"content": "caf\\u00e9"}}]}'
    sent: list[bytes] = []

    def model(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        return httpx.Response(200, content=answer, headers={"content-type": "application/json"})

    guard, client = _guarded(model)
    with guard.context(purpose="inference"):
        got = client.post(URL, content=request, headers={"content-type": "application/json"})
    assert sent == [request]
    assert got.content == answer


_JSON = st.recursive(
    st.one_of(st.integers(), st.text(max_size=5), st.none(), st.booleans()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(_JSON, st.sampled_from([None, 2, (", ", ": ")]))
def test_keys_unique_holds_for_any_text_a_serializer_writes(document: Any, style: Any) -> None:
    indent, separators = (style, None) if isinstance(style, int) else (None, style)
    text = json.dumps(document, indent=indent, separators=separators)
    assert keys_unique(text)
    assert read_whole(text, loads(text))


@given(with_a_hidden_value(lambda tree: Obj([("x", tree)])))
def test_a_repeated_key_is_seen_at_any_depth(text: str) -> None:
    assert not keys_unique(text)
    assert not read_whole(text, loads(text))


def test_text_the_parser_cannot_finish_is_not_vouched_for() -> None:
    assert not keys_unique("[" * 100_000 + "]" * 100_000)
    assert not keys_unique('{"a": ')
