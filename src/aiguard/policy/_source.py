"""Where a key path sits in policy TOML text, for errors and findings that name a line."""

from __future__ import annotations

import re

__all__ = ["line_of"]

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"']+)\s*=")


def line_of(text: str, loc: list[str]) -> int | None:
    """Best-effort line of a key path: the deepest table header or key that matches it."""
    best: tuple[int, int] | None = None  # (matched depth, line)
    table: list[str] = []
    array_index: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header:
            table = [part.strip().strip("\"'") for part in header.group(1).split(".")]
            if raw.lstrip().startswith("[["):
                name = ".".join(table)
                array_index[name] = array_index.get(name, -1) + 1
                table = [*table, str(array_index[name])]
            depth = _prefix_depth(table, loc)
            if depth == len(table) and (best is None or depth > best[0]):
                best = (depth, number)
            continue
        key = _KEY.match(raw)
        if key:
            path = table + [part.strip("\"'") for part in key.group(1).split(".")]
            depth = _prefix_depth(path, loc)
            if depth == len(path) and (best is None or depth > best[0]):
                best = (depth, number)
    return best[1] if best else None


def _prefix_depth(path: list[str], loc: list[str]) -> int:
    depth = 0
    for a, b in zip(path, loc, strict=False):
        if a != b:
            break
        depth += 1
    return depth
