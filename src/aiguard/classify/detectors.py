"""Finding personal data and secrets in free text.

A detector is anything with ``detect(text) -> list[Finding]``. The built-in detector
(:class:`BuiltinDetector`, see ``_engine``) finds candidates with one cheap pass per
anchor class and validates each (Luhn and issuer ranges for cards, mod-97 for IBANs,
python-stdnum for national ids, ``phonenumbers`` for phone numbers, the stdlib
``ipaddress`` parser for addresses), so codes and ordinary words are not flagged.
:class:`PatternDetector` and :class:`RegexDetector` run plain regular expressions,
e.g. the policy's own ``[[patterns]]``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ._engine import MIN_SCORE, BuiltinDetector, _engine_for
from ._finding import Detector, Finding
from ._validators import luhn_valid
from .levels import Level, check_kind

__all__ = [
    "MIN_SCORE",
    "BuiltinDetector",
    "Detector",
    "Finding",
    "KnownValue",
    "KnownValuesDetector",
    "PatternDetector",
    "PatternSpec",
    "RegexDetector",
    "builtin_detector",
    "detect",
    "luhn_valid",
    "merge_findings",
]


Validator = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """One pattern: a compiled regex, a validator of the candidate, and a cheap pre-check."""

    kind: str
    level: Level
    regex: re.Pattern[str]
    validate: Validator | None = None
    #: The text must contain one of these substrings for the regex to run at all.
    triggers: tuple[str, ...] = ()
    #: Run only when the text contains a digit.
    needs_digit: bool = False
    group: int = 0


_DIGIT = re.compile(r"\d")


class PatternDetector:
    """Runs a fixed set of patterns over text, validating each match if a validator is set."""

    __slots__ = ("_specs", "name")

    def __init__(self, specs: Sequence[PatternSpec], name: str = "pattern") -> None:
        self._specs = tuple(specs)
        self.name = name

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds this detector reports."""
        return frozenset(spec.kind for spec in self._specs)

    def detect(self, text: str) -> list[Finding]:
        """Findings of every pattern, unresolved."""
        found: list[Finding] = []
        has_digit: bool | None = None
        for spec in self._specs:
            if spec.triggers and not any(t in text for t in spec.triggers):
                continue
            if spec.needs_digit:
                if has_digit is None:
                    has_digit = _DIGIT.search(text) is not None
                if not has_digit:
                    continue
            for match in spec.regex.finditer(text):
                start, end = match.span(spec.group)
                if spec.validate is not None and not spec.validate(text[start:end]):
                    continue
                found.append(Finding(start, end, spec.kind, spec.level, self.name))
        return found


class RegexDetector(PatternDetector):
    """A custom pattern, e.g. from the policy's ``[[patterns]]`` table."""

    def __init__(self, kind: str, level: Level | str, regex: str, name: str = "policy") -> None:
        check_kind(kind)
        super().__init__([PatternSpec(kind, Level.parse(level), re.compile(regex))], name)


@dataclass(frozen=True, slots=True)
class KnownValue:
    """A value the application already knows is personal (a tagged field of its input)."""

    value: str
    kind: str
    level: Level


@lru_cache(maxsize=256)
def _known_regex(values: tuple[str, ...]) -> re.Pattern[str]:
    parts = []
    for value in sorted(values, key=len, reverse=True):
        escaped = re.escape(value)
        left = r"(?<!\w)" if value[0].isalnum() or value[0] == "_" else ""
        right = r"(?!\w)" if value[-1].isalnum() or value[-1] == "_" else ""
        parts.append(left + escaped + right)
    return re.compile("|".join(parts), re.IGNORECASE)


class KnownValuesDetector:
    """Finds values the caller declared (tagged fields), wherever and however cased they occur.

    A person's name is also found by its parts, so "Jane" is protected when the
    field held "Jane Doe".
    """

    __slots__ = ("_by_folded", "_regex")

    def __init__(self, known: Iterable[KnownValue]) -> None:
        by_folded: dict[str, KnownValue] = {}
        for item in known:
            for value in _variants(item):
                folded = value.casefold()
                current = by_folded.get(folded)
                if current is None or item.level > current.level:
                    by_folded[folded] = KnownValue(value, item.kind, item.level)
        self._by_folded = by_folded
        self._regex = (
            _known_regex(tuple(v.value for v in by_folded.values())) if by_folded else None
        )

    def __bool__(self) -> bool:
        return self._regex is not None

    def detect(self, text: str) -> list[Finding]:
        """Every occurrence of a known value."""
        if self._regex is None:
            return []
        found = []
        for match in self._regex.finditer(text):
            known = self._by_folded.get(match.group().casefold())
            if known is not None:
                found.append(Finding(match.start(), match.end(), known.kind, known.level, "known"))
        return found


def _variants(item: KnownValue) -> list[str]:
    value = item.value.strip()
    if len(value) < 2:
        return []
    variants = [value]
    if item.kind == "person":
        variants.extend(
            part for part in re.split(r"[\s,]+", value) if len(part) >= 3 and part != value
        )
    return variants


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Resolve overlaps: a higher level wins, then the longer span, the higher score, the earlier.

    Returned in text order and never overlapping, so they can be replaced left to right;
    empty spans are dropped. Runs in O(n log n): the chosen spans are kept sorted and
    only the neighbours of a new one are checked.
    """
    ranked = sorted(
        (f for f in findings if f.end > f.start),
        key=lambda f: (-f.level, f.start - f.end, -f.score, f.start),
    )
    starts: list[int] = []
    chosen: list[Finding] = []
    for finding in ranked:
        # Spans starting before this one ends; the last of them is the only one that can
        # reach into it, because the chosen spans do not overlap each other.
        i = bisect_left(starts, finding.end)
        if i and chosen[i - 1].end > finding.start:
            continue
        starts.insert(i, finding.start)
        chosen.insert(i, finding)
    return chosen


def builtin_detector(
    *,
    kinds: Iterable[str] | None = None,
    locales: Iterable[str] | None = None,
    levels: Mapping[str, Level | str] | None = None,
) -> BuiltinDetector:
    """The built-in detector (shared and compiled once per configuration).

    ``kinds`` limits what it reports, ``locales`` which national ids and phone regions
    it knows (None: every registered locale pack), ``levels`` overrides default levels
    per kind (e.g. the policy's).
    """
    return _engine_for(
        frozenset(kinds) if kinds is not None else None,
        tuple(locales) if locales is not None else None,
        tuple(sorted((k, Level.parse(lv)) for k, lv in (levels or {}).items())),
    )


def detect(
    text: str,
    kinds: Iterable[str] | None = None,
    locales: Iterable[str] | None = None,
    *,
    detectors: Sequence[Detector] | None = None,
) -> list[Finding]:
    """Find personal data and secrets in ``text``: sorted, non-overlapping findings.

    Offsets index the Python string you passed, even when the value was written with
    full-width digits or had invisible characters inside. ``kinds`` limits the result
    to those kinds (``["email", "iban"]``), ``locales`` the national ids and phone
    regions (``["de", "fr"]``; None means all). ``detectors`` replaces the built-in
    detector, e.g. to add an NER plug-in::

        detect(text, detectors=[builtin_detector(), PresidioDetector()])
    """
    active: Sequence[Detector] = (
        (builtin_detector(kinds=kinds, locales=locales),) if detectors is None else detectors
    )
    found: list[Finding] = []
    for detector in active:
        found.extend(detector.detect(text))
    if detectors is not None and kinds is not None:
        wanted = frozenset(kinds)
        found = [f for f in found if f.kind in wanted]
    return merge_findings(found)
