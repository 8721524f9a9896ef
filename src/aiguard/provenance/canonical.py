"""Canonical JSON (RFC 8785) for hashing provenance events.

Events carry no floats and only ASCII keys, and for such documents a sorted, compact
``json.dumps`` without ASCII escaping produces exactly the RFC 8785 bytes, several
times faster than the general encoder. ``tests/test_canonical.py`` proves the
equivalence with property tests against the ``rfc8785`` reference implementation; the
fast path refuses anything outside that domain instead of guessing.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

__all__ = ["MAX_SAFE_INT", "CanonicalError", "canonical_bytes", "reference_canonical_bytes"]

MAX_SAFE_INT = 2**53 - 1

_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


class CanonicalError(ValueError):
    """The value is outside the float-free, ASCII-keyed domain of event documents."""


_SCALARS = (str, bool, type(None))


def _check(value: Any, path: str) -> None:
    """Refuse floats, unsafe integers, non-ASCII keys and foreign types.

    Iterative and path-free on the hot path; the path is rebuilt only for the error.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                raise CanonicalError(f"{_find(value, path, item)}: integer outside ±(2^53-1)")
        elif kind is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    raise CanonicalError(f"{path}: keys must be ASCII strings")
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is float:
            raise CanonicalError(f"{_find(value, path, item)}: floats are not allowed in events")
        elif isinstance(item, _SCALARS):
            continue
        elif isinstance(item, int):
            stack.append(int(item))
        else:
            raise CanonicalError(f"{path}: unsupported type {type(item).__name__}")


def _find(root: Any, path: str, target: Any) -> str:
    """The path of ``target`` inside ``root`` (for error messages only)."""
    if root is target:
        return path
    if isinstance(root, dict):
        for key, item in root.items():
            found = _find(item, f"{path}.{key}", target)
            if found:
                return found
    elif isinstance(root, (list, tuple)):
        for index, item in enumerate(root):
            found = _find(item, f"{path}[{index}]", target)
            if found:
                return found
    return ""


def canonical_bytes(document: Any) -> bytes:
    """RFC 8785 bytes of a float-free, ASCII-keyed JSON document."""
    _check(document, "$")
    return _encoder.encode(document).encode("utf-8")


def reference_canonical_bytes(document: Any) -> bytes:
    """The same bytes from the reference RFC 8785 implementation (slower, general)."""
    return rfc8785.dumps(document)
