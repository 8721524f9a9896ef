"""JSON the way the standard library reads and writes it, faster when orjson is there.

orjson is an optional dependency (the ``gateway`` and ``dev`` extras). Every streamed
event and every guarded body is parsed and, when something in it changed, written
again; with orjson that costs about a quarter. Whatever orjson refuses or would read
or write differently goes to the standard library, so results and errors are always
the standard library's (property tests in tests/test_streaming.py).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["ORJSON", "dumps", "dumps_bytes", "keys_unique", "loads", "read_whole"]


def _optional_orjson() -> Any:
    try:
        import orjson  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # the standard library does the same, at about four times the cost
        return None
    return orjson


#: The orjson module when it is installed, else None (also for other fast paths that
#: fall back to the standard library the same way).
ORJSON: Any = _optional_orjson()
#: 19 digits in a row: where an integer may no longer fit in 64 bits. Found as a run of
#: zeros in the bytes with every digit mapped to "0" (a regex costs ten times more).
_LONG_DIGITS = b"0" * 19
_DIGIT_MASK = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))


def loads(data: str) -> Any:
    """``json.loads(data)``. Whatever orjson refuses (numbers beyond 64 bits, NaN, lone
    surrogates, very deep nesting) is decoded by the standard library, so the result,
    and the error, is always the standard library's. orjson reads an integer beyond 64
    bits as a float instead of refusing it: data with such a long digit run goes to the
    standard library too."""
    if (
        ORJSON is not None
        and data.encode("utf-8", "surrogatepass").translate(_DIGIT_MASK).find(_LONG_DIGITS) == -1
    ):
        try:
            return ORJSON.loads(data)
        except ORJSON.JSONDecodeError:
            pass
    return json.loads(data, parse_float=_float, parse_constant=_NonFinite)


class _NonFinite(float):
    """NaN or an infinity read by `loads` (``NaN``, ``-Infinity``, ``1e400``).

    The standard library writes these back as it read them; orjson would write ``null``.
    orjson refuses a float subclass, so `dumps` hands a document holding one to the
    standard library."""

    __slots__ = ()


def _float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(value)


def dumps(obj: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))`` in meaning, for
    documents read by `loads`: the standard library reads the text back as the same
    document. Whatever orjson refuses (integers beyond 64 bits, lone surrogates,
    non-string keys, NaN and infinities, see `_NonFinite`) is written by the standard
    library. A float NaN that did not come from `loads` would be written as ``null``."""
    return dumps_bytes(obj).decode()


def dumps_bytes(obj: Any) -> bytes:
    """`dumps` as UTF-8 bytes."""
    if ORJSON is not None:
        try:
            raw: bytes = ORJSON.dumps(obj)
        except TypeError:
            pass
        else:
            return raw
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JSON's "\ud800") has no UTF-8: it is written as the escape
        # it was read from, which reads back as the same document.
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


class _RepeatedKey(Exception):
    """An object in the text names a key twice (raised inside the decoder, caught below)."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey
    return obj


_UNIQUE_KEYS = json.JSONDecoder(object_pairs_hook=_unique_object)


def keys_unique(text: str) -> bool:
    """Whether no object in the JSON ``text`` names a key twice.

    A parser keeps one value of a repeated key (the last, here; others keep the
    first), so text with one holds a value its parsed document does not: what was
    inspected is the document, and the text must not go on in its place. False also
    for text this parser cannot read to the end (nesting too deep): nothing vouches
    for it. About 5 µs for a 500-byte body, paid only where text would go on as it
    came.
    """
    try:
        _UNIQUE_KEYS.decode(text)
    except (_RepeatedKey, ValueError, RecursionError):
        return False
    return True


def read_whole(text: str, document: Any) -> bool:
    """Whether ``document``, which `loads` read from ``text``, holds all that ``text``
    holds, so that ``text`` may go on in its place: it is the document's own compact
    encoding (a provider's streamed events mostly are, checked in about half a
    microsecond), or no object in it repeats a key (`keys_unique`)."""
    return dumps(document) == text or keys_unique(text)
