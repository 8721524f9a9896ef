"""Passes the gate: approved destination, tokenized fields, guarded clients, opt-in training."""

from __future__ import annotations

import anthropic
import openai
from fastapi import FastAPI
from openai import AsyncOpenAI

from ._common import Reply, Ticket, guard

app = FastAPI()
http = guard.http_client()


def clients() -> tuple[object, ...]:
    shared = guard.async_http_client()
    return (
        AsyncOpenAI(api_key="test", http_client=shared),
        openai.OpenAI(api_key="test", http_client=guard.http_client()),
        anthropic.Anthropic(api_key="test", http_client=http),
    )


@app.post("/tickets/{customer_id}/reply")
@guard.endpoint(purpose="inference", destination="openai", subject_from="customer_id")
async def draft_reply(customer_id: str, ticket: Ticket) -> Reply:
    return Reply(text=ticket.message, agent_email="agent@example.com")


@app.post("/tickets/{customer_id}/learn")
@guard.endpoint(purpose="model_training", destination="openai", subject_from="customer_id")
def learn(customer_id: str, ticket: Ticket, use_for_training: bool = False) -> None:
    return None
