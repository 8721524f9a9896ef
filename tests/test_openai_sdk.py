"""The real OpenAI SDK through the guard's transport, against the fake model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

import aiguard
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid, assert_no_raw_values

openai = pytest.importorskip("openai")

RAW = {
    "email": "jane.roe@example.com",
    "card": "4111 1111 1111 1111",
    "phone": "+1 415 555 0134",
    "account": "ACC-12345678",
    "ssn": "123-45-6780",
}
MESSAGE = (
    f"Hi, I'm Jane Roe, account {RAW['account']}. Mail {RAW['email']}, call {RAW['phone']}. "
    f"Card {RAW['card']}, SSN {RAW['ssn']}."
)


def chat(client: Any, content: str = MESSAGE, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}], **kwargs
    )


class TestProtectedCall:
    def test_model_never_sees_raw_values_and_caller_gets_them_back(
        self, guard: aiguard.Guard, fake: FakeModel, make_client: Callable[..., Any]
    ) -> None:
        client = make_client(fake)
        with guard.context(subject="cust-42", tenant="acme", purpose="inference"):
            reply = chat(client)
        assert_no_raw_values(fake, RAW.values())
        assert reply.choices[0].message.content == "Echo: " + MESSAGE

    def test_one_verified_event_per_call(
        self,
        guard: aiguard.Guard,
        sink: InMemorySink,
        fake: FakeModel,
        make_client: Callable[..., Any],
    ) -> None:
        client = make_client(fake)
        with guard.context(subject="cust-42", tenant="acme", purpose="inference"):
            chat(client)
            chat(client, "no personal data here")
        calls = sink.calls()
        assert [e["type"] for e in calls] == ["call", "call"]
        assert calls[0]["findings"] == {
            "account": 1,
            "email": 1,
            "phone": 1,
            "credit_card": 1,
            "us_ssn": 1,
        }
        assert calls[0]["gen_ai.request.model"] == "gpt-4o-mini"
        assert calls[0]["gen_ai.response.model"] == "gpt-4o-mini"
        assert calls[0]["decision"] == "allow"
        assert calls[0]["legal_basis"] == "contract"
        assert calls[1].get("findings", {}) == {}
        assert_chain_valid(sink)

    def test_events_hold_no_raw_values_or_subject_id(
        self,
        guard: aiguard.Guard,
        sink: InMemorySink,
        fake: FakeModel,
        make_client: Callable[..., Any],
    ) -> None:
        client = make_client(fake)
        with guard.context(subject="cust-42", tenant="acme", purpose="inference"):
            chat(client)
        dumped = b"\n".join(r.line for r in sink.records).decode()
        for value in [*RAW.values(), "cust-42", "Jane Roe"]:
            assert value not in dumped
        event = sink.calls()[0]
        assert event["subject"].startswith("hmac-sha256:")
        assert event["input_digest"].startswith("hmac-sha256:")

    def test_same_value_same_token_within_scope_and_different_across_tenants(
        self, guard: aiguard.Guard, fake: FakeModel, make_client: Callable[..., Any]
    ) -> None:
        client = make_client(fake)
        for tenant in ("acme", "acme", "globex"):
            with guard.context(subject="cust-42", tenant=tenant, purpose="inference"):
                chat(client, f"mail {RAW['email']}")
        sent = [body["messages"][0]["content"] for body in fake.bodies]
        assert sent[0] == sent[1]
        assert sent[0] != sent[2]

    def test_retried_call_sends_identical_bodies_and_shares_request_id(
        self,
        guard: aiguard.Guard,
        sink: InMemorySink,
        fake: FakeModel,
        make_client: Callable[..., Any],
    ) -> None:
        client = make_client(fake, max_retries=2)
        fake.fail_next(2, status=500)
        with guard.context(subject="cust-42", tenant="acme", purpose="inference"):
            reply = chat(client)
        assert reply.choices[0].message.content == "Echo: " + MESSAGE
        assert len(fake.requests) == 3
        assert len({r.body for r in fake.requests}) == 1
        events = sink.calls()
        assert len(events) == 3
        assert len({e["request_id"] for e in events}) == 1
        assert [e["attempt"] for e in events] == [1, 2, 3]
        assert [e["status"] for e in events] == ["error", "error", "ok"]
        assert_chain_valid(sink)

    def test_separate_calls_get_separate_request_ids(
        self,
        guard: aiguard.Guard,
        sink: InMemorySink,
        fake: FakeModel,
        make_client: Callable[..., Any],
    ) -> None:
        client = make_client(fake)
        with guard.context(subject="cust-42", tenant="acme", purpose="inference"):
            chat(client)
            chat(client)
        ids = [e["request_id"] for e in sink.calls()]
        assert ids[0] != ids[1]

    def test_tokens_from_another_scope_are_not_restored(
        self, guard: aiguard.Guard, make_client: Callable[..., Any]
    ) -> None:
        first = FakeModel()
        with guard.context(subject="a", tenant="acme", purpose="inference"):
            chat(make_client(first), f"mail {RAW['email']}")
        token = first.bodies[0]["messages"][0]["content"].removeprefix("mail ")
        assert token.startswith("[EMAIL_")
        # The model of another tenant answers with that token: it must stay a token.
        replay = FakeModel(f"your address is {token}")
        with guard.context(subject="b", tenant="globex", purpose="inference"):
            reply = chat(make_client(replay), "what is my address?")
        assert reply.choices[0].message.content == f"your address is {token}"
        # Forged token-shaped text stays as it is too.
        forged = FakeModel("see [EMAIL_ZZZZ] and [CREDIT_CARD_0000]")
        with guard.context(subject="a", tenant="acme", purpose="inference"):
            reply = chat(make_client(forged), "hello")
        assert reply.choices[0].message.content == "see [EMAIL_ZZZZ] and [CREDIT_CARD_0000]"

    def test_tokens_from_an_earlier_turn_are_restored(
        self, guard: aiguard.Guard, make_client: Callable[..., Any]
    ) -> None:
        first = FakeModel()
        with guard.context(subject="a", tenant="acme", conversation="t1", purpose="inference"):
            chat(make_client(first), f"mail {RAW['email']}")
            token = first.bodies[0]["messages"][0]["content"].removeprefix("mail ")
            later = FakeModel(f"I wrote to {token}")
            reply = chat(make_client(later), "did you write to me?")
        assert reply.choices[0].message.content == f"I wrote to {RAW['email']}"

    def test_known_values_from_tagged_fields_are_protected(
        self, guard: aiguard.Guard, fake: FakeModel, make_client: Callable[..., Any]
    ) -> None:
        class Customer(BaseModel):
            name: Annotated[str, aiguard.Classified(aiguard.Level.SENSITIVE, "person")]
            plan: str

        customer = Customer(name="Maria Keller", plan="gold")
        with guard.context(subject="c1", tenant="acme", purpose="inference", known=[customer]):
            reply = chat(
                make_client(fake), "Maria Keller asks; reply to maria, Keller, MARIA KELLER"
            )
        assert_no_raw_values(fake, ["Maria Keller", "Keller", "MARIA KELLER"])
        sent = fake.bodies[0]["messages"][0]["content"]
        assert "[PERSON_" in sent
        assert "asks; reply to" in sent
        assert reply.choices[0].message.content.startswith("Echo: Maria Keller asks")

    def test_model_generated_secrets_are_redacted_in_the_answer(
        self, guard: aiguard.Guard, sink: InMemorySink, make_client: Callable[..., Any]
    ) -> None:
        leaky = FakeModel("Sure, use card 5500 0000 0000 0004 and key AKIAIOSFODNN7EXAMPLE")
        with guard.context(subject="a", tenant="acme", purpose="inference"):
            reply = chat(make_client(leaky), "hello")
        text = reply.choices[0].message.content
        assert "5500 0000 0000 0004" not in text
        assert "AKIAIOSFODNN7EXAMPLE" not in text
        assert "[REDACTED:credit_card]" in text
        assert sink.calls()[0]["leaks"] == {"credit_card": 1, "aws_access_key": 1}

    def test_httpx_and_httpx2_clients_both_work(self, guard: aiguard.Guard) -> None:
        for http in ("httpx", "httpx2"):
            pytest.importorskip(http)
            fake = FakeModel(http=http)
            client = openai.OpenAI(
                http_client=guard.http_client(transport=fake.transport),
                base_url="https://api.openai.com/v1",
                api_key="k",
                max_retries=0,
            )
            with guard.context(subject="a", tenant="acme", purpose="inference"):
                reply = chat(client)
            assert reply.choices[0].message.content == "Echo: " + MESSAGE
            assert_no_raw_values(fake, RAW.values())

    def test_default_client_has_the_sdk_timeouts(self, guard: aiguard.Guard) -> None:
        client = guard.http_client()
        assert client.timeout.read == 600
        assert client.timeout.connect == 5.0
        client.close()


class TestPolicyOutcomes:
    def test_training_without_consent_is_refused_and_recorded(
        self,
        guard: aiguard.Guard,
        sink: InMemorySink,
        fake: FakeModel,
        make_client: Callable[..., Any],
    ) -> None:
        client = make_client(fake)
        with (
            guard.context(
                subject="c2", tenant="acme", purpose="model_training", use_for_training=True
            ),
            pytest.raises(aiguard.ConsentRequired, match="no valid consent"),
        ):
            chat(client)
        assert fake.requests == []
        refusal = sink.calls()[-1]
        assert refusal["type"] == "refusal"
        assert refusal["decision"] == "deny"
        assert refusal["error"] == "consent_required"

    def test_training_needs_both_flag_and_consent(
        self, guard: aiguard.Guard, fake: FakeModel, make_client: Callable[..., Any]
    ) -> None:
        client = make_client(fake)
        guard.consent.grant("c1", "model_training", terms_version="2026-03")
        with (
            guard.context(subject="c1", tenant="acme", purpose="model_training"),
            pytest.raises(aiguard.ConsentRequired, match="use_for_training"),
        ):
            chat(client)
        with guard.context(
            subject="c1", tenant="acme", purpose="model_training", use_for_training=True
        ):
            chat(client)
        assert len(fake.requests) == 1
        guard.consent.withdraw("c1", "model_training")
        with (
            guard.context(
                subject="c1", tenant="acme", purpose="model_training", use_for_training=True
            ),
            pytest.raises(aiguard.ConsentRequired),
        ):
            chat(client)
        assert len(fake.requests) == 1

    def test_consent_snapshot_is_recorded(
        self,
        guard: aiguard.Guard,
        sink: InMemorySink,
        fake: FakeModel,
        make_client: Callable[..., Any],
    ) -> None:
        record = guard.consent.grant("c1", "model_training", terms_version="2026-03", form="f-7")
        with guard.context(
            subject="c1", tenant="acme", purpose="model_training", use_for_training=True
        ):
            chat(make_client(fake))
        consent = sink.calls()[-1]["consent"]
        assert consent["record_id"] == record.record_id
        assert consent["terms_version"] == "2026-03"
        assert consent["use_for_training"] is True

    def test_kill_switch_refuses_the_next_call(
        self,
        guard: aiguard.Guard,
        sink: InMemorySink,
        fake: FakeModel,
        make_client: Callable[..., Any],
    ) -> None:
        client = make_client(fake)
        with guard.context(subject="c1", tenant="acme", purpose="inference"):
            chat(client)
            guard.revoke("openai", reason="incident 17")
            with pytest.raises(aiguard.DestinationRevoked, match="incident 17"):
                chat(client)
            guard.reinstate("openai", reason="resolved")
            chat(client)
        assert len(fake.requests) == 2
        kinds = [e["type"] for e in sink.events]
        assert kinds.count("kill_switch") == 2
        assert_chain_valid(sink)

    def test_model_outside_the_allowed_patterns_is_refused(
        self, guard: aiguard.Guard, fake: FakeModel, make_client: Callable[..., Any]
    ) -> None:
        client = make_client(fake)
        with (
            guard.context(subject="c1", tenant="acme", purpose="inference"),
            pytest.raises(aiguard.PolicyDenied, match="model 'o3'"),
        ):
            client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "x"}])
        assert fake.requests == []

    def test_blocked_kind_is_refused(
        self, guard: aiguard.Guard, fake: FakeModel, make_client: Callable[..., Any]
    ) -> None:
        pem = (
            "-----BEGIN PRIVATE KEY-----\n"
            "MIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEA\n"
            "-----END PRIVATE KEY-----"
        )
        with (
            guard.context(subject="c1", tenant="acme", purpose="inference"),
            pytest.raises(aiguard.PolicyDenied, match="private_key") as caught,
        ):
            chat(make_client(fake), f"my key is {pem}")
        assert fake.requests == []
        assert "MIIBVAIBADAN" not in str(caught.value)

    def test_monitor_mode_records_but_allows(self, sink: InMemorySink, fake: FakeModel) -> None:
        policy = aiguard.Policy(
            mode="monitor",
            destinations={
                "openai": aiguard.DestinationPolicy(
                    base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
                )
            },
        )
        guard = aiguard.Guard(policy, sinks=[sink])
        client = openai.OpenAI(
            http_client=guard.http_client(transport=fake.transport),
            base_url="https://api.openai.com/v1",
            api_key="k",
            max_retries=0,
        )
        with guard.context(subject="c", tenant="acme", purpose="analytics"):
            chat(client)
        assert len(fake.requests) == 1
        assert sink.calls()[0]["reasons"][0].startswith("monitor: ")
        assert_no_raw_values(fake, [RAW["email"], RAW["card"], RAW["ssn"]])


def test_unsent_personal_data_below_the_output_rule_is_flagged(
    guard: aiguard.Guard, sink: InMemorySink, make_client: Callable[..., Any]
) -> None:
    """An answer naming an address the caller never sent keeps it, and the event says so."""
    chatty = FakeModel("Also ask bob.other@example.org, and mail it twice: bob.other@example.org")
    with guard.context(subject="a", tenant="acme", purpose="inference"):
        reply = chat(make_client(chatty), "hello")
    assert "bob.other@example.org" in reply.choices[0].message.content
    event = sink.calls()[-1]
    assert event["unsent_findings"] == {"email": 1}
    assert "leaks" not in event or event["leaks"] == {}


def test_observers_see_every_attempt_and_cannot_break_a_call(
    guard: aiguard.Guard, fake: FakeModel, make_client: Callable[..., Any]
) -> None:
    """Metrics and tracing hook in at `Guard.observers`; a failing observer is contained."""
    seen: list[tuple[str, str]] = []

    def count(call: Any, event_type: str, status: str, extra: Any) -> None:
        seen.append((event_type, status))

    def broken(call: Any, event_type: str, status: str, extra: Any) -> None:
        raise RuntimeError("observer bug")

    guard.observers += [broken, count]
    with guard.context(subject="a", tenant="acme", purpose="inference"):
        reply = chat(make_client(fake), "hello")
        with pytest.raises(aiguard.PolicyDenied):
            make_client(fake).chat.completions.create(
                model="o3", messages=[{"role": "user", "content": "x"}]
            )
    assert reply.choices[0].message.content == "Echo: hello"
    assert seen == [("call", "ok"), ("refusal", "denied")]
