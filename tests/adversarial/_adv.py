"""Shared by the adversarial tests: an OpenAI/Anthropic SDK client through the guard
against the fake model, and the gateway on a loopback socket (127.0.0.1 only)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import aiguard
from _servers import serve
from aiguard.testing import FakeModel, InMemorySink

OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com"

POLICY = aiguard.Policy(
    destinations={
        "openai": aiguard.DestinationPolicy(
            base_url=OPENAI_URL, approved=True, purposes=["inference"]
        ),
        "anthropic": aiguard.DestinationPolicy(
            base_url=ANTHROPIC_URL, approved=True, purposes=["inference"]
        ),
    }
)


def new_guard(
    policy: aiguard.Policy = POLICY, **options: Any
) -> tuple[aiguard.Guard, InMemorySink]:
    sink = InMemorySink()
    return aiguard.Guard(policy, sinks=[sink], **options), sink


def openai_client(guard: aiguard.Guard, fake: FakeModel) -> Any:
    import openai

    return openai.OpenAI(
        http_client=guard.http_client(transport=fake.transport),
        base_url=OPENAI_URL,
        api_key="k",
        max_retries=0,
    )


def anthropic_client(guard: aiguard.Guard, fake: FakeModel) -> Any:
    import anthropic

    return anthropic.Anthropic(
        http_client=guard.http_client(transport=fake.transport),
        base_url=ANTHROPIC_URL,
        api_key="k",
        max_retries=0,
    )


def chat(client: Any, content: str, **kwargs: Any) -> str:
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}], **kwargs
    )
    return str(reply.choices[0].message.content)


def sent(fake: FakeModel) -> str:
    """Every byte the fake model received: URLs, headers and bodies."""
    parts = []
    for request in fake.requests:
        parts.append(request.url)
        parts.extend(f"{k}: {v}" for k, v in request.headers.items())
        parts.append(request.text)
    return "\n".join(parts)


@contextlib.contextmanager
def gateway(
    upstream: str, *, config: dict[str, Any] | None = None
) -> Iterator[tuple[str, aiguard.Guard, InMemorySink]]:
    from aiguard.doors.gateway import GatewayConfig, create_app, default_policy

    sink = InMemorySink()
    guard = aiguard.Guard(default_policy(upstream), sinks=[sink])
    app = create_app(guard, GatewayConfig(upstream=upstream, **(config or {})))
    with serve(app) as (url, _server):
        yield url, guard, sink
