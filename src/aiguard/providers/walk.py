"""Walking provider JSON: every string is data unless its key is structural.

Protecting every string value, not only ``messages[].content``, is what keeps data from
slipping out through a field nobody thought of (``user``, ``metadata``, tool
arguments, vendor extensions). Only fields that are identifiers or enum-like values
pass untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

__all__ = ["STRUCTURAL_KEYS", "map_all_strings", "map_strings"]

STRUCTURAL_KEYS = frozenset(
    {
        "model",
        "role",
        "type",
        "id",
        "object",
        "tool_call_id",
        "call_id",
        "finish_reason",
        "stop_reason",
        "encoding_format",
        "reasoning_effort",
        "service_tier",
        "system_fingerprint",
        "detail",
        "format",
        "voice",
        "modalities",
        "tool_choice",
        "logprobs",
        "status",
    }
)


def map_strings(
    node: Any,
    transform: Callable[[str, str], str],
    path: str = "$",
    key: str | None = None,
    free: Container[str] | None = None,
) -> Any:
    """Return a copy of ``node`` with every non-structural string passed through ``transform``.

    ``transform`` receives the JSON path (for findings and errors) and the string.
    Below a path in ``free`` (user-defined JSON such as a tool's input object, where a
    key named ``id`` or ``type`` is data like any other) every string is transformed.
    """
    if isinstance(node, str):
        if key is not None and key in STRUCTURAL_KEYS:
            return node
        return transform(path, node)
    if isinstance(node, dict):
        if free and path in free:
            return map_all_strings(node, transform, path)
        return {k: map_strings(v, transform, f"{path}.{k}", k, free) for k, v in node.items()}
    if isinstance(node, list):
        return [map_strings(v, transform, f"{path}[{i}]", key, free) for i, v in enumerate(node)]
    return node


def map_all_strings(node: Any, transform: Callable[[str, str], str], path: str = "$") -> Any:
    """Like `map_strings`, but no key is structural: for JSON the user defined."""
    if isinstance(node, str):
        return transform(path, node)
    if isinstance(node, dict):
        return {k: map_all_strings(v, transform, f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [map_all_strings(v, transform, f"{path}[{i}]") for i, v in enumerate(node)]
    return node
