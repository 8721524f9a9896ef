"""Anthropic Messages (``/v1/messages`` and ``/v1/messages/count_tokens``).

``system`` as a string or text blocks, ``text`` blocks, ``tool_use`` input (a JSON
object, walked like any other) and ``tool_result`` content are all strings the walk
protects; tool names, ids and block types are structural.
"""

from __future__ import annotations

from .base import Adapter, PathSet

__all__ = ["MESSAGES"]

MESSAGES = Adapter(
    "anthropic.messages",
    "chat",
    # tool_use input is the model's (or the app's) own JSON: every key in it is data.
    free=PathSet(["$.messages[*].content[*].input", "$.content[*].input", "$.metadata"]),
)
