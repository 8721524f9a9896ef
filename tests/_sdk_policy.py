"""What the SDK and streaming tests share: their policy, an OpenAI client through a
guard, the one call event a test made, and a sink that can be made to fail."""

from __future__ import annotations

from typing import Any

import aiguard
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid


def openai_and_anthropic_policy() -> aiguard.Policy:
    """Both providers approved for inference: the SDK and streaming tests' policy."""
    return aiguard.Policy(
        destinations={
            "openai": aiguard.DestinationPolicy(
                base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
            ),
            "anthropic": aiguard.DestinationPolicy(
                base_url="https://api.anthropic.com", approved=True, purposes=["inference"]
            ),
        }
    )


def openai_client(guard: aiguard.Guard, fake: FakeModel) -> Any:
    """The real OpenAI SDK through ``guard``, against ``fake``; no retries."""
    import openai

    return openai.OpenAI(
        http_client=guard.http_client(transport=fake.transport),
        base_url="https://api.openai.com/v1",
        api_key="test",
        max_retries=0,
    )


def one_event(sink: InMemorySink) -> dict[str, Any]:
    """The one call event ``sink`` holds, its chain verified."""
    calls = sink.calls()
    assert len(calls) == 1, calls
    assert_chain_valid(sink)
    return calls[0]


class FlakySink(InMemorySink):
    """An in-memory sink whose writes fail with "disk full" while ``broken``."""

    broken = False

    def emit_batch(self, records: Any) -> None:
        if self.broken:
            raise OSError("disk full")
        super().emit_batch(records)
