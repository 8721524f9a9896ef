"""`guard.wrap(client)` / `aiguard.wrap(client, guard)`: an SDK client built elsewhere, guarded."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import aiguard
from aiguard.testing import FakeModel, assert_no_raw_values
from aiguard.testing.pytest_plugin import ANTHROPIC_BASE_URL, default_policy

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

JANE = "jane.roe@example.com"


def test_wrapped_openai_client_is_guarded_and_keeps_its_options() -> None:
    guard = aiguard.Guard(default_policy())
    fake = FakeModel()
    plain = openai.OpenAI(api_key="sk-mine", max_retries=0, default_headers={"X-Team": "a"})
    client = aiguard.wrap(plain, guard, transport=fake.transport)
    assert client is not plain and plain._client is not client._client
    with guard.context(subject="s", purpose="inference"):
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"write to {JANE}"}]
        )
    assert reply.choices[0].message.content == f"Echo: write to {JANE}"
    assert_no_raw_values(fake, [JANE])
    (request,) = fake.requests
    assert request.headers["authorization"] == "Bearer sk-mine"
    assert request.headers["x-team"] == "a"
    assert client.max_retries == 0
    # Outside a context the default-deny pipeline refuses: the copy really is guarded.
    with pytest.raises(aiguard.PolicyDenied):
        client.chat.completions.create(model="gpt-4o", messages=[])
    assert len(fake.requests) == 1


def test_wrapped_async_anthropic_client() -> None:
    guard = aiguard.Guard(default_policy())
    fake = FakeModel()
    client = guard.wrap(
        anthropic.AsyncAnthropic(api_key="k", base_url=ANTHROPIC_BASE_URL, max_retries=0),
        transport=fake.transport,
    )

    async def call() -> str:
        with guard.context(subject="s", purpose="inference"):
            message = await client.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=50,
                messages=[{"role": "user", "content": f"mail {JANE}"}],
            )
        return str(message.content[0].text)

    assert asyncio.run(call()) == f"Echo: mail {JANE}"
    assert_no_raw_values(fake, [JANE])


def test_wrap_refuses_what_is_not_an_sdk_client() -> None:
    guard = aiguard.Guard(default_policy())
    with pytest.raises(TypeError, match="OpenAI or Anthropic SDK client, not Client"):
        guard.wrap(httpx.Client())
