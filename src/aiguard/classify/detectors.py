"""Finding personal data and secrets in free text.

A detector is anything with ``detect(text) -> list[Finding]``. The built-in pattern
detector validates every candidate (Luhn for cards, valid ranges for SSNs, the stdlib
``ipaddress`` parser for addresses) so codes and ordinary words are not flagged, and
skips a pattern cheaply when the text cannot contain it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, runtime_checkable

from .levels import Level, check_kind

__all__ = [
    "Detector",
    "Finding",
    "KnownValue",
    "KnownValuesDetector",
    "PatternDetector",
    "PatternSpec",
    "RegexDetector",
    "builtin_detector",
    "detect",
    "merge_findings",
]


@dataclass(frozen=True, slots=True)
class Finding:
    """A span ``text[start:end]`` of some kind and level. It holds no copy of the value."""

    start: int
    end: int
    kind: str
    level: Level
    detector: str = "pattern"

    def __len__(self) -> int:
        return self.end - self.start


@runtime_checkable
class Detector(Protocol):
    """Finds spans of personal data or secrets in a string."""

    def detect(self, text: str) -> list[Finding]:
        """Return findings in any order; overlaps are resolved by the caller."""
        ...


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


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 == 1 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0


_CARD_PREFIXES = re.compile(
    r"^(?:4|5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|3(?:0[0-5]|[68])|"
    r"6(?:011|5|4[4-9]|22)|35(?:2[89]|[3-8])|62|81|50|5[6-9]|6[37])"
)


def _card_valid(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return bool(_CARD_PREFIXES.match(digits)) and luhn_valid(digits)


def _ssn_valid(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (
        area not in {"000", "666"}
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
        and digits not in {"123456789", "078051120", "219099999"}
    )


def _ip_valid(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _ipv6_valid(candidate: str) -> bool:
    # "::" alone and clock times such as 12:30:45 are not addresses worth a token.
    return sum(c.isalnum() for c in candidate) >= 3 and _ip_valid(candidate)


_DATE_LIKE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")


def _phone_valid(candidate: str) -> bool:
    if _DATE_LIKE.match(candidate):
        return False
    digits = re.sub(r"\D", "", candidate)
    if not 7 <= len(digits) <= 15:
        return False
    # Long runs of one digit are placeholders, not numbers.
    return len(set(digits)) > 2


_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")

_BUILTIN_SPECS: tuple[PatternSpec, ...] = (
    PatternSpec(
        "private_key",
        Level.REGULATED,
        # Bounded body: the END line is searched inside the match, so no lazy scan over 1 MB.
        re.compile(
            r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----[A-Za-z0-9+/=\s:,.-]{0,16384}?"
            r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----"
        ),
        triggers=("-----BEGIN",),
    ),
    PatternSpec(
        "email",
        Level.SENSITIVE,
        re.compile(
            r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,63}(?![\w-])"
        ),
        triggers=("@",),
    ),
    PatternSpec(
        "aws_access_key",
        Level.REGULATED,
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Z0-9])"),
        triggers=("AKIA", "ASIA", "ABIA", "ACCA"),
    ),
    PatternSpec(
        "github_token",
        Level.REGULATED,
        re.compile(
            r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?!\w)"
        ),
        triggers=("gh", "github_pat_"),
    ),
    PatternSpec(
        "slack_token",
        Level.REGULATED,
        re.compile(
            r"(?<![\w-])xox[abposre]-[A-Za-z0-9-]{10,250}(?![\w-])"
            r"|https://hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{20,32}"
        ),
        triggers=("xox", "hooks.slack.com"),
    ),
    PatternSpec(
        "anthropic_key",
        Level.REGULATED,
        re.compile(r"(?<![\w-])sk-ant-[A-Za-z0-9]{2,12}-[A-Za-z0-9_-]{32,255}(?![\w-])"),
        triggers=("sk-ant-",),
    ),
    PatternSpec(
        "openai_key",
        Level.REGULATED,
        re.compile(
            r"(?<![\w-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,255}(?![\w-])"
        ),
        triggers=("sk-",),
    ),
    PatternSpec(
        "credit_card",
        Level.REGULATED,
        re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
        validate=_card_valid,
        needs_digit=True,
    ),
    PatternSpec(
        "us_ssn",
        Level.REGULATED,
        re.compile(r"(?<![\d-])\d{3}([- ])\d{2}\1\d{4}(?![\d-])"),
        validate=_ssn_valid,
        needs_digit=True,
    ),
    PatternSpec(
        "ip_address",
        Level.SENSITIVE,
        re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)"),
        validate=_ip_valid,
        needs_digit=True,
    ),
    PatternSpec(
        "ip_address",
        Level.SENSITIVE,
        re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:|:){2,7}(?::|[0-9A-Fa-f]{1,4})(?![\w:])"),
        validate=_ipv6_valid,
        triggers=(":",),
    ),
    PatternSpec(
        "phone",
        Level.SENSITIVE,
        re.compile(
            r"(?<![\w+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
            r"\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w-])"
            r"|(?<![\w+])\+\d{7,14}(?!\w)"
        ),
        validate=_phone_valid,
        needs_digit=True,
    ),
)

_DIGIT = re.compile(r"\d")


class PatternDetector:
    """Runs a fixed set of validated patterns over text."""

    __slots__ = ("_specs", "name")

    def __init__(self, specs: Sequence[PatternSpec], name: str = "pattern") -> None:
        self._specs = tuple(specs)
        self.name = name

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(spec.kind for spec in self._specs)

    def detect(self, text: str) -> list[Finding]:
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
    """Resolve overlaps: a higher level wins, then the longer span, then the earlier one.

    Returned in text order and never overlapping, so they can be replaced left to right.
    """
    ranked = sorted(findings, key=lambda f: (-f.level, -(f.end - f.start), f.start))
    chosen: list[Finding] = []
    for finding in ranked:
        if all(finding.end <= other.start or finding.start >= other.end for other in chosen):
            chosen.append(finding)
    chosen.sort(key=lambda f: f.start)
    return chosen


_BUILTIN = PatternDetector(_BUILTIN_SPECS, "pattern")


def builtin_detector() -> PatternDetector:
    """The shared built-in pattern detector (compiled once per process)."""
    return _BUILTIN


def detect(text: str, detectors: Sequence[Detector] | None = None) -> list[Finding]:
    """Find personal data and secrets in ``text`` with the built-in (or given) detectors."""
    active: Sequence[Detector] = detectors if detectors is not None else (_BUILTIN,)
    found: list[Finding] = []
    for detector in active:
        found.extend(detector.detect(text))
    return merge_findings(found)
