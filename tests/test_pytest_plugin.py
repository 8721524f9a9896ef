"""The pytest plugin, run the way users run it: their own test files, through pytest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from aiguard import Guard, Policy
from aiguard.testing import FakeModel, InMemorySink

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "testing.md"

USER_TESTS = """
import pytest
from aiguard.errors import PolicyDenied
from aiguard.testing import assert_chain_valid, assert_no_raw_values


def test_email_never_reaches_the_model(aiguard_guard, aiguard_fake_model, aiguard_sink):
    import openai

    client = openai.OpenAI(
        api_key="test",
        max_retries=0,
        http_client=aiguard_guard.http_client(transport=aiguard_fake_model.transport),
    )
    with aiguard_guard.context(subject="cust-1", purpose="inference"):
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Mail jane@example.com"}]
        )
    assert "jane@example.com" in reply.choices[0].message.content
    assert_no_raw_values(aiguard_fake_model, ["jane@example.com"])
    assert_chain_valid(aiguard_sink)


def test_each_test_gets_fresh_fixtures(aiguard_sink, aiguard_fake_model, aiguard_guard):
    assert aiguard_fake_model.requests == []
    assert aiguard_sink.calls() == []
    assert aiguard_guard.sinks == [aiguard_sink]


def test_unknown_destination_is_refused(aiguard_guard):
    with aiguard_guard.context(purpose="inference"):
        with pytest.raises(PolicyDenied):
            aiguard_guard.protect("hello", destination="mistral")
"""


class TestPluginInAUserSuite:
    def test_user_tests_pass_with_the_fixtures(self, pytester: pytest.Pytester) -> None:
        """A user's test file using the fixtures runs and passes with no conftest at all."""
        pytester.makepyfile(test_user=USER_TESTS)
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=3)

    def test_the_docs_example_passes(self, pytester: pytest.Pytester) -> None:
        """The example in docs/testing.md works when copied as it is."""
        blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
        pytester.makepyfile(test_ai_privacy=blocks[0])
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2)

    def test_policy_fixture_can_be_overridden(self, pytester: pytest.Pytester) -> None:
        """Overriding ``aiguard_policy`` in a conftest changes what ``aiguard_guard`` enforces."""
        pytester.makeconftest(
            """
            import pytest
            from aiguard import DestinationPolicy, Policy

            @pytest.fixture
            def aiguard_policy():
                return Policy(destinations={"internal": DestinationPolicy(
                    base_url="https://llm.internal.example/v1", approved=True,
                    purposes=["analytics"])})
            """
        )
        pytester.makepyfile(
            """
            def test_uses_my_policy(aiguard_guard):
                assert list(aiguard_guard.policy.destinations) == ["internal"]
                with aiguard_guard.context(purpose="analytics"):
                    aiguard_guard.protect("hi", destination="internal")
            """
        )
        pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)

    def test_fixtures_are_listed(self, pytester: pytest.Pytester) -> None:
        """``pytest --fixtures`` shows the plugin's fixtures with their descriptions."""
        result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
        for name in ("aiguard_fake_model", "aiguard_sink", "aiguard_policy", "aiguard_guard"):
            result.stdout.fnmatch_lines([f"{name}*"])


class TestFixturesHere:
    """This suite uses the plugin too."""

    def test_guard_is_wired_to_the_sink(
        self, aiguard_guard: Guard, aiguard_sink: InMemorySink, aiguard_policy: Policy
    ) -> None:
        """The guard writes to the sink fixture and enforces the policy fixture."""
        assert aiguard_guard.policy is aiguard_policy
        with aiguard_guard.context(subject="c", purpose="inference"):
            aiguard_guard.protect("mail jane@example.com", destination="anthropic")
        assert [e["type"] for e in aiguard_sink.events] == ["genesis", "protect"]

    def test_openai_fixture_talks_to_the_fake(
        self, aiguard_openai: object, aiguard_fake_model: FakeModel, aiguard_guard: Guard
    ) -> None:
        """``aiguard_openai`` is a real SDK client whose requests land in the fake."""
        with aiguard_guard.context(subject="c", purpose="inference"):
            aiguard_openai.chat.completions.create(  # type: ignore[attr-defined]
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        assert len(aiguard_fake_model.requests) == 1


def test_async_openai_fixture_goes_through_the_guard(
    aiguard_guard: Any, aiguard_async_openai: Any, aiguard_fake_model: Any
) -> None:
    import asyncio

    async def call() -> str:
        with aiguard_guard.context(subject="cust-1", purpose="inference"):
            completion = await aiguard_async_openai.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "mail jane@example.com"}]
            )
        return str(completion.choices[0].message.content)

    assert "jane@example.com" in asyncio.run(call())
    assert "jane@example.com" not in aiguard_fake_model.requests[0].text


def test_app_client_without_an_app_says_what_to_override(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(aiguard_app_client):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*override the aiguard_app fixture*"])
    assert result.ret != 0
