"""Policy lint: every mistake in a policy file at once, each with its key path and line.

`lint_text` / `lint_file` run three passes and report everything they find, so a
reviewer fixes a policy in one round instead of one error per run:

1. TOML syntax (the parser stops at the first syntax error, so that one is alone);
2. the schema: unknown keys, wrong types, unknown levels, actions and legal bases, all
   collected from one pydantic validation;
3. meaning, on the raw tables so it runs even when the schema pass failed: purposes
   named by destinations exist, consent-based purposes require consent, destinations
   do not contradict themselves or each other, required destination facts are there.

Errors make the policy unusable (`parse_policy` raises `PolicyLintError` listing them);
warnings are suspicious but legal, and fail only ``aiguard policy lint --strict``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ..errors import PolicyError
from ._source import line_of as _line_of
from .model import BUILTIN_PURPOSES, Policy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "LintIssue",
    "LintResult",
    "PolicyLintError",
    "lint_file",
    "lint_policy",
    "lint_text",
]

Severity = Literal["error", "warning"]

_CONSENT_BASES = {"consent", "explicit_consent"}
_STAGES = ("internal", "opt_in", "general")


@dataclass(frozen=True, slots=True)
class LintIssue:
    """One finding: how bad, where (dotted key path and 1-based line), what and why."""

    severity: Severity
    code: str
    key: str
    line: int | None
    message: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        key = self.key or "(top level)"
        return f"{where}: {self.severity}: {key}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "key": self.key,
            "line": self.line,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class LintResult:
    """Everything lint found in one policy; ``policy`` is set when it has no errors."""

    source: str
    issues: tuple[LintIssue, ...]
    policy: Policy | None

    @property
    def errors(self) -> tuple[LintIssue, ...]:
        return tuple(i for i in self.issues if i.severity == "error")

    @property
    def warnings(self) -> tuple[LintIssue, ...]:
        return tuple(i for i in self.issues if i.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "issues": [i.as_dict() for i in self.issues],
        }


class PolicyLintError(PolicyError):
    """An invalid policy; ``issues`` holds every error (``key``/``line`` name the first)."""

    def __init__(self, source: str, issues: tuple[LintIssue, ...]) -> None:
        first = issues[0]
        lines = "\n".join("  " + issue.format(source) for issue in issues)
        count = f"{len(issues)} error{'s' if len(issues) != 1 else ''}"
        where = f"{source}:{first.line}" if first.line else source
        super().__init__(
            f"{where}: invalid policy at '{first.key or '(top level)'}' ({count}):\n{lines}",
            key=first.key or None,
            line=first.line,
            source=source,
        )
        self.issues = issues


def lint_file(path: str | Path) -> LintResult:
    """Lint a policy file; an unreadable file is one error."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        issue = LintIssue("error", "io", "", None, f"policy file {source} does not exist")
        return LintResult(source, (issue,), None)
    except (OSError, UnicodeDecodeError) as exc:
        issue = LintIssue("error", "io", "", None, f"policy file {source} cannot be read: {exc}")
        return LintResult(source, (issue,), None)
    return lint_text(text, source=source)


def lint_text(text: str, *, source: str = "<policy>") -> LintResult:
    """Lint policy TOML given as text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        issue = LintIssue("error", "toml", "", line, f"not valid TOML: {exc}")
        return LintResult(source, (issue,), None)
    issues: list[LintIssue] = []
    policy: Policy | None = None
    semantic = list(_semantic(data))
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            if not loc and semantic:
                # A model-level validator repeats a check the semantic pass already made
                # with a precise key path; keep the precise one.
                continue
            issues.append(
                LintIssue(
                    "error", _code(error), ".".join(loc), _line_of(text, loc), _describe(error)
                )
            )
    for severity, code, loc, message in semantic:
        issues.append(LintIssue(severity, code, ".".join(loc), _line_of(text, loc), message))
    issues.sort(key=lambda i: (i.line if i.line is not None else 10**9, i.severity, i.key))
    result_policy = policy if not any(i.severity == "error" for i in issues) else None
    return LintResult(source, tuple(issues), result_policy)


def lint_policy(policy: Policy) -> tuple[LintIssue, ...]:
    """The meaning checks for a policy built in code (no lines: there is no file)."""
    data = policy.model_dump(mode="json", exclude_defaults=False)
    return tuple(
        LintIssue(severity, code, ".".join(loc), None, message)
        for severity, code, loc, message in _semantic(data)
    )


# -- the meaning pass ---------------------------------------------------------------

_Semantic = tuple[Severity, str, list[str], str]


def _table(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _semantic(data: Mapping[str, Any]) -> Iterator[_Semantic]:
    purposes = _table(data.get("purposes"))
    known = set(BUILTIN_PURPOSES) | set(purposes)
    yield from _purpose_checks(purposes)
    destinations = _table(data.get("destinations"))
    rollout = _table(data.get("rollout"))
    internal = rollout.get("internal_principals")
    has_internal = isinstance(internal, list) and bool(internal)
    required = _table(data.get("compliance")).get("require")
    required_info = [r for r in required or () if isinstance(r, str)]
    seen_urls: dict[str, str] = {}
    for name, raw in destinations.items():
        dest = _table(raw)
        where = ["destinations", name]
        listed = dest.get("purposes", [])
        if isinstance(listed, list):
            for index, purpose in enumerate(listed):
                if isinstance(purpose, str) and purpose not in known:
                    yield (
                        "error",
                        "unknown-purpose",
                        [*where, "purposes", str(index)],
                        f"names unknown purpose {purpose!r}; known purposes: "
                        f"{', '.join(sorted(known))} (declare it under [purposes.{purpose}])",
                    )
        approved = dest.get("approved") is True
        if approved and isinstance(listed, list) and not listed:
            yield (
                "error",
                "contradiction",
                [*where, "approved"],
                "approved = true but purposes is empty, so every call is still refused; "
                "list the purposes it was approved for",
            )
        if dest.get("models") == []:
            yield (
                "error",
                "contradiction",
                [*where, "models"],
                'models = [] allows no model, so every call is refused; use ["*"] or globs',
            )
        url = dest.get("base_url")
        if isinstance(url, str):
            normalized = url.rstrip("/").lower()
            other = seen_urls.get(normalized)
            if other is not None:
                yield (
                    "error",
                    "contradiction",
                    [*where, "base_url"],
                    f"same base_url as destination {other!r}: a request could not be "
                    "routed to one of them",
                )
            else:
                seen_urls[normalized] = name
        stage = dest.get("stage")
        if stage == "internal" and not has_internal:
            yield (
                "error",
                "contradiction",
                [*where, "stage"],
                'stage = "internal" but [rollout] internal_principals is empty, so no one '
                'may call it; add patterns such as internal_principals = ["staff:*"]',
            )
        if stage in _STAGES and stage != "general" and not approved:
            yield (
                "warning",
                "stage-unapproved",
                [*where, "stage"],
                f"stage = {stage!r} has no effect while the destination is not approved",
            )
        level = dest.get("max_raw_level")
        if isinstance(level, str) and level.lower() == "regulated" and approved:
            yield (
                "warning",
                "raw-regulated",
                [*where, "max_raw_level"],
                'max_raw_level = "regulated" sends every value raw, identifiers included; '
                "make sure the processor agreement covers it",
            )
        if dest.get("fail_open") is True and isinstance(listed, list):
            for purpose in listed:
                spec = _table(purposes.get(purpose)) if purpose in purposes else None
                training = purpose == "model_training" or (
                    spec is not None and spec.get("requires_training_flag") is True
                )
                if training:
                    yield (
                        "warning",
                        "fail-open-training",
                        [*where, "fail_open"],
                        "fail_open sends redacted values when the vault is down; for a "
                        "training destination prefer failing closed",
                    )
                    break
        if approved:
            for info in required_info:
                if dest.get(info) is None:
                    yield (
                        "error",
                        "missing-info",
                        where,
                        f"[compliance] require lists {info!r}, but this approved destination "
                        f"does not set {info}",
                    )
    yield from _action_checks(_table(data.get("actions")))


def _purpose_checks(purposes: Mapping[str, Any]) -> Iterator[_Semantic]:
    for name, raw in purposes.items():
        spec = _table(raw)
        where = ["purposes", name]
        basis = spec.get("legal_basis")
        if basis in _CONSENT_BASES and spec.get("requires_consent") is not True:
            yield (
                "error",
                "contradiction",
                [*where, "requires_consent"],
                f"legal_basis = {basis!r} but requires_consent is not true: the guard would "
                "never check the consent this purpose relies on",
            )
        if name == "model_training":
            if spec.get("requires_training_flag") is not True:
                yield (
                    "error",
                    "training-flag",
                    [*where, "requires_training_flag"],
                    "model_training must require the caller's use_for_training flag "
                    "(requires_training_flag = true)",
                )
            if spec.get("requires_consent") is not True and basis not in _CONSENT_BASES:
                yield (
                    "warning",
                    "training-consent",
                    [*where, "requires_consent"],
                    "model_training without requires_consent: `aiguard check` fails every "
                    "endpoint that trains under this policy",
                )


def _action_checks(actions: Mapping[str, Any]) -> Iterator[_Semantic]:
    for level in ("sensitive", "regulated"):
        if actions.get(level) == "keep":
            yield (
                "warning",
                "keep-above-raw",
                ["actions", level],
                f'{level} = "keep" sends {level} values raw even above a destination\'s '
                "max_raw_level; raise max_raw_level on the destinations that may have them",
            )
    kinds = _table(actions.get("kinds"))
    for kind, action in kinds.items():
        if action == "keep" and kind in {"ssn", "credit_card", "private_key", "api_key", "iban"}:
            yield (
                "warning",
                "keep-above-raw",
                ["actions", "kinds", kind],
                f"{kind} is kept raw for every destination",
            )


# -- pydantic errors ------------------------------------------------------------------


def _code(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown-key"
    if error["type"] == "missing":
        return "missing-key"
    return "invalid-value"


def _describe(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (check its spelling against docs/policy.md)"
    if error["type"] == "missing":
        return "required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in {"literal_error", "enum"}:
        return f"{message} (got {error.get('input')!r})"
    return message
