"""Warns AIG009 under policies/gate.toml: an agent offers the model tools, and openai
restores every tool's call arguments (the default)."""

from __future__ import annotations

from typing import Any

import openai

from ._common import guard

client = openai.OpenAI(api_key="test", http_client=guard.http_client())
TOOLS: list[Any] = [{"type": "function", "function": {"name": "send_email", "parameters": {}}}]


@guard.endpoint(purpose="inference", destination="openai")
def agent(question: str) -> object:
    return client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": question}], tools=TOOLS
    )


def summary(question: str) -> object:
    # No tools offered: not a finding.
    return client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": question}]
    )
