"""Fault matrix, the upstream model: unreachable, slow past the client's timeout, failing
midway through a stream, answering garbage, restarting (503 then back), through the
sync client, the async client and the decorator, over a real loopback socket.

Documented outcome (docs/payloads.md "Errors"): the SDK's own typed error
(`APIConnectionError`, `APITimeoutError`, its status errors), one `error` event per
attempt, nothing raw upstream, and the next call works once the model is back.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from faultkit import MESSAGE, RAW, DoorCall, call_events, fault_policy, free_port

import aiguard
from aiguard.doors.transport import module_for
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid, assert_no_raw_values

openai = pytest.importorskip("openai")


def _served(fake: FakeModel, door: str, **options: Any) -> Any:
    """(guard, sink, DoorCall factory) for a model served on 127.0.0.1."""
    import contextlib

    @contextlib.contextmanager
    def run() -> Any:
        with fake.serve() as url:
            sink = InMemorySink()
            guard = aiguard.Guard(fault_policy(url + "/v1"), sinks=[sink])
            yield guard, sink, DoorCall(door, guard, base_url=url + "/v1", **options)

    return run()


def test_upstream_unreachable(door: str, leak_values: Any) -> None:
    leak_values(RAW.values())
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    sink = InMemorySink()
    guard = aiguard.Guard(fault_policy(url), sinks=[sink])
    with pytest.raises(openai.APIConnectionError):
        DoorCall(door, guard, base_url=url, timeout=2.0)()
    event = call_events(sink)[-1]
    assert (event["type"], event["status"]) == ("error", "error")
    assert "Connect" in event["error"]
    # Recovery: the model comes up (here: on another port the policy also names).
    fake = FakeModel()
    with _served(fake, door) as (_guard2, _sink2, call):
        assert call() == "Echo: " + MESSAGE
    assert_no_raw_values(fake, RAW.values())
    assert_chain_valid(sink)


def test_upstream_slow_past_the_timeout(door: str, leak_values: Any) -> None:
    leak_values(RAW.values())
    slow = {"on": True}

    def reply(payload: dict[str, Any]) -> str:
        if slow["on"]:
            time.sleep(1.5)
        return "late"

    fake = FakeModel(reply=reply)
    with _served(fake, door, timeout=0.3) as (_guard, sink, call):
        with pytest.raises(openai.APITimeoutError):
            call()
        event = call_events(sink)[-1]
        assert event["type"] == "error" and "Timeout" in event["error"]
        slow["on"] = False
        assert call() == "late"
    assert_no_raw_values(fake, RAW.values())
    assert_chain_valid(sink)


def test_upstream_drops_the_stream_midway(door: str, leak_values: Any) -> None:
    leak_values(RAW.values())
    fake = FakeModel(fail_stream_after=3, chunk_size=4)
    with _served(fake, door, stream=True) as (_guard, sink, call):
        with pytest.raises(Exception) as caught:  # the SDK's or the HTTP library's error
            call()
        assert not isinstance(caught.value, AssertionError)
        event = call_events(sink)[-1]
        assert event["status"] == "error"
        fake.fail_stream_after = None
        assert call() == "Echo: " + MESSAGE
    assert_no_raw_values(fake, RAW.values())
    assert_chain_valid(sink)


GARBAGE = [
    b"\xff\xfe\x00garbage",
    b'{"choices": [{"message": {"content": "trunc',
    b"[[[[[[[[[[[[[[[[[[[[",
    b'{"choices": "not a list", "usage": {"prompt_tokens": "many"}}',
]


@pytest.mark.parametrize("body", GARBAGE, ids=["bytes", "truncated", "brackets", "wrong-types"])
def test_upstream_answers_garbage(door: str, body: bytes, leak_values: Any) -> None:
    leak_values(RAW.values())
    fake = FakeModel()
    module = module_for(fake.transport)
    received: list[bytes] = []

    def handler(request: Any) -> Any:
        received.append(request.read())
        return module.Response(200, content=body, headers={"content-type": "application/json"})

    sink = InMemorySink()
    guard = aiguard.Guard(fault_policy(), sinks=[sink])
    call = DoorCall(door, guard, transport=module.MockTransport(handler))
    # The SDK fails on the garbage in its own way; aiguard must not crash first, and the
    # attempt is recorded.
    with pytest.raises(Exception) as caught:
        call()
    assert not isinstance(caught.value, (AssertionError, aiguard.AIGuardError))
    assert call_events(sink)[-1]["type"] == "call"
    for value in RAW.values():
        assert value.encode() not in received[-1]
    assert_chain_valid(sink)


def test_upstream_answers_memorized_values_it_was_never_sent(door: str) -> None:
    """Garbage of the dangerous kind: the answer holds REGULATED values the call never
    sent (memorized or injected). They are withheld and counted as leaks."""
    fake = FakeModel(reply="Other customer: SSN 536-90-4421, card 5555 5555 5555 4444.")
    sink = InMemorySink()
    guard = aiguard.Guard(fault_policy(), sinks=[sink])
    answer = DoorCall(door, guard, transport=fake.transport)("hello")
    assert "536-90-4421" not in answer and "5555 5555 5555 4444" not in answer
    assert "[REDACTED:" in answer
    assert sum(call_events(sink)[-1]["leaks"].values()) == 2


def test_upstream_restarting_then_back(door: str, leak_values: Any) -> None:
    """503 while the model restarts; the SDK's retries get through, every attempt is an
    event under one request id."""
    leak_values(RAW.values())
    fake = FakeModel()
    fake.fail_next(2, status=503, headers={"retry-after-ms": "10"})
    with _served(fake, door, max_retries=2) as (_guard, sink, call):
        assert call() == "Echo: " + MESSAGE
    events = call_events(sink)
    assert [e["type"] for e in events] == ["error", "error", "call"]
    assert len({e["request_id"] for e in events}) == 1
    assert [e["attempt"] for e in events] == [1, 2, 3]
    assert_no_raw_values(fake, RAW.values())
    assert_chain_valid(sink)
