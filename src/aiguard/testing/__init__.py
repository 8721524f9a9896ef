"""Test support users import: a fake model, an in-memory sink, assertions, a pytest plugin.

>>> fake = FakeModel()
>>> client = openai.OpenAI(http_client=guard.http_client(transport=fake.transport), api_key="x")
>>> ...
>>> assert_no_raw_values(fake, ["jane@example.com"])
"""

from __future__ import annotations

from ..provenance.sinks import InMemorySink
from .assertions import assert_chain_valid, assert_no_raw_values
from .fake import Answer, FakeModel, RecordedRequest, ToolCall

__all__ = [
    "Answer",
    "FakeModel",
    "InMemorySink",
    "RecordedRequest",
    "ToolCall",
    "assert_chain_valid",
    "assert_no_raw_values",
]
