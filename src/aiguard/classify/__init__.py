"""Classification: levels, field tags, detectors."""

from __future__ import annotations

from ._engine import BuiltinDetector
from .detectors import (
    EVIDENCE_SCORE,
    MIN_SCORE,
    Detector,
    Finding,
    KnownValue,
    KnownValuesDetector,
    PatternDetector,
    RegexDetector,
    builtin_detector,
    detect,
    merge_findings,
)
from .kinds import DEFAULT_LEVELS, IdSpec, LocalePack, register_locale
from .levels import (
    Classified,
    FieldClass,
    Level,
    check_kind,
    classified_fields,
    classified_values,
    schema_fields,
)
from .structured import DepthLimitExceeded, JsonFinding, detect_json

__all__ = [
    "DEFAULT_LEVELS",
    "EVIDENCE_SCORE",
    "MIN_SCORE",
    "BuiltinDetector",
    "Classified",
    "DepthLimitExceeded",
    "Detector",
    "FieldClass",
    "Finding",
    "IdSpec",
    "JsonFinding",
    "KnownValue",
    "KnownValuesDetector",
    "Level",
    "LocalePack",
    "PatternDetector",
    "RegexDetector",
    "builtin_detector",
    "check_kind",
    "classified_fields",
    "classified_values",
    "detect",
    "detect_json",
    "merge_findings",
    "register_locale",
    "schema_fields",
]
