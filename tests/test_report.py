"""`aiguard report`: the numbers of a generated 100,000-event log, and the page in a browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aiguard.cli import main
from aiguard.compliance.report import build_report, render_html, render_markdown
from aiguard.policy import parse_policy
from aiguard.provenance.chain import GENESIS_PREV, seal_document

POLICY = """
[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference", "model_training"]
retention_days = 30
region = "eu"
processor = "OpenAI Ireland Ltd"

[destinations.shadow]
base_url = "https://llm.example.net/v1"
purposes = ["inference"]

[destinations.pilot]
base_url = "https://pilot.example/v1"
approved = true
purposes = ["inference"]
stage = "opt_in"
retention_days = 0
region = "us"
processor = "Pilot Inc"

[alerts.denial_spike]
max_denials = 1000
window_seconds = 60
"""

TOTAL = 100_000
BASE = datetime(2026, 3, 2, tzinfo=timezone.utc)
DENY_SHADOW = (
    "destination 'shadow' is not approved; set approved = true under [destinations.shadow]"
)
NO_CONSENT = "the subject has no valid consent for purpose 'model_training'"


def pattern_event(i: int) -> dict[str, Any]:
    """Ten kinds of attempt in turn; the test's expected numbers follow from this table."""
    slot = i % 10
    base: dict[str, Any] = {"request_id": f"req_{i}", "attempt": 1, "tenant": "acme"}
    if slot <= 5:
        return {
            **base,
            "type": "call",
            "decision": "allow",
            "status": "ok",
            "destination": "openai",
            "purpose": "inference",
            "legal_basis": "contract",
            "consent": {"use_for_training": False},
            "levels": {"sensitive": 1},
            "findings": {"email": 1},
            "actions": {"tokenize": 1},
        }
    if slot == 6:
        return {
            **base,
            "type": "refusal",
            "decision": "deny",
            "status": "denied",
            "destination": "shadow",
            "purpose": "inference",
            "error": "policy_denied",
            "reasons": [DENY_SHADOW],
            "consent": {"use_for_training": False},
        }
    if slot == 7:
        return {
            **base,
            "type": "call",
            "decision": "allow",
            "status": "ok",
            "destination": "openai",
            "purpose": "model_training",
            "legal_basis": "consent",
            "subject": f"hmac-sha256:k1:{i:064x}",
            "consent": {"record_id": f"cr_{i}", "terms_version": "v1", "use_for_training": True},
            "levels": {"regulated": 1},
            "actions": {"tokenize": 1},
        }
    if slot == 8:
        return {
            **base,
            "type": "refusal",
            "decision": "deny",
            "status": "denied",
            "destination": "openai",
            "purpose": "model_training",
            "error": "consent_required",
            "reasons": [NO_CONSENT],
            "consent": {"use_for_training": True},
        }
    consented = (i // 10) % 4 != 0  # three pilot calls in four carry a consent record
    return {
        **base,
        "type": "protect",
        "decision": "allow" if consented else "deny",
        "status": "ok" if consented else "denied",
        "destination": "pilot",
        "purpose": "inference",
        "legal_basis": "contract",
        "error": None if consented else "consent_required",
        "reasons": [] if consented else ["destination 'pilot' is in stage 'opt_in'"],
        "consent": (
            {"record_id": f"cp_{i}", "use_for_training": False}
            if consented
            else {"use_for_training": False}
        ),
    }


EXTRA = 10  # genesis, 5 kill-switch events, 4 erasures


def write_log(path: Path) -> None:
    prev = GENESIS_PREV
    seq = 0
    step = timedelta(seconds=2.5)
    with open(path, "wb") as out:

        def put(document: dict[str, Any], at: datetime) -> None:
            nonlocal prev, seq
            document = {k: v for k, v in document.items() if v is not None}
            document.update(
                schema="aiguard.event/1",
                log="aiguard",
                event_id=f"e{seq}",
                time=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            )
            record = seal_document(document, seq, prev)
            out.write(record.line + b"\n")
            prev, seq = record.digest, seq + 1

        put({"type": "genesis", "nonce": "00" * 16}, BASE)
        for i in range(TOTAL - EXTRA):
            at = BASE + step * i
            put(pattern_event(i), at)
            if i % 20000 == 10000:
                what = "revoked" if (i // 20000) % 2 == 0 else "reinstated"
                put(
                    {
                        "type": "kill_switch",
                        "destination": "shadow",
                        "reasons": [f"{what}: drill {i}"],
                    },
                    at,
                )
            if i % 25000 == 20000:
                put(
                    {
                        "type": "erasure",
                        "subject": f"hmac-sha256:k1:{i:064x}",
                        "reasons": ["gdpr_art17"],
                        "status": "ok",
                    },
                    at,
                )


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "provenance.jsonl"
    write_log(path)
    return path


@pytest.fixture(scope="module")
def report(big_log: Path) -> Any:
    return build_report(big_log, parse_policy(POLICY))


@pytest.mark.slow
def test_numbers_of_a_100k_event_log(report: Any) -> None:
    n = TOTAL - EXTRA  # 99,990 pattern events: 9,999 of each slot
    per_slot = n // 10
    pilot_denied = sum(1 for i in range(9, n, 10) if (i // 10) % 4 == 0)
    assert report.records == TOTAL
    assert report.chain_ok and report.verify.records == TOTAL
    assert report.by_type["kill_switch"] == 5 and report.dsr == {"erasure": 4}
    assert report.calls[("openai", "inference")] == 6 * per_slot
    assert report.calls[("shadow", "inference")] == per_slot
    assert report.calls[("openai", "model_training")] == 2 * per_slot
    assert report.calls[("pilot", "inference")] == per_slot
    assert report.decisions["deny"] == 2 * per_slot + pilot_denied
    assert report.denial_reasons[DENY_SHADOW] == per_slot
    assert report.denial_codes["consent_required"] == per_slot + pilot_denied
    rates = report.consent_rates()
    assert rates["model_training"] == pytest.approx(0.5)
    assert rates["inference"] == pytest.approx((per_slot - pilot_denied) / per_slot)
    assert report.stages["opt_in"].attempts == per_slot
    assert report.stages["opt_in"].denied == pilot_denied
    assert report.stages["general"].attempts == 9 * per_slot
    # Only the attempts that needed consent count towards a stage's consent rate.
    assert report.stages["general"].consent_attempts == 2 * per_slot
    assert report.stages["general"].consent_rate == pytest.approx(0.5)
    assert report.stages["opt_in"].consent_attempts == per_slot
    assert report.training_flag == per_slot and report.training_without_consent == 0
    unit, labels, per = report.series()
    assert unit == "day" and len(labels) == 3
    assert sum(sum(c.values()) for c in per.values()) == n
    status = {item.id: item.status for item in report.checklist}
    assert status["provenance"] == "satisfied"
    assert status["checkpoints"] == "not satisfied"
    assert status["consent"] == "satisfied"
    assert status["kill-switch"] == "satisfied" and status["dsr"] == "satisfied"
    assert status["inventory"] == "no evidence"
    assert report.alerts_replayed == []  # 2,000 denials a minute would be needed


def test_markdown_and_json(report: Any) -> None:
    text = render_markdown(report)
    assert "| openai | inference | 59,994 |" in text
    document = report.as_dict()
    assert document["denials"]["by_reason"][DENY_SHADOW] == 9_999
    json.dumps(document)


def test_tampered_log_fails_the_chain_item(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    lines = []
    prev = GENESIS_PREV
    for seq in range(5):
        document = {
            "type": "call",
            "schema": "aiguard.event/1",
            "log": "aiguard",
            "event_id": f"e{seq}",
            "time": "2026-03-02T00:00:00.000000Z",
            "decision": "allow",
            "destination": "openai",
            "purpose": "inference",
        }
        record = seal_document(document, seq, prev)
        prev = record.digest
        lines.append(record.line)
    lines[2] = lines[2].replace(b'"openai"', b'"shadow"')
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = build_report(path, parse_policy(POLICY))
    assert not report.chain_ok
    assert {i.id: i.status for i in report.checklist}["provenance"] == "not satisfied"
    assert (
        main(
            [
                "report",
                "--log",
                str(path),
                "--policy",
                str(_policy(tmp_path)),
                "--format",
                "markdown",
                "--out",
                str(tmp_path / "r.md"),
            ]
        )
        == 1
    )


def _policy(tmp_path: Path) -> Path:
    path = tmp_path / "aiguard.toml"
    path.write_text(POLICY)
    return path


def test_command_with_progress(
    big_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    check = tmp_path / "check.json"
    check.write_text(json.dumps({"app": "myapp", "ok": True, "endpoints": 3, "errors": 0}))
    code = main(
        [
            "report",
            "--log",
            str(big_log),
            "--policy",
            str(_policy(tmp_path)),
            "--out",
            str(out),
            "--check",
            str(check),
            "--progress",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "verifying [" in err and "reading   [" in err and "100.0%" in err
    page = out.read_text()
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    # Seven charts; the alert chart is a sentence when replay found no alert.
    assert page.count('<svg class="chart"') == 6
    assert "Alerts found on replay, by rule: nothing recorded." in page
    assert re.search(r'<td>Inventory every endpoint[^<]*</td><td class="satisfied">', page)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Kept after the run for a human (or CI) to look at; outside the work tree by default.
ARTIFACTS = Path(
    os.environ.get("AIGUARD_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "aiguard-artifacts")
)

# Injected into a copy of the page for the test only (the report itself has no script):
# records console errors and failed loads, then writes each chart's box into the DOM.
PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(
  String(e.message || e.target.src || e.target.href)), true);
const origError = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); origError(...a); };
</script>"""
PROBE_TAIL = """<script>
window.addEventListener('load', () => {
  const boxes = [...document.querySelectorAll('svg.chart')].map(s => {
    const r = s.getBoundingClientRect(); const b = s.getBBox();
    return [r.width, r.height, b.width, b.height, s.querySelectorAll('rect').length];
  });
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({boxes, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_report_in_headless_chromium(report: Any, tmp_path: Path) -> None:
    """Loads without console errors; every chart has a non-empty box; screenshot kept."""
    assert CHROMIUM is not None
    page = render_html(report)
    probe = page.replace("</head>", PROBE_HEAD + "</head>").replace(
        "</body>", PROBE_TAIL + "</body>"
    )
    target = tmp_path / "report.html"
    target.write_text(probe, encoding="utf-8")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report.html").write_text(page, encoding="utf-8")
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--window-size=1280,4000",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", target.as_uri()],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, dom.stdout[-2000:]
    result = json.loads(match.group(1).replace("&quot;", '"'))
    assert result["errors"] == []
    assert len(result["boxes"]) == page.count('<svg class="chart"') == 6
    for width, height, inner_w, inner_h, rects in result["boxes"]:
        assert width > 0 and height > 0 and inner_w > 0 and inner_h > 0 and rects > 0
    shot = ARTIFACTS / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", target.as_uri()],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert shot.exists() and shot.stat().st_size > 10_000


def test_self_attested_checkpoints_are_not_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints verified only against the log's own key do not satisfy the item."""
    import aiguard

    policy = tmp_path / "aiguard.toml"
    policy.write_text(POLICY + '\n[provenance]\njsonl = "log.jsonl"\nsigning_key = "signing.key"\n')
    with aiguard.Guard.from_toml(policy) as guard, guard.context(purpose="inference"):
        guard.protect("hello", destination="openai")
    log = tmp_path / "log.jsonl"
    items = {i.id: i for i in build_report(log, parse_policy(POLICY)).checklist}
    assert items["checkpoints"].status == "no evidence"
    assert "self-attested" in items["checkpoints"].evidence
    public = tmp_path / "public.vkey"
    assert main(["keys", "public", "--policy", str(policy), "--out", str(public)]) == 0
    out = tmp_path / "r.json"
    args = ["report", "--log", str(log), "--policy", str(policy), "--format", "json"]
    assert main([*args, "--public-key", str(public), "--out", str(out)]) == 0
    checklist = {c["id"]: c for c in json.loads(out.read_text())["checklist"]}
    assert checklist["checkpoints"]["status"] == "satisfied"
    assert main([*args, "--public-key", str(tmp_path / "missing.vkey")]) == 2
    assert "cannot use the key file" in capsys.readouterr().err


def test_the_consent_item_fails_only_on_a_call_sent_without_consent(tmp_path: Path) -> None:
    """A consent-based attempt refused for another reason never reached the consent check."""
    import contextlib

    import aiguard
    from aiguard.provenance import JsonlSink

    text = (
        '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
        'purposes = ["inference"]\n'
    )

    def consent_item(policy_text: str, log: Path) -> tuple[str, str]:
        policy = parse_policy(policy_text)
        guard = aiguard.Guard(policy, sinks=[JsonlSink(log)])
        context = guard.context(subject="cust-1", purpose="model_training", use_for_training=True)
        with context, contextlib.suppress(aiguard.AIGuardError):
            guard.protect("hello", destination="openai")
        guard.close()
        report = build_report(log, policy)
        (item,) = [i for i in report.checklist if i.id == "consent"]
        return item.status, item.evidence

    # Not approved for model_training: refused before consent is looked at; nothing sent.
    status, evidence = consent_item(text, tmp_path / "refused.jsonl")
    assert status == "satisfied", evidence
    assert "1 refused for another reason, 0 sent without one" in evidence
    # Approved, no consent record, monitor mode lets it through: a failure of the check.
    both = '["inference", "model_training"]'
    monitor = 'mode = "monitor"\n' + text.replace('["inference"]', both)
    status, evidence = consent_item(monitor, tmp_path / "monitor.jsonl")
    assert status == "not satisfied" and "1 sent without one" in evidence, evidence
