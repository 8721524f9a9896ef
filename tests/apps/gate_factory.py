"""An app built in a factory, as docs/testing.md recommends: handlers exist once it runs."""

from __future__ import annotations

from fastapi import FastAPI

import aiguard

from ._common import Reply, Ticket
from ._common import guard as default_guard


def create_app(guard: aiguard.Guard | None = None) -> FastAPI:
    guard = guard or default_guard
    app = FastAPI()

    @app.post("/tickets/{customer_id}/reply")
    @guard.endpoint(purpose="inference", destination="openai", subject_from="customer_id")
    async def draft_reply(customer_id: str, ticket: Ticket) -> Reply:
        return Reply(text=ticket.message, agent_email="agent@example.com")

    return app


def needs_arguments(guard: aiguard.Guard) -> FastAPI:
    return create_app(guard)


def needs_a_secret() -> FastAPI:
    """A factory that builds an SDK client eagerly: in CI, without the key, it raises."""
    raise RuntimeError("Missing credentials. Please pass an `api_key`")
