"""The real OpenAI and Anthropic SDKs (sync) through the guard, streaming and not."""

from __future__ import annotations

from typing import Any

import pytest

import aiguard
from _sdk_policy import openai_and_anthropic_policy
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid, assert_no_raw_values

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
QUESTION = f"Write to {EMAIL} about card {CARD}, please."


@pytest.fixture
def guard(sink: InMemorySink) -> aiguard.Guard:
    return aiguard.Guard(openai_and_anthropic_policy(), sinks=[sink])


def oa(guard: aiguard.Guard, fake: FakeModel) -> Any:
    return openai.OpenAI(
        http_client=guard.http_client(transport=fake.transport),
        base_url="https://api.openai.com/v1",
        api_key="test",
        max_retries=0,
    )


def an(guard: aiguard.Guard, fake: FakeModel) -> Any:
    return anthropic.Anthropic(
        http_client=guard.http_client(transport=fake.transport), api_key="test", max_retries=0
    )


def messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": QUESTION}]


def one_call(sink: InMemorySink) -> dict[str, Any]:
    calls = sink.calls()
    assert len(calls) == 1, calls
    assert_chain_valid(sink)
    return calls[0]


class TestOpenAIChat:
    @pytest.mark.parametrize(
        "options",
        [
            {"chunk_size": 1},
            {"chunk_size": 3, "stream_bytes": 7},
            {"chunk_size": 5, "stream_bytes": 1000, "keepalive": True, "crlf": True},
        ],
    )
    def test_stream_restores_without_partial_tokens(
        self, guard: aiguard.Guard, sink: InMemorySink, options: dict[str, Any]
    ) -> None:
        """Any chunking upstream: the caller reads its own values, whole, in order."""
        fake = FakeModel(**options)
        with guard.context(subject="cust-42", purpose="inference"):
            stream = oa(guard, fake).chat.completions.create(
                model="gpt-4o", messages=messages(), stream=True
            )
            deltas = [c.choices[0].delta.content or "" for c in stream if c.choices]
        assert "".join(deltas) == "Echo: " + QUESTION
        assert not any("[" in d for d in deltas)
        assert_no_raw_values(fake, [EMAIL, CARD])
        event = one_call(sink)
        assert event["status"] == "ok" and event["gen_ai.response.model"] == "gpt-4o"
        assert event["tokens"] and event["output_digest"].startswith("hmac-sha256:")

    def test_usage_is_recorded_when_sent(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """stream_options.include_usage: the usage chunk reaches the caller and the event."""
        fake = FakeModel(chunk_size=2)
        with guard.context(subject="cust-42", purpose="inference"):
            stream = oa(guard, fake).chat.completions.create(
                model="gpt-4o",
                messages=messages(),
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
        assert chunks[-1].usage is not None
        assert chunks[-2].choices[0].finish_reason == "stop"
        event = one_call(sink)
        assert event["gen_ai.usage.output_tokens"] == chunks[-1].usage.completion_tokens

    def test_non_streaming_is_unchanged(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """The whole-answer path still restores and records."""
        fake = FakeModel()
        with guard.context(subject="cust-42", purpose="inference"):
            answer = oa(guard, fake).chat.completions.create(model="gpt-4o", messages=messages())
        assert answer.choices[0].message.content == "Echo: " + QUESTION
        assert_no_raw_values(fake, [EMAIL, CARD])
        assert one_call(sink)["status"] == "ok"

    def test_upstream_failure_midway(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """The caller gets what was restored so far, then the error; the event says why."""
        fake = FakeModel(chunk_size=1, fail_stream_after=12)
        seen: list[str] = []
        with (
            guard.context(subject="cust-42", purpose="inference"),
            pytest.raises(openai.APIConnectionError),
        ):
            stream = oa(guard, fake).chat.completions.create(
                model="gpt-4o", messages=messages(), stream=True
            )
            for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
        assert "".join(seen) == "Echo: Write"
        event = one_call(sink)
        assert event["status"] == "error" and event["error"] == "ReadError"
        assert any("upstream failed" in r for r in event["reasons"])

    def test_caller_abandons_the_stream(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """Closing early records one error event naming the abandonment."""
        fake = FakeModel(chunk_size=1)
        with guard.context(subject="cust-42", purpose="inference"):
            stream = oa(guard, fake).chat.completions.create(
                model="gpt-4o", messages=messages(), stream=True
            )
            for _chunk in stream:
                break
            stream.close()
        event = one_call(sink)
        assert event["status"] == "error" and event["error"] == "StreamAbandoned"
        assert any("closed the stream" in r for r in event["reasons"])


class TestOpenAIResponses:
    def test_responses_stream(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """Responses API events: deltas and the completed response are restored."""
        fake = FakeModel(chunk_size=2, stream_bytes=11)
        with guard.context(subject="cust-42", purpose="inference"):
            stream = oa(guard, fake).responses.create(model="gpt-4o", input=QUESTION, stream=True)
            events = list(stream)
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert "".join(deltas) == "Echo: " + QUESTION
        assert events[-1].response.output[0].content[0].text == "Echo: " + QUESTION
        assert_no_raw_values(fake, [EMAIL, CARD])
        event = one_call(sink)
        assert event["status"] == "ok" and event["gen_ai.usage.input_tokens"] == 1


class TestAnthropic:
    def test_messages_stream_helper(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """client.messages.stream(): text_stream and the final message hold the originals."""
        fake = FakeModel(chunk_size=1, stream_bytes=5, keepalive=True)
        with (
            guard.context(subject="cust-42", purpose="inference"),
            an(guard, fake).messages.stream(
                model="claude-x", max_tokens=100, messages=messages()
            ) as stream,
        ):
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == final.content[0].text == "Echo: " + QUESTION
        assert_no_raw_values(fake, [EMAIL, CARD])
        event = one_call(sink)
        assert event["status"] == "ok" and event["gen_ai.response.model"] == "claude-x"
        assert event["gen_ai.usage.output_tokens"] == final.usage.output_tokens

    def test_create_stream_true(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """create(stream=True) yields raw events the SDK accepts."""
        fake = FakeModel(chunk_size=3)
        with guard.context(subject="cust-42", purpose="inference"):
            events = list(
                an(guard, fake).messages.create(
                    model="claude-x", max_tokens=100, messages=messages(), stream=True
                )
            )
        text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
        assert text == "Echo: " + QUESTION
        assert events[-1].type == "message_stop"
        assert one_call(sink)["status"] == "ok"
