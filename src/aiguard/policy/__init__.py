"""Policy model, loading and decisions."""

from __future__ import annotations

from .loader import load_policy, parse_policy
from .model import (
    BUILTIN_PURPOSES,
    Action,
    ActionsPolicy,
    DestinationPolicy,
    LegalBasis,
    PatternPolicy,
    Policy,
    PurposePolicy,
)

__all__ = [
    "BUILTIN_PURPOSES",
    "Action",
    "ActionsPolicy",
    "DestinationPolicy",
    "LegalBasis",
    "PatternPolicy",
    "Policy",
    "PurposePolicy",
    "load_policy",
    "parse_policy",
]
