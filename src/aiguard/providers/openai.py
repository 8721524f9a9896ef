"""OpenAI-style APIs: Chat Completions, Completions, Responses, Embeddings, Moderations.

The same paths serve Azure OpenAI (``/openai/deployments/<name>/chat/completions``) and
OpenAI-compatible servers (vLLM, Ollama, LiteLLM): adapters are chosen by the end of the
URL path below the destination's base URL.

Every non-structural string of these bodies is protected (`map_strings`); tool and
function-call arguments, which are JSON inside a string, are parsed, protected value
by value and written back as JSON. The adapters add what the walk cannot know: whether
the answer's text is JSON (``response_format`` / ``text.format`` asks for it).
"""

from __future__ import annotations

from typing import Any

from .base import Adapter, PathSet

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "MODERATIONS", "RESPONSES"]

_JSON_FORMATS = frozenset({"json_object", "json_schema"})


def _chat_json(body: Any) -> bool:
    fmt = body.get("response_format") if isinstance(body, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") in _JSON_FORMATS


def _responses_json(body: Any) -> bool:
    text = body.get("text") if isinstance(body, dict) else None
    fmt = text.get("format") if isinstance(text, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") in _JSON_FORMATS


#: ``metadata`` holds the caller's own keys; an ``id`` there is data, not structure.
_METADATA = PathSet(["$.metadata"])

CHAT = Adapter("openai.chat", "chat", free=_METADATA, json_answer=_chat_json)
COMPLETIONS = Adapter("openai.completions", "text_completion")
RESPONSES = Adapter("openai.responses", "responses", free=_METADATA, json_answer=_responses_json)
EMBEDDINGS = Adapter("openai.embeddings", "embeddings")
MODERATIONS = Adapter("openai.moderations", "moderation")
