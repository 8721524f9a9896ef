"""The evidence report: what a provenance log proves about the deployment.

`build_report` streams a JSONL log twice (once to verify the chain, once to count),
replays the policy's alert rules over it, and marks the pre-deployment checklist from
the evidence. `render_html` draws it as one self-contained page: inline SVG charts, no
JavaScript, no external resources, so it opens offline and can be archived as is.
`render_markdown` gives the same numbers as text. See docs/report.md.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from ..classify.levels import Level
from ..errors import ProvenanceError
from ..policy.model import Policy
from ..provenance.chain import EventRecord
from ..provenance.verify import VerifyOptions, VerifyReport, verify_file, verify_records
from .alerts import Alert, AlertEngine, event_time

__all__ = [
    "ChecklistItem",
    "EvidenceReport",
    "build_report",
    "render_html",
    "render_markdown",
]

#: ``progress(phase, bytes_done, bytes_total, records)``; phases "verifying", "reading".
Progress = Callable[[str, int, int, int], None]
Status = Literal["satisfied", "not satisfied", "no evidence"]

_OUTGOING = {"call", "protect"}
_ATTEMPTS = {"call", "protect", "refusal", "error"}
_DSR = {"erasure", "export", "access", "dsr", "rectification", "portability"}
_STAGES = ("internal", "opt_in", "general")


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    id: str
    title: str
    status: Status
    evidence: str


@dataclass
class _Stage:
    destinations: list[str] = field(default_factory=list)
    attempts: int = 0
    allowed: int = 0
    denied: int = 0
    #: Attempts whose purpose needs consent (or in an opt-in stage): the rate's base.
    consent_attempts: int = 0
    with_consent: int = 0
    leaks: int = 0
    alerts: int = 0

    @property
    def incidents(self) -> int:
        return self.denied + self.leaks + self.alerts

    @property
    def consent_rate(self) -> float | None:
        """Of the attempts that needed consent, the share with a record; None if none did."""
        return self.with_consent / self.consent_attempts if self.consent_attempts else None


@dataclass
class EvidenceReport:
    """Every number the report shows; `as_dict` is the ``--format json`` document."""

    log_path: str
    policy: Policy
    verify: VerifyReport
    records: int = 0
    first_time: str | None = None
    last_time: str | None = None
    by_type: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    hourly: Counter[tuple[str, str]] = field(default_factory=Counter)
    denial_reasons: Counter[str] = field(default_factory=Counter)
    denial_codes: Counter[str] = field(default_factory=Counter)
    would_deny: int = 0
    consent_events: Counter[str] = field(default_factory=Counter)
    consent_present: Counter[str] = field(default_factory=Counter)
    consent_denied: Counter[str] = field(default_factory=Counter)
    #: Consent-based calls that went out (allowed, or let through by monitor mode)
    #: without a consent record: what the consent checklist item fails on.
    consent_missing_out: Counter[str] = field(default_factory=Counter)
    #: Consent-based attempts refused for another reason (never reached the consent check).
    consent_denied_other: int = 0
    training_flag: int = 0
    training_without_consent: int = 0
    unpurposed: int = 0
    dsr: Counter[str] = field(default_factory=Counter)
    kill_switch: list[dict[str, Any]] = field(default_factory=list)
    alerts_logged: Counter[str] = field(default_factory=Counter)
    alerts_replayed: list[Alert] = field(default_factory=list)
    leaks: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    destinations_out: Counter[str] = field(default_factory=Counter)
    stages: dict[str, _Stage] = field(default_factory=dict)
    checklist: list[ChecklistItem] = field(default_factory=list)
    bad_lines: int = 0
    generated_at: str = ""

    @property
    def chain_ok(self) -> bool:
        return self.verify.ok

    @property
    def attempts(self) -> int:
        return sum(self.by_type[t] for t in _ATTEMPTS)

    def series(self) -> tuple[str, list[str], dict[str, Counter[str]]]:
        """(unit, bucket labels, destination -> counts per bucket) with at most ~60 buckets."""
        hours = sorted({hour for hour, _ in self.hourly})
        if not hours:
            return "hour", [], {}
        first = _hour(hours[0])
        last = _hour(hours[-1])
        span = (last - first) / timedelta(hours=1) + 1
        unit = "hour" if span <= 60 else "day" if span <= 60 * 24 else "week"

        def bucket(hour: str) -> str:
            moment = _hour(hour)
            if unit == "hour":
                return moment.strftime("%Y-%m-%d %H:00")
            if unit == "day":
                return moment.strftime("%Y-%m-%d")
            monday = moment - timedelta(days=moment.weekday())
            return "week of " + monday.strftime("%Y-%m-%d")

        labels: list[str] = []
        step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
        moment = first
        while moment <= last + step[unit]:
            label = bucket(moment.strftime("%Y-%m-%dT%H"))
            if label not in labels:
                labels.append(label)
            moment += step[unit]
        labels = [label for label in labels if label <= bucket(hours[-1])]
        per: dict[str, Counter[str]] = defaultdict(Counter)
        for (hour, destination), count in self.hourly.items():
            per[destination][bucket(hour)] += count
        return unit, labels, dict(per)

    def consent_rates(self) -> dict[str, float]:
        return {
            purpose: self.consent_present[purpose] / total
            for purpose, total in sorted(self.consent_events.items())
            if total
        }

    def as_dict(self) -> dict[str, Any]:
        unit, labels, per = self.series()
        return {
            "schema": "aiguard.report/1",
            "log": self.log_path,
            "generated_at": self.generated_at,
            "records": self.records,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "chain": self.verify.as_dict(),
            "events_by_type": dict(sorted(self.by_type.items())),
            "decisions": dict(self.decisions),
            "calls": [
                {"destination": d, "purpose": p, "count": n}
                for (d, p), n in sorted(self.calls.items())
            ],
            "over_time": {
                "unit": unit,
                "buckets": labels,
                "destinations": {d: [c[label] for label in labels] for d, c in sorted(per.items())},
            },
            "denials": {
                "total": self.decisions["deny"],
                "by_code": dict(self.denial_codes.most_common()),
                "by_reason": dict(self.denial_reasons.most_common()),
                "monitor_would_deny": self.would_deny,
            },
            "consent": {
                purpose: {
                    "attempts": self.consent_events[purpose],
                    "with_consent": self.consent_present[purpose],
                    "denied_for_consent": self.consent_denied[purpose],
                    "sent_without_consent": self.consent_missing_out[purpose],
                    "rate": rate,
                }
                for purpose, rate in self.consent_rates().items()
            },
            "training": {
                "with_flag": self.training_flag,
                "without_consent": self.training_without_consent,
            },
            "dsr": dict(sorted(self.dsr.items())),
            "kill_switch": self.kill_switch,
            "alerts": {
                "logged": dict(sorted(self.alerts_logged.items())),
                "replayed": [a.as_dict() for a in self.alerts_replayed],
            },
            "leaks": dict(self.leaks),
            "findings_by_level": dict(self.levels),
            "actions": dict(self.actions),
            "stages": {
                name: {
                    "destinations": s.destinations,
                    "attempts": s.attempts,
                    "allowed": s.allowed,
                    "denied": s.denied,
                    "consent_attempts": s.consent_attempts,
                    "consent_rate": s.consent_rate,
                    "incidents": s.incidents,
                }
                for name, s in self.stages.items()
            },
            "checklist": [
                {"id": c.id, "title": c.title, "status": c.status, "evidence": c.evidence}
                for c in self.checklist
            ],
            "unreadable_lines": self.bad_lines,
        }


def _hour(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)


def build_report(
    log: str | os.PathLike[str],
    policy: Policy,
    *,
    check: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    log_name: str | None = None,
    verify_options: VerifyOptions | None = None,
) -> EvidenceReport:
    """Verify and read the log at ``log``; raises `OSError` when it cannot be read.

    ``log`` is a JSONL file, ``sqlite:///path.db`` or a ``postgresql://`` DSN (the same
    locations ``aiguard verify`` reads; ``log_name`` picks the log inside a database
    holding several). A database that cannot be read raises `ProvenanceError`.
    ``check`` is the JSON output of ``aiguard check`` (evidence for the inventory and
    CI-gate items of the checklist). ``verify_options`` are `aiguard verify`'s (a
    trusted public key, a published checkpoint): without a trusted key, signed
    checkpoints are self-attested and the checkpoints item is not satisfied.
    """
    location = os.fspath(log)
    if is_database(location):
        return _build_from_database(location, policy, check, progress, log_name, verify_options)
    path = Path(log)
    total = path.stat().st_size
    verify = _verify(path, total, progress, verify_options)
    report = EvidenceReport(str(path), policy, verify)
    _start(report, policy)
    engine = AlertEngine(policy)
    for document in _documents(path, total, report, progress):
        _count(report, document, engine)
    report.checklist = _checklist(report, check)
    return report


def is_database(location: str) -> bool:
    """Whether ``location`` names a database log rather than a JSONL file."""
    return location.startswith(("sqlite:", "postgresql:", "postgres:"))


def _records(location: str, log_name: str | None) -> Iterator[EventRecord]:
    """The stored records of a database log, streamed (read twice: verify, then count)."""
    if location.startswith("sqlite:"):
        from ..provenance.sqlite_sink import read_sqlite

        return read_sqlite(location.removeprefix("sqlite:").removeprefix("//"), log=log_name)
    from ..provenance.postgres import read_postgres

    return read_postgres(location, log=log_name)


def _shown_location(location: str) -> str:
    """A DSN as the report may print it: never its password."""
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _build_from_database(
    location: str,
    policy: Policy,
    check: Mapping[str, Any] | None,
    progress: Progress | None,
    log_name: str | None,
    options: VerifyOptions | None = None,
) -> EvidenceReport:
    def step(count: int) -> None:
        if progress is not None:
            progress("verifying", 0, 0, count)

    try:
        verify = verify_records(_records(location, log_name), options, progress=step)
        report = EvidenceReport(_shown_location(location), policy, verify)
        _start(report, policy)
        engine = AlertEngine(policy)
        for number, record in enumerate(_records(location, log_name), start=1):
            if progress is not None and number % 5000 == 0:
                progress("reading", 0, 0, number)
            _count(report, dict(record.document), engine)
    except (OSError, ProvenanceError):
        raise
    except Exception as exc:  # the driver's own errors: the server, the tables
        # Named by type only: a driver's message can carry the DSN and its password.
        raise ProvenanceError(
            f"cannot read the log at {_shown_location(location)}: {type(exc).__name__}"
        ) from exc
    if report.records == 0 and verify.records == 0:
        raise ProvenanceError(
            f"{_shown_location(location)} holds no provenance log"
            + (f" named {log_name!r}" if log_name else "")
            + "; name it with --log-name when the database holds several"
        )
    report.checklist = _checklist(report, check)
    return report


def _start(report: EvidenceReport, policy: Policy) -> None:
    report.generated_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    report.stages = {
        name: _Stage(sorted(d for d, dest in policy.destinations.items() if dest.stage == name))
        for name in _STAGES
    }


def _verify(
    path: Path, total: int, progress: Progress | None, options: VerifyOptions | None = None
) -> VerifyReport:
    if progress is None:
        return verify_file(path, options)
    # verify_file reports records, not bytes: estimate bytes from the mean line length
    # seen so far by the reading pass's twin (records * size / lines is close enough).
    lines = max(1, _count_lines(path))

    def step(count: int) -> None:
        progress("verifying", min(total, total * count // lines), total, count)

    result = verify_file(path, options, progress=step)
    progress("verifying", total, total, result.records)
    return result


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def _documents(
    path: Path, total: int, report: EvidenceReport, progress: Progress | None
) -> Iterator[dict[str, Any]]:
    done = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            done += len(line)
            if progress is not None and number % 5000 == 0:
                progress("reading", done, total, number)
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except ValueError:
                report.bad_lines += 1
                continue
            if isinstance(document, dict):
                yield document
    if progress is not None:
        progress("reading", total, total, report.records)


def _count(report: EvidenceReport, event: dict[str, Any], engine: AlertEngine) -> None:
    report.records += 1
    kind = str(event.get("type"))
    report.by_type[kind] += 1
    moment = event.get("time")
    if isinstance(moment, str):
        if report.first_time is None or moment < report.first_time:
            report.first_time = moment
        if report.last_time is None or moment > report.last_time:
            report.last_time = moment
    for alert in engine.observe(event, event_time(event)):
        report.alerts_replayed.append(alert)
        _stage_of(report, alert.details.get("destination"), _bump_alert)
    if kind == "alert":
        rule = event.get("alert")
        report.alerts_logged[str(rule.get("rule")) if isinstance(rule, Mapping) else "unknown"] += 1
        return
    if kind == "kill_switch":
        reasons = event.get("reasons") or []
        report.kill_switch.append(
            {
                "time": moment,
                "destination": event.get("destination"),
                "reason": str(reasons[0]) if reasons else "",
            }
        )
        return
    if kind in _DSR or kind.startswith("dsr"):
        report.dsr[kind] += 1
        return
    if kind not in _ATTEMPTS:
        return
    destination = str(event.get("destination") or "(unknown)")
    purpose = str(event.get("purpose") or "(none)")
    decision = event.get("decision")
    reasons = [str(r) for r in event.get("reasons") or []]
    if isinstance(decision, str):
        report.decisions[decision] += 1
    if decision == "deny":
        report.denial_codes[str(event.get("error") or "denied")] += 1
        for reason in reasons[:1]:
            report.denial_reasons[reason] += 1
    if any(r.startswith("monitor: ") for r in reasons):
        report.would_deny += 1
    consent = event.get("consent")
    consent = consent if isinstance(consent, Mapping) else {}
    has_record = consent.get("record_id") is not None
    if kind in _OUTGOING or kind == "refusal":
        report.calls[(destination, purpose)] += 1
        if isinstance(moment, str) and len(moment) >= 13:
            report.hourly[(moment[:13], destination)] += 1
    spec = report.policy.purpose(purpose)
    target = report.policy.destinations.get(destination)
    consent_based = (spec is not None and spec.requires_consent) or (
        target is not None and target.stage == "opt_in"
    )
    if consent_based:
        report.consent_events[purpose] += 1
        if has_record:
            report.consent_present[purpose] += 1
        if event.get("error") == "consent_required":
            report.consent_denied[purpose] += 1
    went_out = kind in _OUTGOING and decision == "allow"
    if consent_based and went_out and not has_record:
        report.consent_missing_out[purpose] += 1
    if consent_based and decision == "deny" and event.get("error") != "consent_required":
        report.consent_denied_other += 1
    if went_out:
        report.destinations_out[destination] += 1
        if purpose == "(none)" or event.get("legal_basis") is None:
            report.unpurposed += 1
        if consent.get("use_for_training") is True:
            report.training_flag += 1
        if spec is not None and spec.requires_training_flag and not has_record:
            report.training_without_consent += 1
    for counts, into in (
        (event.get("leaks"), report.leaks),
        (event.get("levels"), report.levels),
        (event.get("actions"), report.actions),
    ):
        if isinstance(counts, Mapping):
            for key, value in counts.items():
                if isinstance(value, int):
                    into[str(key)] += value
    leaked = sum(v for v in (event.get("leaks") or {}).values() if isinstance(v, int))

    def tally(stage: _Stage) -> None:
        stage.attempts += 1
        stage.allowed += decision == "allow"
        stage.denied += decision == "deny"
        if consent_based:  # a rate over calls that need no consent would mean nothing
            stage.consent_attempts += 1
            stage.with_consent += has_record
        stage.leaks += leaked

    _stage_of(report, destination, tally)


def _bump_alert(stage: _Stage) -> None:
    stage.alerts += 1


def _stage_of(report: EvidenceReport, destination: Any, apply: Callable[[_Stage], None]) -> None:
    target = report.policy.destinations.get(destination) if isinstance(destination, str) else None
    if target is not None:
        apply(report.stages[target.stage])


# -- the checklist --------------------------------------------------------------------


def _checklist(report: EvidenceReport, check: Mapping[str, Any] | None) -> list[ChecklistItem]:
    policy = report.policy
    items: list[ChecklistItem] = []

    def add(item_id: str, title: str, status: Status, evidence: str) -> None:
        items.append(ChecklistItem(item_id, title, status, evidence))

    if check is None:
        add(
            "inventory",
            "Inventory every endpoint that touches model inputs and outputs",
            "no evidence",
            "pass the output of `aiguard check --format json` with --check",
        )
        add(
            "ci-gate",
            "Map each field to a classification and gate merges on the policy",
            "no evidence",
            "pass the output of `aiguard check --format json` with --check",
        )
    else:
        endpoints = int(check.get("endpoints") or 0)
        add(
            "inventory",
            "Inventory every endpoint that touches model inputs and outputs",
            "satisfied" if endpoints else "not satisfied",
            f"{endpoints} endpoint(s) inventoried by aiguard check of {check.get('app')}",
        )
        ok = bool(check.get("ok"))
        add(
            "ci-gate",
            "Map each field to a classification and gate merges on the policy",
            "satisfied" if ok else "not satisfied",
            f"aiguard check: {check.get('errors', 0)} error(s), "
            f"{check.get('warnings', 0)} warning(s)",
        )
    called = sorted(report.destinations_out)
    unknown = [d for d in called if d not in policy.destinations]
    undocumented = [
        d
        for d in called
        if d in policy.destinations
        and any(
            getattr(policy.destinations[d], info) is None
            for info in ("retention_days", "region", "processor")
        )
    ]
    unapproved = [
        d for d in called if d in policy.destinations and not policy.destinations[d].approved
    ]
    if not called:
        add(
            "destinations",
            "Only approved, documented destinations receive data",
            "no evidence",
            "no call went out in this log",
        )
    else:
        problems = []
        if unknown:
            problems.append(f"unknown: {', '.join(unknown)}")
        if unapproved:
            problems.append(f"not approved: {', '.join(unapproved)}")
        if undocumented:
            problems.append(f"retention/region/processor missing: {', '.join(undocumented)}")
        add(
            "destinations",
            "Only approved, documented destinations receive data",
            "not satisfied" if problems else "satisfied",
            "; ".join(problems)
            or f"{len(called)} destination(s) called, all approved and documented",
        )
    outgoing = sum(report.destinations_out.values())
    add(
        "purpose",
        "Every call names a purpose with a legal basis",
        "no evidence"
        if not outgoing
        else "satisfied"
        if report.unpurposed == 0
        else "not satisfied",
        f"{report.unpurposed} of {outgoing} outgoing call(s) without purpose or legal basis",
    )
    consent_total = sum(report.consent_events.values())
    with_record = sum(report.consent_present.values())
    denied_for_consent = sum(report.consent_denied.values())
    sent_without = sum(report.consent_missing_out.values())
    # Attempts refused for another reason (an unapproved destination, the kill switch)
    # never reached the consent check and sent nothing: they are not failures of it.
    add(
        "consent",
        "Consent is checked for every consent-based purpose",
        "no evidence" if not consent_total else "not satisfied" if sent_without else "satisfied",
        f"{consent_total} consent-based attempt(s): {with_record} with a consent "
        f"record, {denied_for_consent} refused for lack of one, "
        f"{report.consent_denied_other} refused for another reason, "
        f"{sent_without} sent without one",
    )
    add(
        "training",
        "Training only with the caller's opt-in flag and the subject's consent",
        "satisfied" if report.training_without_consent == 0 else "not satisfied",
        f"{report.training_flag} call(s) with use_for_training, "
        f"{report.training_without_consent} training call(s) without a consent record",
    )
    raw_regulated = [
        d
        for d in called
        if d in policy.destinations
        and (
            policy.destinations[d].max_raw_level >= Level.REGULATED
            or policy.actions.for_level(Level.REGULATED).value == "keep"
        )
    ]
    minimized = sum(v for k, v in report.actions.items() if k != "keep")
    add(
        "minimization",
        "Personal data is tokenized or minimized before it leaves",
        "not satisfied" if raw_regulated else "satisfied",
        (
            f"REGULATED values are kept raw for {', '.join(raw_regulated)}"
            if raw_regulated
            else f"{minimized} value(s) tokenized, pseudonymized, masked or redacted; "
            f"{report.actions.get('keep', 0)} kept"
        ),
    )
    leaked = sum(report.leaks.values())
    add(
        "leaks",
        "No unexpected personal data in model answers",
        "satisfied" if leaked == 0 else "not satisfied",
        f"{leaked} leaked value(s) redacted from answers",
    )
    monitors = [d for d in policy.destinations if policy.mode_for(d) == "monitor"]
    add(
        "enforcement",
        "The policy is enforced, not only monitored",
        "not satisfied" if monitors or report.would_deny else "satisfied",
        (
            f"monitor mode for {', '.join(sorted(monitors)) or '-'}; "
            f"{report.would_deny} call(s) would have been refused"
            if monitors or report.would_deny
            else "enforce mode everywhere; no call let through by monitor mode"
        ),
    )
    add(
        "kill-switch",
        "The kill switch has been exercised",
        "satisfied" if report.kill_switch else "no evidence",
        f"{len(report.kill_switch)} kill-switch event(s)",
    )
    dsr_total = sum(report.dsr.values())
    add(
        "dsr",
        "Data-subject requests are handled and recorded",
        "satisfied" if dsr_total else "no evidence",
        ", ".join(f"{n} {k}" for k, n in sorted(report.dsr.items())) or "no request recorded",
    )
    add(
        "provenance",
        "The provenance log is complete and untampered",
        "satisfied" if report.verify.ok else "not satisfied",
        report.verify.summary(),
    )
    signed = report.verify.checkpoints
    trusted = report.verify.attestation == "trusted key"
    add(
        "checkpoints",
        "The log is sealed by signed checkpoints",
        # Checkpoints checked only against the key the log names itself prove nothing
        # against whoever could rewrite the log: evidence needs a key held elsewhere.
        "not satisfied"
        if not report.verify.ok or not signed
        else "satisfied"
        if trusted
        else "no evidence",
        f"{signed} signed checkpoint(s), valid against the trusted public key"
        if signed and trusted
        else f"{signed} signed checkpoint(s), self-attested only (checked against the key "
        "the log names itself); give the published key: aiguard keys public, then "
        "aiguard report --public-key FILE"
        if signed
        else "no signed checkpoint: set [provenance] signing_key",
    )
    add(
        "alerts",
        "Alert rules watch the log",
        "satisfied" if policy.alerts.any else "not satisfied",
        f"{len(report.alerts_replayed)} alert(s) on replay, "
        f"{sum(report.alerts_logged.values())} recorded in the log"
        if policy.alerts.any
        else "no rule under [alerts]",
    )
    return items


# -- charts ---------------------------------------------------------------------------

_PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#65a30d", "#db2777")
_E = html.escape


def _hbar_chart(title: str, rows: Sequence[tuple[str, float]], *, percent: bool = False) -> str:
    """Horizontal bars, one per row; values as labels so the chart reads without colour."""
    if not rows:
        return f'<p class="empty">{_E(title)}: nothing recorded.</p>'
    width, bar_h, gap, label_w = 640, 18, 6, 260
    height = len(rows) * (bar_h + gap) + 28
    top = max(value for _, value in rows) or 1
    scale = 1.0 if percent else top
    parts = [
        f'<svg class="chart" role="img" aria-label="{_E(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_E(title)}</title>",
        f'<text x="0" y="14" class="ct">{_E(title)}</text>',
    ]
    for i, (label, value) in enumerate(rows):
        y = 24 + i * (bar_h + gap)
        length = max(1.0, (width - label_w - 80) * (value / scale if scale else 0))
        shown = f"{value:.0%}" if percent else f"{value:,.0f}"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_E(_short(label))}</text>'
            f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar_h}" '
            f'fill="{_PALETTE[i % len(_PALETTE)]}"><title>{_E(label)}: {shown}</title></rect>'
            f'<text x="{label_w + length + 4:.1f}" y="{y + 13}">{shown}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _stacked_chart(title: str, labels: Sequence[str], series: Mapping[str, Counter[str]]) -> str:
    """Stacked columns over time, one colour per destination, with a legend."""
    if not labels:
        return f'<p class="empty">{_E(title)}: nothing recorded.</p>'
    width, height, left, bottom, top_pad = 720, 260, 56, 40, 28
    names = sorted(series)
    totals = [sum(series[n][label] for n in names) for label in labels]
    peak = max(totals) or 1
    plot_w = width - left - 10
    plot_h = height - bottom - top_pad
    col = plot_w / len(labels)
    parts = [
        f'<svg class="chart" role="img" aria-label="{_E(title)}" width="{width}" '
        f'height="{height + 18 * ((len(names) + 3) // 4)}" viewBox="0 0 {width} '
        f'{height + 18 * ((len(names) + 3) // 4)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_E(title)}</title>",
        f'<text x="0" y="14" class="ct">{_E(title)}</text>',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{width - 10}" y2="{top_pad + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end">{peak:,}</text>',
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(labels):
        y: float = top_pad + plot_h
        for j, name in enumerate(names):
            value = series[name][label]
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(
                f'<rect x="{left + i * col + 1:.1f}" y="{y:.1f}" width="{max(col - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{_PALETTE[j % len(_PALETTE)]}">'
                f"<title>{_E(label)} {_E(name)}: {value:,}</title></rect>"
            )
    for i in sorted({0, len(labels) // 2, len(labels) - 1}):
        parts.append(
            f'<text x="{left + i * col + col / 2:.1f}" y="{top_pad + plot_h + 16}" '
            f'text-anchor="middle">{_E(labels[i])}</text>'
        )
    for j, name in enumerate(names):
        x = left + (j % 4) * 160
        y = height + 18 * (j // 4)
        parts.append(
            f'<rect x="{x}" y="{y - 10}" width="10" height="10" '
            f'fill="{_PALETTE[j % len(_PALETTE)]}"/><text x="{x + 14}" y="{y}">{_E(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- rendering ------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#111;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f5f5f5}.num{text-align:right}
.satisfied{color:#166534;font-weight:600}.not-satisfied{color:#b91c1c;font-weight:600}
.no-evidence{color:#92400e;font-weight:600}svg.chart{display:block;margin:.5rem 0;font-size:11px}
svg .ct{font-weight:600;font-size:12px}.ok{color:#166534}.bad{color:#b91c1c}.empty{color:#666}
"""


def render_html(report: EvidenceReport) -> str:
    """One self-contained HTML page: inline CSS and SVG, no script, no external resource."""
    data = report.as_dict()
    unit, labels, per = report.series()
    chain_class = "ok" if report.chain_ok else "bad"
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>aiguard evidence report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>aiguard evidence report</h1>",
        f"<p>Log <code>{_E(report.log_path)}</code>: {report.records:,} records from "
        f"{_E(report.first_time or '-')} to {_E(report.last_time or '-')}. "
        f"Generated {_E(report.generated_at)}.</p>",
        f'<p class="{chain_class}"><strong>Chain verification:</strong> '
        f"{_E(report.verify.summary())}</p>",
        "<h2>Pre-deployment checklist</h2>",
        "<table><tr><th>item</th><th>status</th><th>evidence</th></tr>",
    ]
    for item in report.checklist:
        css = item.status.replace(" ", "-")
        out.append(
            f'<tr><td>{_E(item.title)}</td><td class="{css}">{_E(item.status)}</td>'
            f"<td>{_E(item.evidence)}</td></tr>"
        )
    out.append("</table>")
    out.append("<h2>Calls over time</h2>")
    out.append(_stacked_chart(f"Attempts per {unit}, by destination", labels, per))
    out.append("<h2>Calls per destination and purpose</h2>")
    out.append(
        _hbar_chart(
            "Attempts per destination / purpose",
            [(f"{d} / {p}", float(n)) for (d, p), n in sorted(report.calls.items())],
        )
    )
    out.append("<h2>Denials</h2>")
    out.append(
        f"<p>{report.decisions['deny']:,} refused, {report.decisions['allow']:,} allowed; "
        f"{report.would_deny:,} let through by monitor mode that enforcement would refuse.</p>"
    )
    out.append(
        _hbar_chart(
            "Denials by reason",
            [(reason, float(n)) for reason, n in report.denial_reasons.most_common(8)],
        )
    )
    out.append("<h2>Consent</h2>")
    out.append(
        _hbar_chart(
            "Consent rate of consent-based attempts, by purpose",
            list(report.consent_rates().items()),
            percent=True,
        )
    )
    out.append("<table><tr><th>purpose</th><th>attempts</th><th>with consent</th>")
    out.append("<th>refused for consent</th></tr>")
    for purpose, info in data["consent"].items():
        out.append(
            f"<tr><td>{_E(purpose)}</td><td class=num>{info['attempts']:,}</td>"
            f"<td class=num>{info['with_consent']:,}</td>"
            f"<td class=num>{info['denied_for_consent']:,}</td></tr>"
        )
    out.append("</table>")
    out.append("<h2>Rollout stages</h2>")
    out.append(
        "<table><tr><th>stage</th><th>destinations</th><th>attempts</th><th>allowed</th>"
        "<th>denied</th><th>consent rate</th><th>incidents</th></tr>"
    )
    for name, stage in report.stages.items():
        rate = "-" if stage.consent_rate is None else f"{stage.consent_rate:.0%}"
        out.append(
            f"<tr><td>{name}</td><td>{_E(', '.join(stage.destinations) or '-')}</td>"
            f"<td class=num>{stage.attempts:,}</td><td class=num>{stage.allowed:,}</td>"
            f"<td class=num>{stage.denied:,}</td><td class=num>{rate}</td>"
            f"<td class=num>{stage.incidents:,}</td></tr>"
        )
    out.append("</table>")
    out.append(
        _hbar_chart(
            "Incidents per stage (denials, leaks, alerts)",
            [(name, float(stage.incidents)) for name, stage in report.stages.items()],
        )
    )
    out.append("<h2>Data-subject requests, kill switch, alerts</h2>")
    dsr = ", ".join(f"{n:,} {_E(k)}" for k, n in sorted(report.dsr.items())) or "none"
    out.append(f"<p>Data-subject requests handled: {dsr}.</p>")
    if report.kill_switch:
        out.append("<table><tr><th>time</th><th>destination</th><th>what</th></tr>")
        for event in report.kill_switch:
            out.append(
                f"<tr><td>{_E(str(event['time']))}</td><td>{_E(str(event['destination']))}</td>"
                f"<td>{_E(event['reason'])}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append("<p>No kill-switch event.</p>")
    replayed = Counter(a.rule for a in report.alerts_replayed)
    out.append(
        _hbar_chart(
            "Alerts found on replay, by rule",
            [(rule, float(n)) for rule, n in sorted(replayed.items())],
        )
    )
    logged = ", ".join(f"{n:,} {_E(k)}" for k, n in sorted(report.alerts_logged.items()))
    out.append(f"<p>Alerts recorded in the log: {logged or 'none'}.</p>")
    out.append("<h2>Findings and actions</h2>")
    out.append(
        _hbar_chart(
            "Actions applied to detected values",
            [(k, float(v)) for k, v in sorted(report.actions.items())],
        )
    )
    leaks = ", ".join(f"{n:,} {_E(k)}" for k, n in sorted(report.leaks.items())) or "none"
    out.append(f"<p>Leaks redacted from answers: {leaks}.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_markdown(report: EvidenceReport) -> str:
    """The same numbers as Markdown (for a ticket or a pull request)."""
    data = report.as_dict()
    out = [
        "# aiguard evidence report",
        "",
        f"Log `{report.log_path}`: {report.records:,} records from {report.first_time} to "
        f"{report.last_time}.",
        "",
        f"**Chain verification:** {report.verify.summary()}",
        "",
        "## Pre-deployment checklist",
        "",
        "| item | status | evidence |",
        "| --- | --- | --- |",
    ]
    out += [f"| {c.title} | {c.status} | {c.evidence} |" for c in report.checklist]
    out += ["", "## Calls per destination and purpose", "", "| destination | purpose | attempts |"]
    out.append("| --- | --- | --- |")
    out += [f"| {d} | {p} | {n:,} |" for (d, p), n in sorted(report.calls.items())]
    out += ["", "## Denials", ""]
    out.append(
        f"{report.decisions['deny']:,} refused, {report.decisions['allow']:,} allowed, "
        f"{report.would_deny:,} let through by monitor mode."
    )
    out += ["", "| reason | count |", "| --- | --- |"]
    out += [f"| {r} | {n:,} |" for r, n in report.denial_reasons.most_common(20)]
    out += ["", "## Consent", "", "| purpose | attempts | with consent | rate |"]
    out.append("| --- | --- | --- | --- |")
    for purpose, info in data["consent"].items():
        out.append(
            f"| {purpose} | {info['attempts']:,} | {info['with_consent']:,} | {info['rate']:.1%} |"
        )
    out += ["", "## Rollout stages", "", "| stage | destinations | attempts | consent rate "]
    out[-1] += "| incidents |"
    out.append("| --- | --- | --- | --- | --- |")
    for name, stage in report.stages.items():
        rate = "-" if stage.consent_rate is None else f"{stage.consent_rate:.1%}"
        out.append(
            f"| {name} | {', '.join(stage.destinations) or '-'} | {stage.attempts:,} | {rate} "
            f"| {stage.incidents:,} |"
        )
    out += ["", "## Data-subject requests, kill switch, alerts", ""]
    out.append(
        "Data-subject requests: "
        + (", ".join(f"{n:,} {k}" for k, n in sorted(report.dsr.items())) or "none")
        + "."
    )
    out.append(f"Kill-switch events: {len(report.kill_switch)}.")
    replayed = Counter(a.rule for a in report.alerts_replayed)
    out.append(
        "Alerts on replay: "
        + (", ".join(f"{n:,} {k}" for k, n in sorted(replayed.items())) or "none")
        + "."
    )
    return "\n".join(out) + "\n"
