"""Canonical JSON (RFC 8785) for hashing provenance events.

Events carry no floats and only ASCII keys, and for such documents a sorted, compact
``json.dumps`` without ASCII escaping produces exactly the RFC 8785 bytes, several
times faster than the general encoder; orjson with sorted keys, when it is installed,
produces the same bytes eight times faster again (about 1 µs for an event, against
7). ``tests/test_chain.py`` proves both equal with property tests against the
``rfc8785`` reference implementation; the fast path refuses anything outside that
domain instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import rfc8785

from .._json import ORJSON

__all__ = ["MAX_SAFE_INT", "CanonicalError", "canonical_bytes", "reference_canonical_bytes"]

MAX_SAFE_INT = 2**53 - 1

_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _make_encode_chunks() -> Callable[[Any, int], Sequence[str]]:
    """The C encoder called directly, made once; it returns the text in chunks.

    ``JSONEncoder.encode`` builds a new C encoder (and a circular-reference table) on every
    call, about a microsecond per event; documents reaching this are either built by
    aiguard or depth-checked by `_check`, so the table is not needed.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C accelerator
        return lambda document, _level: (_encoder.encode(document),)
    encoder: Callable[[Any, int], Sequence[str]] = make(
        None, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
    return encoder


#: Sorted, compact, non-ASCII kept, NaN refused: the RFC 8785 text, for the domain below,
#: as ``"".join(_encode_chunks(document, 0))``.
_encode_chunks = _make_encode_chunks()


def _standard_bytes(document: Any) -> bytes:
    """The canonical bytes of a document inside the domain, by the standard library."""
    return "".join(_encode_chunks(document, 0)).encode("utf-8")


#: Sorted keys; dataclasses and datetimes, which the standard library refuses, go to
#: ``default`` (which refuses them) instead of being written.
_ORJSON_OPTIONS = (
    ORJSON.OPT_SORT_KEYS | ORJSON.OPT_PASSTHROUGH_DATACLASS | ORJSON.OPT_PASSTHROUGH_DATETIME
    if ORJSON is not None
    else 0
)


def _trusted_bytes(document: Any) -> bytes:
    """The canonical bytes of a document already inside the domain (no check).

    orjson writes strings exactly as ``json.dumps(ensure_ascii=False)`` does and sorts
    ASCII keys as Python does. What it refuses (lone surrogates, integers beyond 64
    bits, non-string keys) goes to the standard library, which writes or refuses it as
    before."""
    if ORJSON is not None:
        try:
            raw: bytes = ORJSON.dumps(document, default=_refuse, option=_ORJSON_OPTIONS)
        except TypeError:
            pass
        else:
            return raw
    return _standard_bytes(document)


class CanonicalError(ValueError):
    """The value is outside the float-free, ASCII-keyed domain of event documents."""


_SCALARS = (str, bool, type(None))
#: Events are shallow; a deeper document is a mistake (or refers to itself).
MAX_DEPTH = 64


def _check(value: Any, path: str) -> None:
    """Refuse floats, unsafe integers, non-ASCII keys and foreign types.

    Iterative and path-free on the hot path (the path is rebuilt only for an error);
    strings, booleans, None and safe integers are settled where they are met, so only
    containers and odd types go through the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            try:
                ascii_keys = "".join(item).isascii()
            except TypeError:
                ascii_keys = False
            if not ascii_keys:
                raise CanonicalError(f"{path}: keys must be ASCII strings")
            children: Any = item.values()
        elif kind is list or kind is tuple:
            children = item
        else:
            children = (item,)
        for child in children:
            child_kind = type(child)
            if child_kind is str or child_kind is bool or child is None:
                continue
            if child_kind is int:
                if not -MAX_SAFE_INT <= child <= MAX_SAFE_INT:
                    raise CanonicalError(f"{_find(value, path, child)}: integer outside ±(2^53-1)")
                continue
            if child_kind is dict or child_kind is list or child_kind is tuple:
                if depth >= MAX_DEPTH:
                    raise CanonicalError(f"{path}: nested deeper than {MAX_DEPTH} (or circular)")
                stack.append((child, depth + 1))
                continue
            if child_kind is float:
                raise CanonicalError(
                    f"{_find(value, path, child)}: floats are not allowed in events"
                )
            if isinstance(child, _SCALARS):
                continue
            if isinstance(child, int):
                if not -MAX_SAFE_INT <= int(child) <= MAX_SAFE_INT:
                    raise CanonicalError(f"{_find(value, path, child)}: integer outside ±(2^53-1)")
                continue
            raise CanonicalError(f"{path}: unsupported type {type(child).__name__}")


def checked_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` without None values and empty dicts, checked against the domain.

    One pass over the top level, the flat bulk of an event, checking and copying at
    once; nested containers are walked by `_check`. Anything unusual is handed to the
    full walk, which names the offending path.
    """
    document: dict[str, Any] = {}
    nested: list[Any] = []
    for key, value in fields.items():
        kind = type(value)
        if kind is str or kind is bool:
            pass
        elif value is None:
            continue
        elif kind is int:
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                break
        elif kind is dict or kind is list or kind is tuple:
            if kind is dict and not value:
                continue
            nested.append(value)
        else:
            break
        document[key] = value
    else:
        try:
            ascii_keys = "".join(document).isascii()
        except TypeError:
            ascii_keys = False
        if ascii_keys:
            try:
                if nested:
                    _check(nested, "$")
                return document
            except CanonicalError:
                pass
    filtered = {
        key: value
        for key, value in fields.items()
        if value is not None and (type(value) is not dict or value)
    }
    _check(filtered, "$")
    return filtered


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
    return _trusted_bytes(document)


def reference_canonical_bytes(document: Any) -> bytes:
    """The same bytes from the reference RFC 8785 implementation (slower, general)."""
    return rfc8785.dumps(document)
