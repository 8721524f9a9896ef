"""The async transport: AsyncOpenAI / AsyncAnthropic, concurrency and context in tasks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import aiguard
from _sdk_policy import openai_and_anthropic_policy
from aiguard.context import current_context
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid, assert_no_raw_values

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

EMAIL = "jane.doe@example.com"
QUESTION = f"Mail {EMAIL} today."


@pytest.fixture
def guard(sink: InMemorySink) -> aiguard.Guard:
    return aiguard.Guard(openai_and_anthropic_policy(), sinks=[sink])


def aoa(guard: aiguard.Guard, fake: FakeModel) -> Any:
    return openai.AsyncOpenAI(
        http_client=guard.async_http_client(transport=fake.transport),
        base_url="https://api.openai.com/v1",
        api_key="test",
        max_retries=0,
    )


class TestAsyncOpenAI:
    def test_stream(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """AsyncOpenAI streaming: originals back, nothing raw upstream, one valid event."""
        fake = FakeModel(chunk_size=1, stream_bytes=9)

        async def main() -> str:
            client = aoa(guard, fake)
            async with guard.context(subject="cust-42", purpose="inference"):
                stream = await client.chat.completions.create(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": QUESTION}],
                    stream=True,
                )
                return "".join([c.choices[0].delta.content or "" async for c in stream])

        assert asyncio.run(main()) == "Echo: " + QUESTION
        assert_no_raw_values(fake, [EMAIL])
        assert_chain_valid(sink)
        [event] = sink.calls()
        assert event["status"] == "ok" and event["gen_ai.response.model"] == "gpt-4o"

    def test_non_streaming(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """AsyncOpenAI without streaming keeps the whole-answer path."""
        fake = FakeModel()

        async def main() -> str | None:
            async with guard.context(subject="cust-42", purpose="inference"):
                answer = await aoa(guard, fake).chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
                )
            return answer.choices[0].message.content

        assert asyncio.run(main()) == "Echo: " + QUESTION
        assert_no_raw_values(fake, [EMAIL])
        assert [e["status"] for e in sink.calls()] == ["ok"]

    def test_failure_and_abandon(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """A dropped upstream and an early close each record one error event."""
        broken = FakeModel(chunk_size=1, fail_stream_after=10)
        fine = FakeModel(chunk_size=1)

        async def main() -> None:
            async with guard.context(subject="cust-42", purpose="inference"):
                stream = await aoa(guard, broken).chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": QUESTION}], stream=True
                )
                with pytest.raises(openai.APIConnectionError):
                    async for _chunk in stream:
                        pass
                stream = await aoa(guard, fine).chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": QUESTION}], stream=True
                )
                async for _chunk in stream:
                    break
                await stream.close()

        asyncio.run(main())
        assert_chain_valid(sink)
        assert [(e["status"], e["error"]) for e in sink.calls()] == [
            ("error", "ReadError"),
            ("error", "StreamAbandoned"),
        ]


class TestAsyncAnthropic:
    def test_stream(self, guard: aiguard.Guard, sink: InMemorySink) -> None:
        """AsyncAnthropic messages.stream restores text and records usage."""
        fake = FakeModel(chunk_size=2, stream_bytes=13)

        async def main() -> str:
            client = anthropic.AsyncAnthropic(
                http_client=guard.async_http_client(transport=fake.transport),
                api_key="test",
                max_retries=0,
            )
            async with (
                guard.context(subject="cust-42", purpose="inference"),
                client.messages.stream(
                    model="claude-x",
                    max_tokens=50,
                    messages=[{"role": "user", "content": QUESTION}],
                ) as stream,
            ):
                return "".join([t async for t in stream.text_stream])

        assert asyncio.run(main()) == "Echo: " + QUESTION
        assert_no_raw_values(fake, [EMAIL])
        [event] = sink.calls()
        assert event["status"] == "ok" and event["gen_ai.usage.output_tokens"] > 0


class TestConcurrency:
    def test_200_tasks_get_only_their_own_values(
        self, guard: aiguard.Guard, sink: InMemorySink
    ) -> None:
        """Each task has its subject and conversation; answers never cross between tasks."""
        fake = FakeModel(chunk_size=3, stream_bytes=17)
        client = aoa(guard, fake)

        async def one(number: int) -> tuple[int, str]:
            email = f"user{number}@example{number}.com"
            async with guard.context(
                subject=f"cust-{number}", conversation=f"conv-{number}", purpose="inference"
            ):
                stream = await client.chat.completions.create(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": f"I am {email}."}],
                    stream=True,
                )
                return number, "".join([c.choices[0].delta.content or "" async for c in stream])

        async def main() -> list[tuple[int, str]]:
            return await asyncio.gather(*(one(n) for n in range(200)))

        for number, text in asyncio.run(main()):
            assert text == f"Echo: I am user{number}@example{number}.com."
        assert_no_raw_values(fake, [f"user{n}@example{n}.com" for n in range(200)])
        calls = sink.calls()
        assert len(calls) == 200 and all(e["status"] == "ok" for e in calls)
        assert len({e["conversation"] for e in calls}) == 200
        assert_chain_valid(sink)


class TestContextInTasks:
    def test_context_follows_tasks_created_inside_it(self, guard: aiguard.Guard) -> None:
        """Tasks created in an ``async with guard.context`` see it; tasks outside do not."""

        async def read() -> str | None:
            await asyncio.sleep(0)
            ctx = current_context()
            return ctx.subject if ctx else None

        async def main() -> tuple[list[str | None], str | None]:
            async with guard.context(subject="cust-1", purpose="inference"):
                inner = [asyncio.create_task(read()) for _ in range(3)]
                async with guard.context(subject="cust-2"):
                    inner.append(asyncio.create_task(read()))
            outside = asyncio.create_task(read())
            return list(await asyncio.gather(*inner)), await outside

        inside, outside = asyncio.run(main())
        assert inside == ["cust-1", "cust-1", "cust-1", "cust-2"]
        assert outside is None


def test_blocking_stores_run_off_the_event_loop(tmp_path: Path) -> None:
    """With an SQLite vault, the async client protects and restores in a worker thread."""
    import threading

    import openai

    import aiguard
    from aiguard.testing import FakeModel, assert_no_raw_values

    (tmp_path / "aiguard.toml").write_text(
        'database = "aiguard.db"\n[destinations.openai]\nbase_url = "https://api.openai.com/v1"\n'
        'approved = true\npurposes = ["inference"]\n'
    )
    guard = aiguard.Guard.from_toml(tmp_path / "aiguard.toml")
    assert guard.stores_block
    threads: list[threading.Thread] = []
    inner = guard.vault.tokenize

    def spy(*args: object, **kwargs: object) -> str:
        threads.append(threading.current_thread())
        return inner(*args, **kwargs)  # type: ignore[arg-type]

    guard.vault.tokenize = spy  # type: ignore[method-assign]
    fake = FakeModel()

    async def run() -> str:
        client = openai.AsyncOpenAI(
            http_client=guard.async_http_client(transport=fake.transport),
            base_url="https://api.openai.com/v1",
            api_key="k",
            max_retries=0,
        )
        async with guard.context(subject="s", tenant="acme", purpose="inference"):
            reply = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "mail jane@example.com"}]
            )
        return reply.choices[0].message.content or ""

    loop_thread = threading.current_thread()
    assert asyncio.run(run()) == "Echo: mail jane@example.com"
    assert threads and all(t is not loop_thread for t in threads)
    assert_no_raw_values(fake, ["jane@example.com"])
    guard.close()


def test_a_synchronous_file_log_writes_off_the_event_loop(tmp_path: Path) -> None:
    """A synchronous JSONL log writes inside `append`: the async client records (whole
    and streamed answers) from a worker thread, never on the event loop."""
    import threading

    from aiguard.provenance import JsonlSink

    threads: list[threading.Thread] = []

    class SpySink(JsonlSink):
        def emit_batch(self, records: Any) -> None:
            threads.append(threading.current_thread())
            super().emit_batch(records)

    sink = SpySink(tmp_path / "events.jsonl")
    guard = aiguard.Guard(openai_and_anthropic_policy(), sinks=[sink])
    assert guard.stores_block and not guard.log.background
    fake = FakeModel(chunk_size=3)

    async def run() -> tuple[str, str]:
        client = aoa(guard, fake)
        async with guard.context(subject="s", purpose="inference"):
            whole = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
            )
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream])
        return whole.choices[0].message.content or "", streamed

    loop_thread = threading.current_thread()
    threads.clear()  # the genesis record was written when the log was made
    assert asyncio.run(run()) == ("Echo: " + QUESTION, "Echo: " + QUESTION)
    assert len(threads) == 2
    assert all(t is not loop_thread for t in threads)
    assert_no_raw_values(fake, [EMAIL])
    guard.close()


def test_in_memory_stores_and_log_stay_on_the_event_loop() -> None:
    # Nothing blocks: a worker-thread hop per call would only add latency.
    guard = aiguard.Guard(openai_and_anthropic_policy())
    assert not guard.stores_block
    background = aiguard.Guard(
        openai_and_anthropic_policy(),
        log=aiguard.provenance.ProvenanceLog("bg", [InMemorySink()], background=True),
    )
    assert not background.stores_block
    background.close()
