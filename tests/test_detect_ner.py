"""NER plug-ins: lazy, never downloading, clear errors, and the same Detector protocol."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from aiguard.classify import Detector, Level, builtin_detector, detect
from aiguard.classify.ner import GLiNERDetector, NERUnavailable, PresidioDetector


class _Result:
    def __init__(self, entity_type: str, start: int, end: int, score: float) -> None:
        self.entity_type, self.start, self.end, self.score = entity_type, start, end, score


class _FakeAnalyzer:
    def analyze(self, text: str, language: str, entities: list[str]) -> list[_Result]:
        i = text.index("Jane Doe")
        return [_Result("PERSON", i, i + 8, 0.85), _Result("PERSON", 0, 2, 0.1)]


class _FakeGliner:
    def predict_entities(self, text: str, labels: list[str], threshold: float) -> list[Any]:
        i = text.index("Berlin")
        return [{"start": i, "end": i + 6, "label": "location", "score": 0.9}]


class TestNER:
    def test_wrappers_are_detectors(self) -> None:
        """Both satisfy the Detector protocol without importing their libraries."""
        assert isinstance(PresidioDetector(), Detector)
        assert isinstance(GLiNERDetector(), Detector)

    @pytest.mark.skipif(
        importlib.util.find_spec("presidio_analyzer") is not None, reason="presidio installed"
    )
    def test_missing_presidio_names_the_extra(self) -> None:
        """Without presidio-analyzer the error says what to install."""
        with pytest.raises(NERUnavailable, match=r"aiguard\[presidio\]"):
            PresidioDetector().detect("Jane Doe")

    @pytest.mark.skipif(importlib.util.find_spec("gliner") is not None, reason="gliner installed")
    def test_missing_gliner_names_the_extra(self) -> None:
        """Without gliner the error says what to install."""
        with pytest.raises(NERUnavailable, match=r"aiguard\[gliner\]"):
            GLiNERDetector().detect("Jane in Berlin")

    def test_findings_merge_with_builtins(self) -> None:
        """NER findings are mapped to kinds, thresholded, and merged with pattern findings."""
        text = "Jane Doe (jane@example.com) lives in Berlin"
        found = detect(
            text,
            detectors=[
                builtin_detector(),
                PresidioDetector(analyzer=_FakeAnalyzer()),
                GLiNERDetector(loaded=_FakeGliner()),
            ],
        )
        assert [(text[f.start : f.end], f.kind, f.detector) for f in found] == [
            ("Jane Doe", "person", "presidio"),
            ("jane@example.com", "email", "pattern"),
            ("Berlin", "location", "gliner"),
        ]
        assert found[0].level is Level.SENSITIVE and found[0].score == 0.85
