"""Retries (aiguard's own and the SDKs'), upstream errors and timeouts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import aiguard
from aiguard.policy.model import RetryPolicy
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid

openai = pytest.importorskip("openai")

EMAIL = "jane.doe@example.com"
URL = "https://api.openai.com/v1"
MESSAGES = [{"role": "user", "content": f"mail {EMAIL}"}]


def setup(retries: RetryPolicy | None = None) -> tuple[aiguard.Guard, InMemorySink]:
    sink = InMemorySink()
    spec: dict[str, Any] = {"approved": True, "purposes": ["inference"]}
    if retries is not None:
        spec["retries"] = retries
    policy = aiguard.Policy(
        destinations={"openai": aiguard.DestinationPolicy(base_url=URL, **spec)}
    )
    return aiguard.Guard(policy, sinks=[sink]), sink


def client(
    guard: aiguard.Guard, transport: Any, max_retries: int = 0, asynchronous: bool = False
) -> Any:
    if asynchronous:
        http = guard.async_http_client(transport=transport)
        return openai.AsyncOpenAI(
            http_client=http, base_url=URL, api_key="k", max_retries=max_retries
        )
    http = guard.http_client(transport=transport)
    return openai.OpenAI(http_client=http, base_url=URL, api_key="k", max_retries=max_retries)


def attempts(sink: InMemorySink) -> list[tuple[str, int, str, Any]]:
    return [(e["request_id"], e["attempt"], e["type"], e.get("http_status")) for e in sink.calls()]


class TestAiguardRetries:
    def test_429_is_retried_honouring_retry_after(self) -> None:
        """Each attempt is its own event under one request id, numbered 1..n."""
        guard, sink = setup(RetryPolicy(max_attempts=3, max_seconds=5))
        fake = FakeModel()
        fake.fail_next(2, 429, {"retry-after": "0"})
        with guard.context(purpose="inference"):
            reply = client(guard, fake.transport).chat.completions.create(
                model="m", messages=MESSAGES
            )
        assert reply.choices[0].message.content == f"Echo: mail {EMAIL}"
        seen = attempts(sink)
        assert [a[1:] for a in seen] == [(1, "error", 429), (2, "error", 429), (3, "call", 200)]
        assert len({a[0] for a in seen}) == 1
        assert fake.bodies[0] == fake.bodies[2]  # deterministic tokens: identical retries
        assert_chain_valid(sink)

    def test_attempts_are_bounded_and_the_last_answer_is_the_sdk_error(self) -> None:
        guard, _sink = setup(RetryPolicy(max_attempts=2, max_seconds=5))
        fake = FakeModel()
        fake.fail_next(5, 503, {"retry-after-ms": "1"})
        with guard.context(purpose="inference"), pytest.raises(openai.InternalServerError):
            client(guard, fake.transport).chat.completions.create(model="m", messages=MESSAGES)
        assert len(fake.requests) == 2

    def test_a_long_retry_after_stops_within_the_time_bound(self) -> None:
        """Retry-After beyond max_seconds: no new attempt starts; the 429 goes to the caller."""
        guard, _sink = setup(RetryPolicy(max_attempts=5, max_seconds=0.5, max_wait=10))
        fake = FakeModel()
        fake.fail_next(5, 429, {"retry-after": "3"})
        with guard.context(purpose="inference"), pytest.raises(openai.RateLimitError):
            client(guard, fake.transport).chat.completions.create(model="m", messages=MESSAGES)
        assert len(fake.requests) == 1

    def test_connection_errors_are_retried(self) -> None:
        fake = FakeModel()
        module = fake._module
        failures = [2]

        def handler(request: Any) -> Any:
            if failures[0]:
                failures[0] -= 1
                raise module.ConnectError("refused", request=request)
            return fake.transport.handle_request(request)

        guard, sink = setup(RetryPolicy(max_attempts=3, max_seconds=5, max_wait=0.01))
        with guard.context(purpose="inference"):
            client(guard, module.MockTransport(handler)).chat.completions.create(
                model="m", messages=MESSAGES
            )
        assert [e["type"] for e in sink.calls()] == ["error", "error", "call"]
        assert sink.calls()[0]["error"] == "ConnectError"

    def test_sdk_retries_after_aiguard_retries_continue_the_numbering(self) -> None:
        """Both layers on: one request id, attempt numbers never repeat."""
        guard, sink = setup(RetryPolicy(max_attempts=2, max_seconds=5))
        fake = FakeModel()
        fake.fail_next(3, 500, {"retry-after": "0"})
        with guard.context(purpose="inference"):
            client(guard, fake.transport, max_retries=1).chat.completions.create(
                model="m", messages=MESSAGES
            )
        seen = attempts(sink)
        assert [a[1] for a in seen] == [1, 2, 3, 4]
        assert len({a[0] for a in seen}) == 1

    def test_async(self) -> None:
        guard, sink = setup(RetryPolicy(max_attempts=3, max_seconds=5))
        fake = FakeModel()
        fake.fail_next(1, 429, {"retry-after": "0"})

        async def main() -> str:
            async with guard.context(purpose="inference"):
                reply = await client(
                    guard, fake.transport, asynchronous=True
                ).chat.completions.create(model="m", messages=MESSAGES)
            return str(reply.choices[0].message.content)

        assert asyncio.run(main()) == f"Echo: mail {EMAIL}"
        assert [a[1] for a in attempts(sink)] == [1, 2]

    def test_off_by_default(self) -> None:
        """Without a retries key only the SDK retries (x-stainless-retry-count links them)."""
        guard, sink = setup()
        fake = FakeModel()
        fake.fail_next(1, 500)
        with guard.context(purpose="inference"):
            client(guard, fake.transport, max_retries=1).chat.completions.create(
                model="m", messages=MESSAGES
            )
        assert [a[1:] for a in attempts(sink)] == [(1, "error", 500), (2, "call", 200)]


class TestUpstreamErrors:
    def test_error_status_gives_the_sdk_error_and_no_raw_value_in_events(self) -> None:
        guard, sink = setup()
        fake = FakeModel()
        fake.fail_next(1, 400)
        with guard.context(purpose="inference"), pytest.raises(openai.BadRequestError):
            client(guard, fake.transport).chat.completions.create(model="m", messages=MESSAGES)
        event = sink.calls()[0]
        assert event["error"] == "http_400"
        assert EMAIL not in json.dumps(sink.calls())

    def test_timeout_gives_the_sdk_timeout_error(self) -> None:
        fake = FakeModel()
        module = fake._module

        def handler(request: Any) -> Any:
            raise module.ReadTimeout("slow", request=request)

        guard, sink = setup()
        with guard.context(purpose="inference"), pytest.raises(openai.APITimeoutError):
            client(guard, module.MockTransport(handler)).chat.completions.create(
                model="m", messages=MESSAGES
            )
        assert sink.calls()[0]["error"] == "ReadTimeout"

    def test_malformed_answer_is_recorded_and_passed_to_the_sdk(self) -> None:
        fake = FakeModel()
        module = fake._module

        def handler(request: Any) -> Any:
            return module.Response(
                200, headers={"content-type": "application/json"}, content=b'{"choices": ['
            )

        guard, sink = setup()
        with guard.context(purpose="inference"), pytest.raises(Exception) as caught:
            client(guard, module.MockTransport(handler)).chat.completions.create(
                model="m", messages=MESSAGES
            )
        assert not isinstance(caught.value, aiguard.AIGuardError)
        assert sink.calls()[0]["http_status"] == 200

    def test_truncated_stream_is_recorded_as_an_error(self) -> None:
        fake = FakeModel(stream_bytes=7, fail_stream_after=5)
        guard, sink = setup()
        with guard.context(purpose="inference"), pytest.raises(openai.APIConnectionError):
            for _ in client(guard, fake.transport).chat.completions.create(
                model="m", messages=MESSAGES, stream=True
            ):
                pass
        event = sink.calls()[0]
        assert event["type"] == "error" and event["error"] == "ReadError"
