"""Loading a policy from TOML with errors that name the key path and the line."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import PolicyError
from .model import Policy

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
    """Validate policy TOML given as text.

    Every error is collected (syntax, schema and meaning; see `aiguard.policy.lint`) and
    raised together as one `PolicyLintError` (a `PolicyError`) whose ``key`` and ``line``
    name the first and whose ``issues`` hold them all. Warnings do not raise.
    """
    from .lint import PolicyLintError, lint_text

    result = lint_text(text, source=source)
    if result.policy is None:
        raise PolicyLintError(source, result.errors)
    return result.policy


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
