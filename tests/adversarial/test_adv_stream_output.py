"""Issue #19 item 6 (streaming): a hostile model gets values past the output rule, or
bends a restored value into JSON structure. Each test reproduces one bypass found on
main, through the stream core the transports and the gateway run
(``StreamRestorer(TokenRestorer(call.lookup, call))``) with a real `Call`."""

from __future__ import annotations

import json
from typing import Any

import aiguard
from aiguard.context import CallContext
from aiguard.doors.streaming import StreamRestorer, TokenRestorer
from aiguard.pipeline.call import Call

CARD = "4111 1111 1111 1111"
SSN = "536-22-8726"


def _call() -> Call:
    policy = aiguard.Policy(
        destinations={
            "openai": aiguard.DestinationPolicy(
                base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
            )
        }
    )
    guard = aiguard.Guard(policy, sinks=[aiguard.InMemorySink()])
    return Call(guard, CallContext(), "openai")


def _frame(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + b"\n\n"


def _run(frames: list[bytes], lookup: dict[str, str] | None = None) -> tuple[bytes, Call]:
    call = _call()
    table = lookup or {}
    core = StreamRestorer(TokenRestorer(lambda t: table.get(t) or call.lookup(t), call))
    out = b"".join(core.feed(frame) for frame in frames) + core.close()
    return out, call


def _no_part(out: bytes, value: str) -> None:
    text = out.decode()
    digits = "".join(ch for ch in value if ch.isdigit())
    decoded = json.dumps(text)  # escapes cannot hide it either
    for size in range(6, len(value) + 1):
        for i in range(len(value) - size + 1):
            assert value[i : i + size] not in text
    assert digits not in "".join(ch for ch in decoded if ch.isdigit() or ch == " ").replace(" ", "")


def test_responses_output_text_done_carries_the_full_text() -> None:
    """``response.output_text.done`` repeats the whole text: it went out raw."""
    frames = [
        _frame(
            {
                "type": "response.output_text.delta",
                "output_index": 0,
                "content_index": 0,
                "delta": "Card: " + CARD,
            }
        ),
        _frame(
            {
                "type": "response.output_text.done",
                "output_index": 0,
                "content_index": 0,
                "text": "Card: " + CARD,
            }
        ),
    ]
    out, call = _run(frames)
    _no_part(out, CARD)
    assert call.leaks == {"credit_card": 1}
    assert "response.output_text.done:$.text" in call.leak_paths


def test_responses_function_call_arguments_done() -> None:
    args = json.dumps({"ssn": "SSN " + SSN})
    frames = [
        _frame(
            {
                "type": "response.function_call_arguments.done",
                "output_index": 0,
                "item_id": "fc_1",
                "arguments": args,
            }
        ),
    ]
    out, _ = _run(frames)
    assert SSN not in out.decode()
    done = json.loads(out.decode().split("data: ", 1)[1])
    # The key names the kind: the whole value is withheld, as a request's is tokenized.
    assert json.loads(done["arguments"])["ssn"] == "[REDACTED:us_ssn]"


def test_responses_completed_carries_full_output() -> None:
    response = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "content": [{"type": "output_text", "text": f"Pay with {CARD} now"}],
            }
        ],
    }
    out, call = _run([_frame({"type": "response.completed", "response": response})])
    _no_part(out, CARD)
    assert call.leaks == {"credit_card": 1}


def test_chat_reasoning_content_deltas_one_character_each() -> None:
    """``reasoning_content`` (a provider's extra delta field) was never scanned."""
    text = f"I think the card is {CARD} ok"
    frames = [
        _frame(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "model": "m",
                "choices": [{"index": 0, "delta": {"reasoning_content": ch}}],
            }
        )
        for ch in text
    ]
    frames.append(b"data: [DONE]\n\n")
    out, call = _run(frames)
    _no_part(out, CARD)
    received = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("reasoning_content", "")
        for line in out.decode().splitlines()
        if line.startswith("data: {")
    )
    assert received == "I think the card is [REDACTED:credit_card] ok"
    assert call.leak_paths == {"$.choices[0].delta.reasoning_content": {"credit_card": 1}}


def test_anthropic_thinking_delta_split_value() -> None:
    """``thinking_delta`` passed raw: a value split across two thinking deltas."""
    cut = len(CARD) // 2
    frames = [
        _frame(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
            "content_block_start",
        ),
        _frame(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "card " + CARD[:cut]},
            },
            "content_block_delta",
        ),
        _frame(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": CARD[cut:] + " done"},
            },
            "content_block_delta",
        ),
        _frame({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _frame({"type": "message_stop"}, "message_stop"),
    ]
    out, call = _run(frames)
    _no_part(out, CARD)
    assert call.leaks == {"credit_card": 1}


def test_restored_value_cannot_add_json_keys_without_response_format() -> None:
    """A caller's value holding quotes, restored into a JSON answer the model wrote in
    plain content (no ``response_format``), closed the string and added a key."""
    token = "[NAME_7Q2K]"
    original = 'Eve", "admin": true, "x": "y'
    answer = '{"name": "' + token + '", "role": "user"}'
    for size in (1, 3, len(answer)):
        frames = [
            _frame({"choices": [{"index": 0, "delta": {"content": answer[i : i + size]}}]})
            for i in range(0, len(answer), size)
        ]
        frames.append(b"data: [DONE]\n\n")
        out, _ = _run(frames, {token: original})
        text = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content", "")
            for line in out.decode().splitlines()
            if line.startswith("data: {")
        )
        assert json.loads(text) == {"name": original, "role": "user"}, size


def test_restored_value_in_a_json_fence_inside_prose() -> None:
    """The same inside a Markdown fence after some prose."""
    token = "[NAME_7Q2K]"
    original = 'a\\", "admin": true, "b": "'
    answer = 'Here:\n```json\n{"name": "' + token + '"}\n```'
    frames = [_frame({"choices": [{"index": 0, "delta": {"content": ch}}]}) for ch in answer]
    out, _ = _run([*frames, b"data: [DONE]\n\n"], {token: original})
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in out.decode().splitlines()
        if line.startswith("data: {")
    )
    body = text.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(body) == {"name": original}


def test_responses_content_part_and_output_item_done() -> None:
    """``response.content_part.done`` and ``response.output_item.done`` repeat the text;
    frames without a ``[`` in them went out unscanned."""
    part = {"type": "output_text", "text": f"Card {CARD}"}
    frames = [
        _frame(
            {
                "type": "response.content_part.done",
                "output_index": 0,
                "content_index": 0,
                "part": part,
            }
        ),
        _frame(
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {"type": "function_call", "id": "fc_1", "arguments": f'{{"c":"{CARD}"}}'},
            }
        ),
    ]
    out, call = _run(frames)
    _no_part(out, CARD)
    assert set(call.leak_paths) == {
        "response.content_part.done:$.part.text",
        "response.output_item.done:$.item.arguments",
    }


def test_a_plain_answer_with_json_in_prose_cannot_gain_keys(leak_values: Any) -> None:
    """Not streamed, through the openai SDK: JSON the model wrote after some prose (or in
    a fence) had a caller's value restored raw inside a string, adding keys."""
    import re

    import httpx
    import openai

    from aiguard.policy.model import PatternPolicy
    from aiguard.vault.tokens import TOKEN_RE

    original = 'Eve", "admin": true, "x": "y'
    base = _call().guard.policy
    policy = base.model_copy(
        update={
            "patterns": [PatternPolicy(kind="handle", level="sensitive", regex=re.escape(original))]
        }
    )
    guard = aiguard.Guard(policy, sinks=[aiguard.InMemorySink()])
    for shape in ('Sure:\n```json\n{"name": "TOKEN"}\n```', 'Sure: {"name": "TOKEN"} ok'):

        def answer(request: httpx.Request, shape: str = shape) -> httpx.Response:
            match = TOKEN_RE.search(request.content.decode())
            assert match is not None
            content = shape.replace("TOKEN", match.group(0))
            message = {"role": "assistant", "content": content}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            body = {"id": "c", "object": "chat.completion", "created": 0, "model": "m"}
            return httpx.Response(200, json={**body, "choices": [choice]})

        client = openai.OpenAI(
            http_client=guard.http_client(transport=httpx.MockTransport(answer)),
            base_url="https://api.openai.com/v1",
            api_key="k",
            max_retries=0,
        )
        with guard.context(subject="s", tenant="acme", purpose="inference"):
            reply = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"I am {original}"}]
            )
        text = str(reply.choices[0].message.content)
        body = text[text.index("{") : text.rindex("}") + 1]
        assert json.loads(body) == {"name": original}, text
