"""Every bad input raises its typed error, sends nothing upstream, and is recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import aiguard
from _sdk_policy import FlakySink
from aiguard.policy import load_policy, parse_policy
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid, assert_no_raw_values

URL = "https://api.openai.com/v1/chat/completions"
SECRET_EMAIL = "leaky.person@example.com"


def post(guard: aiguard.Guard, fake: FakeModel, url: str = URL, **kwargs: Any) -> Any:
    with guard.http_client(transport=fake.transport) as client:
        return client.post(url, **kwargs)


def assert_refused(sink: InMemorySink, code: str) -> dict[str, Any]:
    event = sink.calls()[-1]
    assert event["type"] == "refusal"
    assert event["status"] == "denied"
    assert event["error"] == code
    assert SECRET_EMAIL not in str(event)
    assert_chain_valid(sink)
    return event


def assert_failed(sink: InMemorySink, error: str) -> dict[str, Any]:
    """The last event records a failed attempt, by its error, without the value."""
    event = sink.calls()[-1]
    assert (event["type"], event["status"], event["error"]) == ("error", "error", error)
    assert SECRET_EMAIL not in str(sink.events)
    assert_chain_valid(sink)
    return event


class TestRequests:
    def test_host_not_in_policy(
        self, guard: aiguard.Guard, sink: InMemorySink, fake: FakeModel
    ) -> None:
        with (
            guard.context(subject="s", purpose="inference"),
            pytest.raises(aiguard.UnknownDestination, match="destination the policy does not name"),
        ):
            post(
                guard,
                fake,
                "https://evil.example.org/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": SECRET_EMAIL}]},
            )
        assert fake.requests == []
        event = assert_refused(sink, "unknown_destination")
        assert event["server.address"] == "evil.example.org"

    def test_lookalike_host_and_path_prefix_do_not_match(
        self, guard: aiguard.Guard, fake: FakeModel
    ) -> None:
        for url in (
            "https://api.openai.com.evil.org/v1/chat/completions",
            "http://api.openai.com/v1/chat/completions",
            "https://api.openai.com:8443/v1/chat/completions",
            "https://api.openai.com/v10/chat/completions",
        ):
            with guard.context(purpose="inference"), pytest.raises(aiguard.UnknownDestination):
                post(guard, fake, url, json={"model": "gpt-4o", "messages": []})
        assert fake.requests == []

    def test_unapproved_destination(
        self, guard: aiguard.Guard, sink: InMemorySink, fake: FakeModel
    ) -> None:
        with (
            guard.context(purpose="inference"),
            pytest.raises(aiguard.PolicyDenied, match="not approved"),
        ):
            post(
                guard,
                fake,
                "https://llm.example.net/v1/chat/completions",
                json={"model": "m", "messages": []},
            )
        assert fake.requests == []
        assert_refused(sink, "policy_denied")

    def test_body_not_json(self, guard: aiguard.Guard, sink: InMemorySink, fake: FakeModel) -> None:
        with (
            guard.context(purpose="inference"),
            pytest.raises(aiguard.MalformedPayload, match="not valid JSON") as caught,
        ):
            post(
                guard,
                fake,
                content=f'{{"messages": "{SECRET_EMAIL}"'.encode(),
                headers={"content-type": "application/json"},
            )
        assert SECRET_EMAIL not in str(caught.value)
        assert fake.requests == []
        assert_refused(sink, "malformed_payload")

    def test_body_with_an_integer_too_long_to_read(
        self, guard: aiguard.Guard, sink: InMemorySink, fake: FakeModel
    ) -> None:
        # Valid JSON, but Python refuses integers over its digit limit: the error says
        # that, not "not valid JSON (line ?, column ?)".
        body = f'{{"messages": "{SECRET_EMAIL}", "n": {"7" * 5000}}}'
        with (
            guard.context(purpose="inference"),
            pytest.raises(
                aiguard.MalformedPayload, match="integer longer than Python reads"
            ) as caught,
        ):
            post(guard, fake, content=body.encode(), headers={"content-type": "application/json"})
        assert SECRET_EMAIL not in str(caught.value)
        assert "line ?" not in str(caught.value)
        assert fake.requests == []
        assert_refused(sink, "malformed_payload")

    def test_body_not_utf8(self, guard: aiguard.Guard, sink: InMemorySink, fake: FakeModel) -> None:
        with (
            guard.context(purpose="inference"),
            pytest.raises(aiguard.MalformedPayload, match="UTF-8"),
        ):
            post(
                guard,
                fake,
                content=b'{"m": "\xff\xfe"}',
                headers={"content-type": "application/json"},
            )
        assert fake.requests == []
        assert_refused(sink, "malformed_payload")

    def test_compressed_or_unknown_bodies_are_not_sent(
        self, guard: aiguard.Guard, fake: FakeModel
    ) -> None:
        with guard.context(purpose="inference"):
            with pytest.raises(aiguard.MalformedPayload, match="compressed"):
                post(
                    guard,
                    fake,
                    content=b"\x1f\x8b...",
                    headers={"content-encoding": "gzip", "content-type": "application/json"},
                )
            with pytest.raises(aiguard.MalformedPayload, match="cannot inspect"):
                post(
                    guard,
                    fake,
                    content=SECRET_EMAIL.encode(),
                    headers={"content-type": "text/plain"},
                )
        assert fake.requests == []

    def test_unknown_purpose(
        self, guard: aiguard.Guard, sink: InMemorySink, fake: FakeModel
    ) -> None:
        with (
            guard.context(purpose="marketing"),
            pytest.raises(aiguard.PolicyDenied, match="unknown purpose 'marketing'"),
        ):
            post(guard, fake, json={"model": "gpt-4o", "messages": []})
        assert fake.requests == []
        assert_refused(sink, "policy_denied")

    def test_no_context_at_all_is_denied(self, guard: aiguard.Guard, fake: FakeModel) -> None:
        with pytest.raises(aiguard.PolicyDenied, match="no purpose"):
            post(guard, fake, json={"model": "gpt-4o", "messages": []})
        assert fake.requests == []

    def test_missing_subject_where_consent_is_required(
        self, guard: aiguard.Guard, sink: InMemorySink, fake: FakeModel
    ) -> None:
        with (
            guard.context(purpose="model_training", use_for_training=True),
            pytest.raises(aiguard.ConsentRequired, match="no subject"),
        ):
            post(guard, fake, json={"model": "gpt-4o", "messages": []})
        assert fake.requests == []
        assert_refused(sink, "consent_required")

    def test_unreachable_consent_store_fails_closed(
        self, policy: aiguard.Policy, fake: FakeModel
    ) -> None:
        class Broken(aiguard.InMemoryConsentStore):
            def current(self, *args: Any, **kwargs: Any) -> Any:
                raise ConnectionError("down")

        sink = InMemorySink()
        guard = aiguard.Guard(policy, consent=Broken(), sinks=[sink])
        with (
            guard.context(subject="s", purpose="model_training", use_for_training=True),
            pytest.raises(aiguard.ConsentRequired, match="could not be read"),
        ):
            post(guard, fake, json={"model": "gpt-4o", "messages": []})
        assert fake.requests == []

    def test_unreachable_vault_fails_closed(self, policy: aiguard.Policy, fake: FakeModel) -> None:
        class Broken(aiguard.InMemoryVault):
            def tokenize(self, *args: Any, **kwargs: Any) -> str:
                raise ConnectionError("vault down")

        sink = InMemorySink()
        guard = aiguard.Guard(policy, vault=Broken(), sinks=[sink])
        with guard.context(subject="s", purpose="inference"), pytest.raises(aiguard.VaultError):
            post(
                guard,
                fake,
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": SECRET_EMAIL}]},
            )
        assert fake.requests == []
        assert_refused(sink, "vault_error")

    def test_fail_open_is_explicit_and_recorded(self, fake: FakeModel) -> None:
        class Broken(aiguard.InMemoryVault):
            def tokenize(self, *args: Any, **kwargs: Any) -> str:
                raise ConnectionError("vault down")

        policy = aiguard.Policy(
            destinations={
                "openai": aiguard.DestinationPolicy(
                    base_url="https://api.openai.com/v1",
                    approved=True,
                    purposes=["inference"],
                    fail_open=True,
                )
            }
        )
        sink = InMemorySink()
        guard = aiguard.Guard(policy, vault=Broken(), sinks=[sink])
        with guard.context(subject="s", purpose="inference"):
            post(
                guard,
                fake,
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": SECRET_EMAIL}]},
            )
        assert SECRET_EMAIL not in fake.requests[0].text
        assert "[REDACTED:email]" in fake.requests[0].text
        assert any("fail_open" in r for r in sink.calls()[0]["reasons"])

    def test_failing_required_sink_fails_the_call(
        self, policy: aiguard.Policy, fake: FakeModel
    ) -> None:
        sink = FlakySink()
        guard = aiguard.Guard(policy, sinks=[sink])
        sink.broken = True
        with (
            guard.context(subject="s", purpose="inference"),
            pytest.raises(aiguard.ProvenanceError),
        ):
            post(guard, fake, json={"model": "gpt-4o", "messages": []})


_SECRET_BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": SECRET_EMAIL}]}


class TestBlockedInContext:
    def test_a_value_only_the_whole_json_shows_is_blocked_before_anything_is_sent(
        self, sink: InMemorySink, fake: FakeModel
    ) -> None:
        """A blocked kind found only by reading tool arguments whole (its word is another
        key's value) refuses the call as a value found alone would: nothing goes out, and
        neither the error nor the event holds the value."""
        policy = parse_policy(
            '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
            'purposes = ["inference"]\n[actions.kinds]\nus_ssn = "block"\n'
        )
        guard = aiguard.Guard(policy, sinks=[sink])
        arguments = json.dumps({"id_type": "SSN", "id_number": "219099998"})
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        body = {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
            ],
        }
        with (
            guard.context(purpose="inference"),
            pytest.raises(aiguard.PolicyDenied, match="blocks values of kind 'us_ssn'") as caught,
        ):
            post(guard, fake, json=body)
        assert fake.requests == []
        assert "219099998" not in str(caught.value)
        event = sink.calls()[-1]
        assert (event["type"], event["error"]) == ("refusal", "policy_denied")
        assert "219099998" not in json.dumps(sink.events)


class TestUnexpectedFailures:
    """A failure that is not one of aiguard's typed errors still leaves the attempt in
    the log, with the class of the failure and never its text (a library's message can
    quote the values it choked on)."""

    def test_a_request_that_cannot_be_rebuilt_is_recorded_and_not_sent(
        self,
        guard: aiguard.Guard,
        sink: InMemorySink,
        fake: FakeModel,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        def broken(_body: Any) -> bytes:
            raise RuntimeError(SECRET_EMAIL)

        monkeypatch.setattr("aiguard.doors.transport.dumps_bytes", broken)
        with guard.context(subject="s", purpose="inference"), pytest.raises(RuntimeError):
            post(guard, fake, json=_SECRET_BODY)
        assert fake.requests == []
        assert_failed(sink, "RuntimeError")

    def test_an_answer_that_cannot_be_rebuilt_is_recorded_as_an_error(
        self,
        guard: aiguard.Guard,
        sink: InMemorySink,
        fake: FakeModel,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The model was called: the event says the call failed, not that it went well."""

        def broken(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError(SECRET_EMAIL)

        monkeypatch.setattr("aiguard.doors.transport._Exchange._response", broken)
        with guard.context(subject="s", purpose="inference"), pytest.raises(RuntimeError):
            post(guard, fake, json=_SECRET_BODY)
        assert len(fake.requests) == 1
        assert_no_raw_values(fake, [SECRET_EMAIL])
        assert assert_failed(sink, "RuntimeError")["http_status"] == 200
        assert [e["type"] for e in sink.calls()] == ["error"]


class TestDeepAnswers:
    """An answer nested deeper than the guard can walk is stopped with a typed error and
    recorded; it used to raise a bare RecursionError (on Python 3.11, a streamed event
    from about 600 levels, a whole answer from about 1,000). How deep an interpreter
    walks differs (3.13 walks the 600-level event), so each case is either read whole
    and passed on, or stopped: never a RecursionError."""

    @pytest.fixture
    def sent(self) -> list[bytes]:
        """What the upstream received."""
        return []

    @staticmethod
    def _client(guard: aiguard.Guard, body: bytes, content_type: str, sent: list[bytes]) -> Any:
        def upstream(request: httpx.Request) -> httpx.Response:
            sent.append(request.read())
            return httpx.Response(200, content=body, headers={"content-type": content_type})

        return guard.http_client(transport=httpx.MockTransport(upstream))

    @pytest.mark.parametrize("depth", [600, 1_000, 5_000])
    def test_a_streamed_event(
        self, guard: aiguard.Guard, sink: InMemorySink, sent: list[bytes], depth: int
    ) -> None:
        event = '{"x":' + "[" * depth + "]" * depth + "}"
        body = f"data: {event}\n\ndata: [DONE]\n\n".encode()
        client = self._client(guard, body, "text/event-stream", sent)
        try:
            with (
                guard.context(subject="s", purpose="inference"),
                client.stream("POST", URL, json=_SECRET_BODY) as answer,
            ):
                out = answer.read()
        except aiguard.MalformedPayload as exc:
            assert "nested too deeply" in str(exc)
            assert "Check what the upstream sends" in str(exc)
            assert_failed(sink, "MalformedPayload")
        else:
            assert json.loads(out.split(b"data: ")[1]) == json.loads(event)
            assert sink.calls()[-1]["status"] == "ok"
        assert len(sent) == 1
        assert SECRET_EMAIL.encode() not in sent[0]

    @pytest.mark.parametrize("depth", [1_000, 5_000])
    def test_a_whole_answer(
        self, guard: aiguard.Guard, sink: InMemorySink, sent: list[bytes], depth: int
    ) -> None:
        body = ('{"x":' + "[" * depth + "]" * depth + "}").encode()
        client = self._client(guard, body, "application/json", sent)
        try:
            with guard.context(subject="s", purpose="inference"):
                answer = client.post(URL, json=_SECRET_BODY)
        except aiguard.MalformedPayload as exc:
            assert "too deeply" in str(exc)
            assert_failed(sink, "malformed_payload")
        else:
            assert answer.json() == json.loads(body)
            assert sink.calls()[-1]["status"] == "ok"
        assert len(sent) == 1
        assert SECRET_EMAIL.encode() not in sent[0]


class TestPolicyFiles:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(aiguard.PolicyError, match="does not exist"):
            load_policy(tmp_path / "nope.toml")

    def test_toml_syntax_error_names_the_line(self) -> None:
        with pytest.raises(aiguard.PolicyError) as caught:
            parse_policy('mode = "enforce"\n[destinations.openai\nbase_url = 1\n')
        assert caught.value.line == 2

    def test_bad_value_names_key_and_line(self) -> None:
        text = (
            'mode = "enforce"\n'
            "[destinations.openai]\n"
            'base_url = "https://api.openai.com/v1"\n'
            'max_raw_level = "secret"\n'
        )
        with pytest.raises(aiguard.PolicyError) as caught:
            parse_policy(text, source="aiguard.toml")
        assert caught.value.key == "destinations.openai.max_raw_level"
        assert caught.value.line == 4
        assert "aiguard.toml:4" in str(caught.value)
        assert "unknown level" in str(caught.value)

    def test_unknown_key_is_reported(self) -> None:
        text = '[destinations.openai]\nbase_url = "https://x.test/v1"\naproved = true\n'
        with pytest.raises(aiguard.PolicyError, match="unknown key") as caught:
            parse_policy(text)
        assert caught.value.key == "destinations.openai.aproved"
        assert caught.value.line == 3

    def test_bad_pattern_in_array_table(self) -> None:
        text = (
            '[[patterns]]\nkind = "a"\nlevel = "sensitive"\nregex = "x"\n\n'
            '[[patterns]]\nkind = "b"\nlevel = "sensitive"\nregex = "(unclosed"\n'
        )
        with pytest.raises(aiguard.PolicyError, match="invalid regular expression") as caught:
            parse_policy(text)
        assert caught.value.key == "patterns.1.regex"
        assert caught.value.line == 9

    def test_unknown_purpose_in_destination(self) -> None:
        text = '[destinations.openai]\nbase_url = "https://x.test/v1"\npurposes = ["marketing"]\n'
        with pytest.raises(aiguard.PolicyError, match="unknown purpose 'marketing'"):
            parse_policy(text)

    def test_invalid_utf8_file(self, tmp_path: Path) -> None:
        path = tmp_path / "p.toml"
        path.write_bytes(b"mode = '\xff'\n")
        with pytest.raises(aiguard.PolicyError, match="cannot be read"):
            load_policy(path)


def test_unknown_destination_names_the_url_it_saw(
    guard: aiguard.Guard, sink: InMemorySink, fake: FakeModel
) -> None:
    """Origin and path, so the fix is obvious; never the query (keys travel there)."""
    url = "https://llm.internal.example:8443/v2/chat/completions?key=sk-secret-value"
    with (
        guard.context(subject="s", purpose="inference"),
        pytest.raises(aiguard.UnknownDestination) as caught,
    ):
        post(guard, fake, url, json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert caught.value.url == "https://llm.internal.example:8443/v2/chat/completions"
    assert "https://llm.internal.example:8443/v2/chat/completions" in caught.value.message
    assert "sk-secret-value" not in caught.value.message
    assert "sk-secret-value" not in json.dumps(sink.events)


def test_unknown_destination_url_hides_detected_values(
    guard: aiguard.Guard, fake: FakeModel
) -> None:
    url = f"https://unknown.example.org/users/{SECRET_EMAIL}/chat/completions"
    with guard.context(purpose="inference"), pytest.raises(aiguard.UnknownDestination) as caught:
        post(guard, fake, url, json={"model": "m", "messages": []})
    assert SECRET_EMAIL not in caught.value.message
    assert caught.value.url == "https://unknown.example.org/users/[EMAIL]/chat/completions"
