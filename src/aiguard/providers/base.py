"""What every payload adapter shares: the `Adapter` record and JSON path sets.

An adapter says which API a request speaks (for the event's operation name), which
strings pass untouched beyond the structural keys, which strings of the answer get their
originals back, and whether the answer's text is itself JSON (structured output), so
that originals put back into it are JSON-escaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedPayload

__all__ = ["Adapter", "PathSet", "parse_json_text"]


class PathSet:
    """JSON paths such as ``$.history[*].text`` or ``$.options.*``; a path matches when it
    is the pattern or lies below it (``$.options`` matches ``$.options.a[0]``).

    The syntax is the one `map_strings` writes: ``.key`` and ``[index]``; ``*`` stands
    for any key, ``[*]`` for any index.
    """

    __slots__ = ("_patterns", "_regex")

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = tuple(patterns)
        parts = []
        for pattern in self._patterns:
            if not pattern.startswith("$"):
                raise ValueError(f"JSON path {pattern!r} must start with '$'")
            body = re.escape(pattern[1:])
            body = body.replace(r"\[\*\]", r"\[[0-9]+\]").replace(r"\*", r"[^.\[]+")
            parts.append(r"\$" + body)
        self._regex = (
            re.compile(r"(?:" + "|".join(parts) + r")(?:[.\[].*)?\Z", re.DOTALL) if parts else None
        )

    def __bool__(self) -> bool:
        return self._regex is not None

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._regex is not None and bool(self._regex.match(path))

    def __repr__(self) -> str:
        return f"PathSet({list(self._patterns)!r})"


def _false(_body: Any) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Adapter:
    """How aiguard reads one API's requests and answers."""

    #: ``openai.chat``, ``openai.responses``, ``anthropic.messages``, ``json`` ...
    name: str
    #: The event's ``gen_ai.operation.name``.
    operation: str
    #: Strings passed untouched besides the structural keys (generic adapter only).
    keep: PathSet | None = None
    #: Strings of the answer that get their originals back; None means every string.
    restore: PathSet | None = None
    #: User-defined JSON objects (tool input, metadata): every string in them is data.
    free: PathSet | None = None
    #: Given the request body: does the model answer JSON text (structured output)?
    json_answer: Callable[[Any], bool] = _false


def parse_json_text(text: str) -> Any:
    """The object or array a string holds as JSON text (tool arguments), else None.

    Only objects and arrays count: a string that is a bare JSON number or word is text.
    JSON text nested too deeply for the parser is a `MalformedPayload` (never a bare
    ``RecursionError``, never walked as plain text): it can be inspected neither way.
    """
    stripped = text.strip()
    if len(stripped) < 2 or (stripped[0], stripped[-1]) not in {("{", "}"), ("[", "]")}:
        return None
    try:
        value = json.loads(stripped)
    except RecursionError:
        raise MalformedPayload(
            "JSON text nested too deeply for aiguard to inspect it; nothing was passed on"
        ) from None
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None
