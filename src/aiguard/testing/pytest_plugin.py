"""pytest plugin (registered through the ``pytest11`` entry point): aiguard fixtures.

Installed with aiguard, active in every pytest run; nothing to add to a conftest.

* ``aiguard_fake_model`` — a fresh `FakeModel` (echo answers);
* ``aiguard_sink`` — a fresh `InMemorySink`;
* ``aiguard_policy`` — the policy ``aiguard_guard`` enforces: destinations ``openai``
  and ``anthropic`` (the SDKs' default URLs) approved for every built-in purpose, with
  values above ``internal`` tokenized. Override this fixture to test your own policy;
* ``aiguard_guard`` — a `Guard` over that policy with in-memory stores, writing its
  events to ``aiguard_sink``; closed after the test;
* ``aiguard_openai`` — an ``openai.OpenAI`` client that goes through ``aiguard_guard``
  to ``aiguard_fake_model`` (skips the test when the ``openai`` package is missing);
* ``aiguard_async_openai`` — the same as an ``openai.AsyncOpenAI`` client;
* ``aiguard_app`` — your application built with the fixtures' guard and client:
  override it in a conftest (the default fails, saying so);
* ``aiguard_app_client`` — a Starlette/FastAPI ``TestClient`` over ``aiguard_app``.

See docs/testing.md for an example to copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..guard import Guard
from ..policy.model import BUILTIN_PURPOSES, DestinationPolicy, Policy
from ..provenance.sinks import InMemorySink
from .fake import FakeModel

__all__ = ["ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "TEST_BASE_URL", "default_policy"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
#: Kept for callers of the first version of the plugin.
TEST_BASE_URL = OPENAI_BASE_URL


def default_policy() -> Policy:
    """The policy of ``aiguard_policy``: both SDK default destinations, every built-in purpose.

    Every purpose is approved so that handlers decorated for any of them can be tested;
    consent-requiring purposes still need a grant in ``guard.consent``, as in production.
    """
    purposes = sorted(BUILTIN_PURPOSES)
    return Policy(
        destinations={
            "openai": DestinationPolicy(base_url=OPENAI_BASE_URL, approved=True, purposes=purposes),
            "anthropic": DestinationPolicy(
                base_url=ANTHROPIC_BASE_URL, approved=True, purposes=purposes
            ),
        }
    )


@pytest.fixture
def aiguard_fake_model() -> FakeModel:
    """A fresh fake model that echoes the last user message and records every request."""
    return FakeModel()


@pytest.fixture
def aiguard_sink() -> InMemorySink:
    """A fresh in-memory sink; ``aiguard_guard`` writes its events here."""
    return InMemorySink()


@pytest.fixture
def aiguard_policy() -> Policy:
    """The policy of ``aiguard_guard``; override it in a conftest to use your own."""
    return default_policy()


@pytest.fixture
def aiguard_guard(aiguard_policy: Policy, aiguard_sink: InMemorySink) -> Iterator[Guard]:
    """A guard over ``aiguard_policy`` with in-memory stores, events in ``aiguard_sink``."""
    guard = Guard(aiguard_policy, sinks=[aiguard_sink])
    yield guard
    guard.close()


@pytest.fixture
def aiguard_openai(aiguard_guard: Guard, aiguard_fake_model: FakeModel) -> Iterator[Any]:
    """An ``openai.OpenAI`` client through ``aiguard_guard`` to ``aiguard_fake_model``."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(
        api_key="test-key",
        base_url=OPENAI_BASE_URL,
        max_retries=0,
        http_client=aiguard_guard.http_client(transport=aiguard_fake_model.transport),
    )
    yield client
    client.close()


@pytest.fixture
def aiguard_async_openai(aiguard_guard: Guard, aiguard_fake_model: FakeModel) -> Iterator[Any]:
    """An ``openai.AsyncOpenAI`` client through ``aiguard_guard`` to ``aiguard_fake_model``.

    Closed after the test on an event loop of its own, so it works with or without an
    async test runner (the fake transport holds no connection that needs the test's loop).
    """
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(
        api_key="test-key",
        base_url=OPENAI_BASE_URL,
        max_retries=0,
        http_client=aiguard_guard.async_http_client(transport=aiguard_fake_model.transport),
    )
    yield client
    import asyncio

    asyncio.run(client.close())


@pytest.fixture
def aiguard_app() -> Any:
    """Your application, built with ``aiguard_guard``: override this fixture.

    The one way to test an app under the fixtures' guard is to build it in a factory
    that takes the guard (and the model client), e.g. in ``conftest.py``::

        @pytest.fixture
        def aiguard_app(aiguard_guard, aiguard_async_openai):
            return create_app(guard=aiguard_guard, model=aiguard_async_openai)

    A handler decorated at import time keeps the guard it was decorated with.
    """
    raise pytest.UsageError(
        "aiguard_app_client needs your app: override the aiguard_app fixture in a conftest, "
        "returning your app built with aiguard_guard (see docs/testing.md)"
    )


@pytest.fixture
def aiguard_app_client(aiguard_app: Any) -> Iterator[Any]:
    """A ``TestClient`` over ``aiguard_app`` (lifespan run; skips without Starlette)."""
    testclient = pytest.importorskip("starlette.testclient")
    with testclient.TestClient(aiguard_app) as client:
        yield client
