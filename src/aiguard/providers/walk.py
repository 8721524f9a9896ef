"""Walking provider JSON: every string is data unless its key is structural.

Protecting every string value, not only ``messages[].content``, is what keeps data from
slipping out through a field nobody thought of (``user``, ``metadata``, tool
arguments, vendor extensions). Only fields that are identifiers or enum-like values
pass untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container
from typing import Any

__all__ = [
    "STRUCTURAL_KEYS",
    "Scalar",
    "kept_tool_paths",
    "map_all_strings",
    "map_strings",
    "scalar_spans",
    "tool_call_arguments",
]

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


# Blocks whose ``input`` is a tool's arguments: Anthropic's ``tool_use``,
# ``server_tool_use`` and ``mcp_tool_use``, the Responses API's ``custom_tool_call``.
_INPUT_TOOL_CALLS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use", "custom_tool_call"})


def tool_call_arguments(node: dict[Any, Any]) -> tuple[str | None, str] | None:
    """``(tool name, key of its arguments)`` when ``node`` is a model's call of a tool.

    Known by shape, whatever the API: a chat tool call's ``function`` and a legacy
    ``function_call``, a Responses ``function_call`` or ``mcp_call`` item (a ``name``
    beside ``arguments``), and an Anthropic ``tool_use`` block or a Responses
    ``custom_tool_call`` (its ``input``). The name is None when the object has none.
    """
    if "arguments" in node:
        name = node.get("name")
        if name.__class__ is str:
            return name, "arguments"
    if "input" in node and node.get("type") in _INPUT_TOOL_CALLS:
        name = node.get("name")
        return (name if name.__class__ is str else None), "input"
    return None


def kept_tool_paths(
    node: Any, restores: Callable[[str | None], bool], path: str = "$"
) -> list[str]:
    """The paths (as `map_strings` writes them) of the arguments of every tool call in
    ``node`` whose tool ``restores`` says does not get its originals back."""
    found: list[str] = []
    pending: list[tuple[Any, str]] = [(node, path)]
    while pending:
        item, here = pending.pop()
        if isinstance(item, dict):
            call = tool_call_arguments(item)
            skip = None
            if call is not None and not restores(call[0]):
                skip = call[1]
                found.append(f"{here}.{skip}")
            pending.extend((v, f"{here}.{k}") for k, v in item.items() if k != skip)
        elif isinstance(item, list):
            pending.extend((v, f"{here}[{i}]") for i, v in enumerate(item))
    return found


def map_strings(
    node: Any,
    transform: Callable[[str, str], str],
    path: str = "$",
    key: str | None = None,
    free: Container[str] | None = None,
    *,
    keys: Callable[[str, str], str] | None = None,
    plain_keys: Container[str] = (),
    on_free: Callable[[str, Any], Any] | None = None,
) -> Any:
    """``node`` with every non-structural string passed through ``transform``.

    ``transform`` receives the JSON path (for findings and errors) and the string.
    Below a path in ``free`` (user-defined JSON such as a tool's input object, where a
    key named ``id`` or ``type`` is data like any other) every string is transformed.
    ``keys``, when given, transforms object keys the same way (an answer can carry a
    value as a key: ``{"jane@example.com": {...}}``); it receives the key's own path.
    Keys in ``plain_keys`` (known to hold nothing) are not passed to it.
    Containers are copied only where a string changed: when nothing changed, ``node``
    itself comes back, so a caller can tell "untouched" by identity and skip
    re-encoding it. ``on_free``, when given, sees each object at a path in ``free``
    whole before its strings are walked, and returns it or a changed copy.
    """
    return _walk(node, transform, path, key, free, False, keys, plain_keys, on_free)


def map_all_strings(
    node: Any,
    transform: Callable[[str, str], str],
    path: str = "$",
    *,
    keys: Callable[[str, str], str] | None = None,
    plain_keys: Container[str] = (),
) -> Any:
    """Like `map_strings`, but no key is structural: for JSON the user defined."""
    return _walk(node, transform, path, None, None, True, keys, plain_keys)


def _walk(
    node: Any,
    transform: Callable[[str, str], str],
    path: str,
    key: str | None,
    free: Container[str] | None,
    everything: bool,
    keys: Callable[[str, str], str] | None,
    plain_keys: Container[str],
    on_free: Callable[[str, Any], Any] | None = None,
) -> Any:
    if isinstance(node, str):
        if not everything and key is not None and key in STRUCTURAL_KEYS:
            return node
        return transform(path, node)
    if isinstance(node, dict):
        if not everything and free and path in free:
            everything = True
            if on_free is not None:
                node = on_free(path, node)
        changed: dict[Any, Any] | None = None
        renamed: dict[str, str] | None = None
        for k, v in node.items():
            here = f"{path}.{k}"
            if keys is not None and type(k) is str and k not in plain_keys:
                new_key = keys(here, k)
                if new_key is not k:
                    if renamed is None:
                        renamed = {}
                    renamed[k] = new_key
            new = _walk(v, transform, here, k, free, everything, keys, plain_keys, on_free)
            if new is not v:
                if changed is None:
                    changed = dict(node)
                changed[k] = new
        out = node if changed is None else changed
        if renamed is not None:
            # In order; two keys redacted alike keep the later value (no value leaks).
            out = {renamed.get(k, k) if type(k) is str else k: v for k, v in out.items()}
        return out
    if isinstance(node, list):
        items: list[Any] | None = None
        for i, v in enumerate(node):
            new = _walk(
                v, transform, f"{path}[{i}]", key, free, everything, keys, plain_keys, on_free
            )
            if new is not v:
                if items is None:
                    items = list(node)
                items[i] = new
        return node if items is None else items
    return node


#: A string or number of a document as `scalar_spans` writes it: its span in the text,
#: its JSON path, and the container and key (or index) it is stored under.
Scalar = tuple[int, int, str, Any, Any]


def scalar_spans(node: dict[Any, Any] | list[Any], path: str = "$") -> tuple[str, list[Scalar]]:
    """``node`` written as ``json.dumps(node, ensure_ascii=False)`` writes it, and where
    in that text each string and number value is (keys are not values here).

    What a scan of the whole text finds can then be traced to the value that holds it.
    """
    parts: list[str] = []
    scalars: list[Scalar] = []
    size = 0

    def emit(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)

    def walk(value: Any, here: str, container: Any, key: Any) -> None:
        if isinstance(value, dict):
            emit("{")
            for i, (k, v) in enumerate(value.items()):
                emit(", " if i else "")
                emit(json.dumps(k if isinstance(k, str) else str(k), ensure_ascii=False))
                emit(": ")
                walk(v, f"{here}.{k}", value, k)
            emit("}")
        elif isinstance(value, list):
            emit("[")
            for i, v in enumerate(value):
                emit(", " if i else "")
                walk(v, f"{here}[{i}]", value, i)
            emit("]")
        else:
            start = size
            emit(json.dumps(value, ensure_ascii=False))
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                scalars.append((start, size, here, container, key))

    walk(node, path, None, None)
    return "".join(parts), scalars
