"""Payload adapters: which strings of a provider's JSON carry data, and which are structure.

`adapter_for` picks the adapter of a request from its URL path below the destination's
base URL: the policy's generic JSON adapters first, then the built-in ones by the end
of the path. None means no adapter can read the request (see `docs/payloads.md`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import anthropic, openai
from .base import Adapter, PathSet, parse_json_text
from .generic import generic_adapter, matches
from .walk import STRUCTURAL_KEYS, map_strings

if TYPE_CHECKING:
    from ..policy.model import DestinationPolicy

__all__ = [
    "STRUCTURAL_KEYS",
    "Adapter",
    "PathSet",
    "adapter_for",
    "map_strings",
    "parse_json_text",
]

# Longest suffix first: "/chat/completions" before "/completions".
_BUILTIN: tuple[tuple[str, Adapter], ...] = (
    ("/chat/completions", openai.CHAT),
    ("/completions", openai.COMPLETIONS),
    ("/responses/input_tokens", openai.RESPONSES),
    ("/responses", openai.RESPONSES),
    ("/embeddings", openai.EMBEDDINGS),
    ("/moderations", openai.MODERATIONS),
    ("/messages/count_tokens", anthropic.MESSAGES),
    ("/messages", anthropic.MESSAGES),
)


def adapter_for(path: str, destination: DestinationPolicy | None) -> Adapter | None:
    """The adapter for a request to ``path``; ``destination`` brings the policy's own."""
    if destination is not None and destination.adapters:
        relative = _relative(path, destination.base_url)
        for spec in destination.adapters:
            if matches(spec, relative):
                return generic_adapter(spec)
    trimmed = path.rstrip("/")
    for suffix, adapter in _BUILTIN:
        if trimmed.endswith(suffix):
            return adapter
    return None


def _relative(path: str, base_url: str) -> str:
    from urllib.parse import urlsplit

    base = urlsplit(base_url).path.rstrip("/")
    if base and (path == base or path.startswith(base + "/")):
        return path[len(base) :] or "/"
    return path
