"""Loading a policy from TOML with errors that name the key path and the line."""

from __future__ import annotations

from pathlib import Path

from ..errors import PolicyError
from .model import Policy

__all__ = ["load_policy", "parse_policy"]


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
