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
    """``node`` with every non-structural string passed through ``transform``.

    ``transform`` receives the JSON path (for findings and errors) and the string.
    Below a path in ``free`` (user-defined JSON such as a tool's input object, where a
    key named ``id`` or ``type`` is data like any other) every string is transformed.
    Containers are copied only where a string changed: when nothing changed, ``node``
    itself comes back, so a caller can tell "untouched" by identity and skip
    re-encoding it.
    """
    if isinstance(node, str):
        if key is not None and key in STRUCTURAL_KEYS:
            return node
        return transform(path, node)
    if isinstance(node, dict):
        if free and path in free:
            return map_all_strings(node, transform, path)
        changed: dict[Any, Any] | None = None
        for k, v in node.items():
            new = map_strings(v, transform, f"{path}.{k}", k, free)
            if new is not v:
                if changed is None:
                    changed = dict(node)
                changed[k] = new
        return node if changed is None else changed
    if isinstance(node, list):
        items: list[Any] | None = None
        for i, v in enumerate(node):
            new = map_strings(v, transform, f"{path}[{i}]", key, free)
            if new is not v:
                if items is None:
                    items = list(node)
                items[i] = new
        return node if items is None else items
    return node


def map_all_strings(node: Any, transform: Callable[[str, str], str], path: str = "$") -> Any:
    """Like `map_strings`, but no key is structural: for JSON the user defined."""
    if isinstance(node, str):
        return transform(path, node)
    if isinstance(node, dict):
        changed: dict[Any, Any] | None = None
        for k, v in node.items():
            new = map_all_strings(v, transform, f"{path}.{k}")
            if new is not v:
                if changed is None:
                    changed = dict(node)
                changed[k] = new
        return node if changed is None else changed
    if isinstance(node, list):
        items: list[Any] | None = None
        for i, v in enumerate(node):
            new = map_all_strings(v, transform, f"{path}[{i}]")
            if new is not v:
                if items is None:
                    items = list(node)
                items[i] = new
        return node if items is None else items
    return node
