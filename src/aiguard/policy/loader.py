"""Loading a policy from TOML with errors that name the key path and the line."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import PolicyError
from .model import Policy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["load_policy", "parse_policy"]

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"']+)\s*=")


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raises `PolicyError` naming the key and line."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"policy file {source} does not exist", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {source} cannot be read: {exc}", source=source) from None
    return parse_policy(text, source=source)


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Validate policy TOML given as text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise PolicyError(f"{source}: not valid TOML: {exc}", line=line, source=source) from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        line = _line_of(text, [str(part) for part in first["loc"]])
        where = f"{source}:{line}" if line else source
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {_describe(err)}"
            for err in exc.errors()
        )
        raise PolicyError(
            f"{where}: invalid policy at '{key}': {problems}", key=key, line=line, source=source
        ) from None


def _describe(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (check its spelling against docs/policy.md)"
    if error["type"] == "missing":
        return "required key is missing"
    return str(error["msg"]).removeprefix("Value error, ")


def _line_of(text: str, loc: list[str]) -> int | None:
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
