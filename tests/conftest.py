from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import settings

import aiguard
from aiguard.testing import FakeModel, InMemorySink

# CI replays the same examples on every run (derandomized), so whether a submission
# lands never depends on a draw; a developer's run draws new ones, which is how the
# property tests find the next class of bug. HYPOTHESIS_PROFILE overrides either.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "explore")
)

OPENAI_URL = "https://api.openai.com/v1"

POLICY_TOML = """
mode = "enforce"

[destinations.openai]
base_url = "https://api.openai.com/v1"
models = ["gpt-4o*", "gpt-5*"]
approved = true
purposes = ["inference", "model_training"]
max_raw_level = "internal"
retention_days = 30

[destinations.unreviewed]
base_url = "https://llm.example.net/v1"
approved = false
purposes = ["inference"]

[actions]
sensitive = "tokenize"
regulated = "tokenize"

[actions.kinds]
private_key = "block"

[[patterns]]
kind = "account"
level = "sensitive"
regex = "ACC-[0-9]{8}"
"""


@pytest.fixture
def policy() -> aiguard.Policy:
    from aiguard.policy import parse_policy

    return parse_policy(POLICY_TOML)


@pytest.fixture
def sink(aiguard_sink: InMemorySink) -> InMemorySink:
    """The plugin's sink (aiguard's own tests use the fixtures users get)."""
    return aiguard_sink


@pytest.fixture
def guard(policy: aiguard.Policy, sink: InMemorySink) -> aiguard.Guard:
    return aiguard.Guard(policy, sinks=[sink])


@pytest.fixture
def fake(aiguard_fake_model: FakeModel) -> FakeModel:
    """The plugin's fake model."""
    return aiguard_fake_model


@pytest.fixture
def make_client(guard: aiguard.Guard) -> Callable[..., object]:
    """A real OpenAI SDK client through the guard's transport around a fake."""
    openai = pytest.importorskip("openai")

    def build(fake: FakeModel, **kwargs: object) -> object:
        kwargs.setdefault("max_retries", 0)
        return openai.OpenAI(
            http_client=guard.http_client(transport=fake.transport),
            base_url=OPENAI_URL,
            api_key="test-key",
            **kwargs,
        )

    return build


# -- leak scan (tests/_leakscan.py): raw test values never in logs, errors or files ------
from _leakscan import _leakscan, leak_values, pytest_configure  # noqa: E402, F401
