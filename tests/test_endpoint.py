"""The decorator door: ``@guard.endpoint(...)`` on plain, async and FastAPI handlers."""

from __future__ import annotations

import asyncio
import inspect
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

import aiguard
import aiguard.doors.endpoint
from aiguard import Classified, Level
from aiguard.context import CallContext, current_context
from aiguard.errors import ConsentRequired
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid, assert_no_raw_values

pytest.importorskip("fastapi")
pytest.importorskip("openai")
import fastapi
import fastapi.responses
import openai
from fastapi.testclient import TestClient

OPENAI_URL = "https://api.openai.com/v1"


class Customer(BaseModel):
    name: Annotated[str, Classified(Level.SENSITIVE, "person")]
    email: Annotated[str, Classified(Level.SENSITIVE, "email")]


class Ticket(BaseModel):
    customer_id: str
    customer: Customer
    message: str


class Reply(BaseModel):
    text: str


TICKET = {
    "customer_id": "cust-42",
    "customer": {"name": "Jane Doe", "email": "jane.doe@example.com"},
    "message": "Hi, Jane Doe here; my address is jane.doe@example.com. Where is my order?",
}
RAW = ["Jane Doe", "jane.doe@example.com"]


def seen(into: list[CallContext]) -> CallContext:
    context = current_context()
    assert context is not None
    into.append(context)
    return context


class TestSignatureAndRegistry:
    def test_keeps_name_doc_signature(self, aiguard_guard: aiguard.Guard) -> None:
        """The wrapper looks like the handler to humans, inspect and frameworks."""

        def handler(customer_id: str, ticket: Ticket, tone: str = "friendly") -> Reply:
            """Draft a reply."""
            return Reply(text=tone)

        wrapped = aiguard_guard.endpoint(purpose="inference", subject_from="customer_id")(handler)
        assert wrapped.__name__ == "handler" and wrapped.__doc__ == "Draft a reply."
        assert wrapped.__wrapped__ is handler  # type: ignore[attr-defined]
        params = inspect.signature(wrapped).parameters
        assert list(params) == ["customer_id", "ticket", "tone"]
        assert params["ticket"].annotation is Ticket  # string annotations resolved
        assert params["tone"].default == "friendly"

    def test_registry_records_models_and_tagged_fields(self, aiguard_guard: aiguard.Guard) -> None:
        """Each decorated handler is listed with purpose, destination and tagged fields."""

        @aiguard_guard.endpoint(purpose="inference", destination="openai")
        def summarize(ticket: Ticket, extra: list[Customer] | None = None) -> str:
            return ""

        info = next(e for e in aiguard.doors.endpoint.registry() if e.name.endswith(".summarize"))
        assert (info.purpose, info.destination, info.is_async, info.enabled) == (
            "inference",
            "openai",
            False,
            True,
        )
        assert [(m.argument, m.model) for m in info.models] == [
            ("ticket", Ticket),
            ("extra", Customer),
        ]
        assert {(f.path, f.kind) for f in info.fields} >= {
            ("ticket.customer.name", "person"),
            ("ticket.customer.email", "email"),
            ("extra.name", "person"),
        }
        assert info.models[0].model_name.endswith("test_endpoint.Ticket")

    def test_mistakes_fail_at_decoration(self, aiguard_guard: aiguard.Guard) -> None:
        """Unknown argument names, purposes and destinations raise when the module loads."""

        def handler(customer_id: str) -> None:
            return None

        with pytest.raises(TypeError, match="names no parameter"):
            aiguard_guard.endpoint(purpose="inference", subject_from="customer")(handler)
        with pytest.raises(ValueError, match="unknown purpose"):
            aiguard_guard.endpoint(purpose="marketing")
        with pytest.raises(ValueError, match="no destination"):
            aiguard_guard.endpoint(purpose="inference", destination="mistral")

    def test_generators_are_refused(self, aiguard_guard: aiguard.Guard) -> None:
        """A generator would outlive its context between yields, so it is refused."""

        def stream() -> Any:
            yield "x"

        with pytest.raises(TypeError, match="generator"):
            aiguard_guard.endpoint(purpose="inference")(stream)

    def test_disabled_returns_the_handler(self, aiguard_guard: aiguard.Guard) -> None:
        """``enabled=False`` leaves the handler as it is (and still lists it, as disabled)."""

        def handler(customer_id: str) -> CallContext | None:
            return current_context()

        same = aiguard_guard.endpoint(
            purpose="inference", subject_from="customer_id", enabled=False
        )(handler)
        assert same is handler and same("cust-1") is None
        info = next(e for e in aiguard.doors.endpoint.registry() if e.name.endswith(".handler"))
        assert info.enabled is False


class TestContext:
    def test_sync_handler_runs_in_context(self, aiguard_guard: aiguard.Guard) -> None:
        """Subject, purpose, destination and known values come from the decorator."""
        contexts: list[CallContext] = []

        @aiguard_guard.endpoint(purpose="inference", destination="openai", subject_from="cid")
        def handler(cid: str, ticket: Ticket) -> None:
            seen(contexts)

        handler("cust-1", Ticket.model_validate(TICKET))
        (ctx,) = contexts
        assert (ctx.subject, ctx.purpose, ctx.destination) == ("cust-1", "inference", "openai")
        assert ctx.use_for_training is False and ctx.tenant == "default"
        assert {(k.value, k.kind) for k in ctx.known} == {
            ("Jane Doe", "person"),
            ("jane.doe@example.com", "email"),
        }
        assert current_context() is None

    def test_async_handler_runs_in_context(self, aiguard_guard: aiguard.Guard) -> None:
        """Async handlers get the same context, and it ends with the call."""
        contexts: list[CallContext] = []

        @aiguard_guard.endpoint(purpose="inference", subject_from="ticket.customer_id")
        async def handler(ticket: Ticket) -> str:
            await asyncio.sleep(0)
            return seen(contexts).subject or ""

        assert inspect.iscoroutinefunction(handler)
        assert asyncio.run(handler(Ticket.model_validate(TICKET))) == "cust-42"
        assert contexts[0].known

    def test_sources_as_callables(self, aiguard_guard: aiguard.Guard) -> None:
        """Callables receive the bound arguments (defaults applied) for subject and tenant."""
        contexts: list[CallContext] = []

        @aiguard_guard.endpoint(
            purpose="inference",
            subject_from=lambda args: f"user-{args.arguments['uid']}",
            tenant_from=lambda args: args.arguments["org"],
            conversation_from="thread",
        )
        def handler(uid: int, org: str = "acme", thread: str | None = None) -> None:
            seen(contexts)

        handler(7)
        handler(8, "globex", thread="t-1")
        assert [(c.subject, c.tenant, c.conversation) for c in contexts] == [
            ("user-7", "acme", None),
            ("user-8", "globex", "t-1"),
        ]

    def test_use_for_training_from_argument(self, aiguard_guard: aiguard.Guard) -> None:
        """Only a literal True in an argument named use_for_training sets the flag."""
        contexts: list[CallContext] = []

        @aiguard_guard.endpoint(purpose="model_training", subject_from="cid")
        def handler(cid: str, use_for_training: Any = False) -> None:
            seen(contexts)

        handler("c", use_for_training=True)
        handler("c", use_for_training="yes")
        handler("c")
        assert [c.use_for_training for c in contexts] == [True, False, False]

    def test_missing_subject_is_not_inherited(self, aiguard_guard: aiguard.Guard) -> None:
        """A None subject argument means no subject, never the outer context's subject."""
        contexts: list[CallContext] = []

        @aiguard_guard.endpoint(purpose="inference", subject_from="cid")
        def handler(cid: str | None) -> None:
            seen(contexts)

        with aiguard_guard.context(subject="someone-else", tenant="acme"):
            handler(None)
        assert (contexts[0].subject, contexts[0].tenant) == (None, "acme")

    def test_bad_subject_type_raises(self, aiguard_guard: aiguard.Guard) -> None:
        """A subject source that yields something other than an id is a TypeError."""

        @aiguard_guard.endpoint(purpose="inference", subject_from="ticket")
        def handler(ticket: Ticket) -> None:
            return None

        with pytest.raises(TypeError, match="not a str id"):
            handler(Ticket.model_validate(TICKET))


def make_app(guard: aiguard.Guard, fake: FakeModel) -> fastapi.FastAPI:
    """A small FastAPI app whose routes call the real OpenAI SDK through the guard."""
    app = fastapi.FastAPI()
    client = openai.OpenAI(
        api_key="test-key",
        base_url=OPENAI_URL,
        max_retries=0,
        http_client=guard.http_client(transport=fake.transport),
    )
    async_client = openai.AsyncOpenAI(
        api_key="test-key",
        base_url=OPENAI_URL,
        max_retries=0,
        http_client=guard.async_http_client(transport=fake.transport),
    )

    def prefix(x_prefix: str = fastapi.Header(default="Reply")) -> str:
        return x_prefix

    def signature(x_signature: str = fastapi.Header(default="")) -> str:
        return x_signature

    @app.post("/tickets/{customer_id}/reply")
    @guard.endpoint(purpose="inference", destination="openai", subject_from="customer_id")
    def draft_reply(
        customer_id: str,
        ticket: Ticket,
        tone: str = "friendly",
        label: str = fastapi.Depends(prefix),
        footer: Annotated[str, fastapi.Depends(signature)] = "",
    ) -> Reply:
        completion = client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {"role": "system", "content": f"Answer in a {tone} tone."},
                {"role": "user", "content": ticket.message},
            ],
        )
        return Reply(text=f"{label}: {completion.choices[0].message.content}{footer}")

    @app.post("/tickets/{customer_id}/train")
    @guard.endpoint(purpose="model_training", destination="openai", subject_from="customer_id")
    async def train(customer_id: str, ticket: Ticket, use_for_training: bool = False) -> Reply:
        completion = await async_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": ticket.message}]
        )
        return Reply(text=completion.choices[0].message.content or "")

    @app.exception_handler(ConsentRequired)
    async def refused(request: fastapi.Request, exc: ConsentRequired) -> fastapi.Response:
        return fastapi.responses.JSONResponse({"error": exc.code}, status_code=403)

    return app


class TestFastAPI:
    def test_model_gets_tokens_response_gets_originals(
        self,
        aiguard_guard: aiguard.Guard,
        aiguard_fake_model: FakeModel,
        aiguard_sink: InMemorySink,
    ) -> None:
        """The route's customer data reaches the model only as tokens and comes back whole."""
        app = make_app(aiguard_guard, aiguard_fake_model)
        with TestClient(app) as http:
            response = http.post(
                "/tickets/cust-42/reply?tone=formal",
                json=TICKET,
                headers={"x-prefix": "Re", "x-signature": " -- Support"},
            )
        assert response.status_code == 200, response.text
        text = response.json()["text"]
        assert text.startswith("Re: Echo: Hi, Jane Doe here")
        assert "jane.doe@example.com" in text and text.endswith(" -- Support")
        assert_no_raw_values(aiguard_fake_model, RAW)
        sent = aiguard_fake_model.bodies[0]["messages"]
        assert "[PERSON_" in sent[1]["content"] and "[EMAIL_" in sent[1]["content"]
        assert "formal" in sent[0]["content"]
        (call,) = [e for e in aiguard_sink.calls() if e["type"] == "call"]
        assert call["purpose"] == "inference" and call["destination"] == "openai"
        assert call["subject"] == aiguard_guard.digest("subject", "default", "cust-42")
        assert call["findings"] == {"person": 1, "email": 1}
        assert_chain_valid(aiguard_sink)

    def test_fastapi_sees_parameters_defaults_and_depends(
        self, aiguard_guard: aiguard.Guard, aiguard_fake_model: FakeModel
    ) -> None:
        """The OpenAPI schema still shows the path, query and header parameters and body."""
        app = make_app(aiguard_guard, aiguard_fake_model)
        operation = app.openapi()["paths"]["/tickets/{customer_id}/reply"]["post"]
        params = {(p["in"], p["name"]): p for p in operation["parameters"]}
        assert set(params) == {
            ("path", "customer_id"),
            ("query", "tone"),
            ("header", "x-prefix"),
            ("header", "x-signature"),
        }
        assert params[("query", "tone")]["schema"]["default"] == "friendly"
        assert "Ticket" in str(operation["requestBody"])

    def test_async_route_and_consent(
        self,
        aiguard_guard: aiguard.Guard,
        aiguard_fake_model: FakeModel,
        aiguard_sink: InMemorySink,
    ) -> None:
        """An async route for training is refused without consent and allowed with it."""
        app = make_app(aiguard_guard, aiguard_fake_model)
        with TestClient(app) as http:
            url = "/tickets/cust-42/train"
            assert http.post(url, json=TICKET).status_code == 403  # flag not set
            refused = http.post(url + "?use_for_training=true", json=TICKET)
            assert refused.status_code == 403  # flag set, no consent yet
            aiguard_guard.consent.grant("cust-42", "model_training", terms_version="v1")
            allowed = http.post(url + "?use_for_training=true", json=TICKET)
        assert allowed.status_code == 200, allowed.text
        assert "Jane Doe" in allowed.json()["text"]
        assert len(aiguard_fake_model.requests) == 1
        assert_no_raw_values(aiguard_fake_model, RAW)
        assert [e["decision"] for e in aiguard_sink.calls()] == ["deny", "deny", "allow"]
        assert_chain_valid(aiguard_sink)
