"""Optional NER detectors: Presidio's AnalyzerEngine and GLiNER, behind the same protocol.

Names, places and organisations need a model. These wrappers import their library on
the first ``detect`` call (so importing aiguard stays cheap), never download anything
(a missing package or model raises :class:`NERUnavailable` naming what to install),
and return ordinary :class:`Finding` objects that merge with the built-ins::

    detect(text, detectors=[builtin_detector(), GLiNERDetector("urchade/gliner_small-v2.1")])
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ._finding import Finding
from .levels import Level

__all__ = ["GLiNERDetector", "NERUnavailable", "PresidioDetector"]


class NERUnavailable(RuntimeError):
    """The NER library or its model is not installed; the message says what to install."""


#: Entity labels of the NER engines mapped to aiguard kinds and levels.
DEFAULT_ENTITIES: dict[str, tuple[str, Level]] = {
    "PERSON": ("person", Level.SENSITIVE),
    "LOCATION": ("location", Level.SENSITIVE),
    "ORGANIZATION": ("organization", Level.INTERNAL),
    "NRP": ("nationality", Level.SENSITIVE),
    "person": ("person", Level.SENSITIVE),
    "location": ("location", Level.SENSITIVE),
    "organization": ("organization", Level.INTERNAL),
    "address": ("postal_address", Level.SENSITIVE),
}


class PresidioDetector:
    """Presidio's analyzer (with its spaCy model) as an aiguard detector.

    ``pip install "aiguard[presidio]"`` and a spaCy model, e.g.
    ``python -m spacy download en_core_web_lg``; the detector refuses to start when the
    model is missing, because Presidio would otherwise try to download it.
    """

    def __init__(
        self,
        entities: Mapping[str, tuple[str, Level]] | None = None,
        *,
        language: str = "en",
        spacy_model: str = "en_core_web_lg",
        min_score: float = 0.5,
        analyzer: Any = None,
    ) -> None:
        self.entities = dict(entities or DEFAULT_ENTITIES)
        self.language = language
        self.spacy_model = spacy_model
        self.min_score = min_score
        self._analyzer = analyzer
        self._lock = threading.Lock()
        self.name = "presidio"

    def _load(self) -> Any:
        with self._lock:
            if self._analyzer is not None:
                return self._analyzer
            # import_module keeps the optional packages out of type checking and import time.
            try:
                spacy_util = importlib.import_module("spacy.util")
                presidio = importlib.import_module("presidio_analyzer")
                nlp_engine = importlib.import_module("presidio_analyzer.nlp_engine")
            except ImportError as exc:
                raise NERUnavailable(
                    f"PresidioDetector needs presidio-analyzer ({exc.name} is missing): "
                    'pip install "aiguard[presidio]"'
                ) from None
            if not spacy_util.is_package(self.spacy_model):
                raise NERUnavailable(
                    f"the spaCy model {self.spacy_model!r} is not installed and aiguard does "
                    f"not download at run time: python -m spacy download {self.spacy_model}"
                )
            provider = nlp_engine.NlpEngineProvider(
                nlp_configuration={
                    "nlp_engine_name": "spacy",
                    "models": [{"lang_code": self.language, "model_name": self.spacy_model}],
                }
            )
            self._analyzer = presidio.AnalyzerEngine(
                nlp_engine=provider.create_engine(), supported_languages=[self.language]
            )
            return self._analyzer

    def detect(self, text: str) -> list[Finding]:
        """Entities Presidio finds, mapped to kinds; unmapped entity types are dropped."""
        if not text:
            return []
        analyzer = self._analyzer if self._analyzer is not None else self._load()
        results = analyzer.analyze(
            text=text, language=self.language, entities=sorted(self.entities)
        )
        found = []
        for r in results:
            mapped = self.entities.get(r.entity_type)
            if mapped is not None and r.score >= self.min_score:
                found.append(Finding(r.start, r.end, mapped[0], mapped[1], self.name, r.score))
        return found


class GLiNERDetector:
    """A GLiNER model as an aiguard detector, loaded from the local cache only.

    ``pip install "aiguard[gliner]"`` and fetch the model once ahead of time (e.g.
    ``huggingface-cli download urchade/gliner_small-v2.1``), or pass a local directory.
    """

    def __init__(
        self,
        model: str = "urchade/gliner_small-v2.1",
        labels: Sequence[str] = ("person", "location", "organization", "address"),
        entities: Mapping[str, tuple[str, Level]] | None = None,
        *,
        threshold: float = 0.5,
        loaded: Any = None,
    ) -> None:
        self.model = model
        self.labels = list(labels)
        self.entities = dict(entities or DEFAULT_ENTITIES)
        self.threshold = threshold
        self._model = loaded
        self._lock = threading.Lock()
        self.name = "gliner"

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            try:
                gliner = importlib.import_module("gliner")
            except ImportError:
                raise NERUnavailable(
                    'GLiNERDetector needs the gliner package: pip install "aiguard[gliner]"'
                ) from None
            try:
                self._model = gliner.GLiNER.from_pretrained(self.model, local_files_only=True)
            except Exception as exc:
                raise NERUnavailable(
                    f"the GLiNER model {self.model!r} is not available locally "
                    f"({type(exc).__name__}) and aiguard does not download at run time: "
                    f"huggingface-cli download {self.model}"
                ) from None
            return self._model

    def detect(self, text: str) -> list[Finding]:
        """Entities GLiNER predicts for the configured labels."""
        if not text:
            return []
        model = self._model if self._model is not None else self._load()
        found = []
        for entity in model.predict_entities(text, self.labels, threshold=self.threshold):
            mapped = self.entities.get(entity["label"])
            if mapped is not None:
                found.append(
                    Finding(
                        int(entity["start"]),
                        int(entity["end"]),
                        mapped[0],
                        mapped[1],
                        self.name,
                        float(entity.get("score", 1.0)),
                    )
                )
        return found
