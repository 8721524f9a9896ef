"""Fails AIG005: model clients built around the guard's back."""

from __future__ import annotations

import anthropic
import openai
from openai import OpenAI as Client

from ._common import Ticket, guard


def answer(ticket: Ticket) -> object:
    client = Client()
    return client.chat.completions.create(model="gpt-4o", messages=[])


def legacy(text: str) -> object:
    return openai.chat.completions.create(model="gpt-4o", messages=[])


def claude() -> object:
    return anthropic.AsyncAnthropic(api_key="x", http_client=None)


@guard.endpoint(purpose="inference", destination="openai")
def reply_unguarded(ticket: Ticket) -> object:
    return answer(ticket)
