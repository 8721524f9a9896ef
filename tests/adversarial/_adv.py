"""Shared by the adversarial tests: an OpenAI/Anthropic SDK client through the guard
against the fake model, and the gateway on a loopback socket (127.0.0.1 only)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiguard
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
def serve(app: Any, **options: Any) -> Iterator[tuple[str, Any]]:
    """Serve ``app`` with uvicorn in a thread on 127.0.0.1 and a free port."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(15)


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
