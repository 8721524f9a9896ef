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
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from ._engine import EVIDENCE_SCORE, MIN_SCORE, BuiltinDetector, _engine_for
from ._finding import Detector, Finding
from ._normalize import normalize
from ._validators import luhn_valid
from .levels import Level, check_kind

__all__ = [
    "EVIDENCE_SCORE",
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


def _key(text: str) -> str:
    """What two writings of one value share: letters and digits, no case, no accents."""
    decomposed = unicodedata.normalize("NFKD", normalize(text).text)
    return "".join(c for c in decomposed if c.isalnum()).casefold()


def _compact(text: str) -> str:
    """The letters and digits of ``text`` as written (composed), separators dropped."""
    return "".join(c for c in unicodedata.normalize("NFC", normalize(text).text) if c.isalnum())


def _unit_pattern(char: str) -> str:
    """One letter or digit of a known value, as it may be written (case, accent)."""
    base = _key(char)
    if not base or base == char.casefold():
        return re.escape(char)
    return f"(?:{re.escape(char)}|{re.escape(base)})"


# Between the letters and digits of a known value: separators, spaces, brackets and
# other punctuation, up to three ("536-22-8712", "(415) 555-0132", "DE89 3704 ...").
_BETWEEN = r"(?:[^\w\n]|_){0,3}"


def _value_pattern(compact: str) -> str:
    return _BETWEEN.join(_unit_pattern(c) for c in compact)


@lru_cache(maxsize=256)
def _known_regex(compacts: tuple[str, ...]) -> re.Pattern[str]:
    parts = [_value_pattern(c) for c in sorted(compacts, key=len, reverse=True)]
    alternation = "|".join(parts)
    return re.compile(rf"(?<![^\W_])(?:{alternation})(?![^\W_])", re.IGNORECASE)


class KnownValuesDetector:
    """Finds values the caller declared (tagged fields), however they are written.

    A known value matches across separators and spacing ("536228712" for
    "536-22-8712"), case, Unicode forms (full-width, decomposed accents, look-alike
    letters, invisible characters) and the other written forms of its kind: a phone
    number with or without its country code or trunk prefix, a date of birth in the
    usual numeric and month-name orders. A person's name is also found by its parts, so
    "Jane" is protected when the field held "Jane Doe".
    """

    __slots__ = ("_by_key", "_regex")

    def __init__(self, known: Iterable[KnownValue]) -> None:
        by_key: dict[str, KnownValue] = {}
        for item in known:
            for value in _variants(item):
                key = _key(value)
                if len(key) < 2:
                    continue
                current = by_key.get(key)
                if current is None or item.level > current.level:
                    by_key[key] = KnownValue(value, item.kind, item.level)
        self._by_key = by_key
        # The patterns keep each value's accents, so "é" matches "é" and a bare "e" (NFD).
        compacts = tuple(sorted({_compact(v.value) for v in by_key.values()}))
        self._regex = _known_regex(compacts) if by_key else None

    def __bool__(self) -> bool:
        return self._regex is not None

    def detect(self, text: str) -> list[Finding]:
        """Every occurrence of a known value."""
        if self._regex is None or not text:
            return []
        folded = normalize(text)
        found = []
        for match in self._regex.finditer(folded.text):
            known = self._by_key.get(_key(match.group()))
            if known is not None:
                start, end = folded.start(match.start()), folded.end(match.end(), text)
                found.append(Finding(start, end, known.kind, known.level, "known"))
        return found


_PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN")
_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december",
)  # fmt: skip
_ISO_DATE = re.compile(r"([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})\Z")
_DMY_DATE = re.compile(r"([0-9]{1,2})[-/.]([0-9]{1,2})[-/.]([0-9]{4})\Z")


def _phone_variants(value: str) -> list[str]:
    plus = value.lstrip().startswith("+")
    regions: tuple[str | None, ...] = (None,) if plus else _PHONE_REGIONS
    for region in regions:
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_possible_number(number):
            continue
        national = str(number.national_number)
        code = str(number.country_code)
        return [code + national, national, "0" + national, "00" + code + national]
    return []


def _date_variants(value: str) -> list[str]:
    m = _ISO_DATE.match(value.strip())
    if m is not None:
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        m = _DMY_DATE.match(value.strip())
        if m is None:
            return []
        day, month, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        return []
    name = _MONTH_NAMES[month - 1]
    out: list[str] = []
    for d in sorted({f"{day:02d}", str(day)}):
        for mo in sorted({f"{month:02d}", str(month)}):
            out.extend((f"{year}{mo}{d}", f"{d}{mo}{year}", f"{mo}{d}{year}"))
        for n in sorted({name, name[:3]}):
            out.extend((f"{d} {n} {year}", f"{n} {d} {year}"))
    return out


def _variants(item: KnownValue) -> list[str]:
    value = item.value.strip()
    if len(value) < 2:
        return []
    variants = [value]
    if item.kind == "person":
        variants.extend(
            part for part in re.split(r"[\s,]+", value) if len(part) >= 3 and part != value
        )
    elif item.kind == "phone":
        variants.extend(_phone_variants(value))
    elif item.kind in ("date_of_birth", "dob", "birth_date"):
        variants.extend(_date_variants(value))
    return variants


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Resolve overlaps: a higher level wins, then the longer span, the higher score, the earlier.

    Returned in text order and never overlapping, so they can be replaced left to right;
    empty spans are dropped. Runs in O(n log n): the chosen spans are kept sorted and
    only the neighbours of a new one are checked.
    """
    if isinstance(findings, list) and len(findings) < 2:
        return [f for f in findings if f.end > f.start]
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
    if detectors is None:
        # The default configuration skips the cache key's construction: for a short
        # message that lookup cost as much as scanning it.
        default = (
            _engine_for(None, None, ())
            if kinds is None and locales is None
            else builtin_detector(kinds=kinds, locales=locales)
        )
        return merge_findings(default.detect(text))
    found: list[Finding] = []
    for detector in detectors:
        found.extend(detector.detect(text))
    if kinds is not None:
        wanted = frozenset(kinds)
        found = [f for f in found if f.kind in wanted]
    return merge_findings(found)
