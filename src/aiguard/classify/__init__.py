"""Classification: levels, field tags, detectors."""

from __future__ import annotations

from .detectors import (
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
from .levels import (
    Classified,
    FieldClass,
    Level,
    classified_fields,
    classified_values,
    schema_fields,
)

__all__ = [
    "Classified",
    "Detector",
    "FieldClass",
    "Finding",
    "KnownValue",
    "KnownValuesDetector",
    "Level",
    "PatternDetector",
    "RegexDetector",
    "builtin_detector",
    "classified_fields",
    "classified_values",
    "detect",
    "merge_findings",
    "schema_fields",
]
