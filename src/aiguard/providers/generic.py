"""The generic JSON adapter: the policy names the paths that matter.

>>> [[destinations.acme.adapters]]
>>> path = "/generate"
>>> protect = ["$.prompt", "$.history[*].text"]
>>> keep = ["$.options.mode"]
>>> restore = ["$.output.text"]
"""

from __future__ import annotations

import fnmatch

from ..policy.model import JsonAdapterPolicy
from .base import Adapter, PathSet

__all__ = ["generic_adapter", "matches"]


def matches(spec: JsonAdapterPolicy, relative_path: str) -> bool:
    """Whether ``spec`` covers a URL path below the destination's base URL."""
    pattern = "/" + spec.path.lstrip("/")
    return fnmatch.fnmatchcase(relative_path, pattern)


def generic_adapter(spec: JsonAdapterPolicy) -> Adapter:
    return Adapter(
        f"json:{spec.path}",
        "other",
        keep=PathSet(spec.keep),
        restore=PathSet(spec.restore),
    )
