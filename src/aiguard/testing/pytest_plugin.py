"""pytest plugin (registered through the ``pytest11`` entry point): aiguard fixtures.

* ``aiguard_fake_model`` — a fresh `FakeModel` (echo answers);
* ``aiguard_sink`` — a fresh `InMemorySink`;
* ``aiguard_guard`` — a `Guard` whose policy approves the fake's OpenAI destination for
  inference, writing to ``aiguard_sink``.
"""

from __future__ import annotations

import pytest

from ..guard import Guard
from ..policy.model import DestinationPolicy, Policy
from ..provenance.sinks import InMemorySink
from .fake import FakeModel

TEST_BASE_URL = "https://api.openai.com/v1"


@pytest.fixture
def aiguard_fake_model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def aiguard_sink() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def aiguard_guard(aiguard_sink: InMemorySink) -> Guard:
    policy = Policy(
        destinations={
            "openai": DestinationPolicy(
                base_url=TEST_BASE_URL, approved=True, purposes=["inference"]
            )
        }
    )
    return Guard(policy, sinks=[aiguard_sink])
