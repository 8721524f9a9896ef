"""`aiguard check`: each gate rule with an application that fails it and one that passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiguard.cli import main
from aiguard.compliance.check import RULES, render_json, render_sarif, run_check, scan_source
from aiguard.compliance.inventory import load_app
from aiguard.policy.lint import lint_file, lint_text

HERE = Path(__file__).parent
GATE = HERE / "apps" / "policies" / "gate.toml"


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def rules(app: str, policy: Path = GATE) -> list[tuple[str, str]]:
    result = run_check(load_app(app), lint_file(policy))
    return [(v.rule, v.severity) for v in result.violations]


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = GATE.read_text()
    assert old in text
    path = tmp_path / "aiguard.toml"
    path.write_text(text.replace(old, new))
    return path


def test_passing_app() -> None:
    """Approved destination, tokenized fields, guarded clients, opt-in training: no finding."""
    assert rules("apps.gate_ok:app") == []


def test_aig001_unapproved_destination() -> None:
    assert ("AIG001", "error") in rules("apps.gate_unapproved")


def test_aig001_passes_once_the_destination_is_approved(tmp_path: Path) -> None:
    policy = variant(
        tmp_path,
        'approved = false\npurposes = ["inference"]\n',
        'approved = true\npurposes = ["inference"]\nretention_days = 0\nregion = "us"\n'
        'processor = "Example Inc"\n',
    )
    assert rules("apps.gate_unapproved", policy) == []


def test_aig002_raw_above_max_level(tmp_path: Path) -> None:
    assert rules("apps.gate_raw") == [("AIG002", "error")]
    fixed = variant(tmp_path, 'diagnosis = "keep"', 'diagnosis = "redact"')
    assert rules("apps.gate_raw", fixed) == []


def test_aig002_free_text_kept_raw(tmp_path: Path) -> None:
    policy = variant(tmp_path, 'regulated = "tokenize"', 'regulated = "keep"')
    found = rules("apps.gate_ok:app", policy)
    assert ("AIG002", "error") in found and ("AIG006", "warning") in found


def test_aig003_training_default_true() -> None:
    assert rules("apps.gate_training") == [("AIG003", "error")]


def test_aig003_training_purpose_without_consent(tmp_path: Path) -> None:
    policy = variant(
        tmp_path,
        "[actions]",
        '[purposes.model_training]\nlegal_basis = "contract"\nrequires_training_flag = true\n\n'
        "[actions]",
    )
    found = run_check(load_app("apps.gate_ok:app"), lint_file(policy)).violations
    training = [v for v in found if v.rule == "AIG003"]
    assert len(training) == 1 and "does not require consent" in training[0].message
    assert training[0].file == str(policy) and training[0].line == 21


def test_aig004_destination_info(tmp_path: Path) -> None:
    policy = variant(tmp_path, 'region = "eu"\n', "")
    found = run_check(load_app("apps.gate_ok:app"), lint_file(policy)).violations
    assert [(v.rule, v.line) for v in found] == [("AIG004", 7)]
    assert "lacks region" in found[0].message


def test_aig005_unguarded_clients() -> None:
    found = run_check(load_app("apps.gate_unguarded"), lint_file(GATE)).violations
    assert [(v.rule, v.line) for v in found] == [("AIG005", 13), ("AIG005", 18), ("AIG005", 22)]


def test_aig005_scan_accepts_guarded_forms(tmp_path: Path) -> None:
    source = tmp_path / "clients.py"
    source.write_text(
        "import aiguard, openai\n"
        "from anthropic import AsyncAnthropic\n"
        "client: object = guard.async_http_client()\n"
        "a = openai.OpenAI(http_client=guard.http_client())\n"
        "b = AsyncAnthropic(http_client=client)\n"
        "c = aiguard.wrap(openai.OpenAI())\n"
        "d = openai.OpenAI(**options)\n"
        "e = openai.AzureOpenAI(api_key='k')\n"
        "f = openai.OpenAI()\n"  # wrapped afterwards, as AIG005's message suggests
        "f = guard.wrap(f)\n"
        "class S:\n"
        "    def __init__(self):\n"
        "        self.client = openai.AsyncOpenAI()\n"
        "        self.client = aiguard.wrap(self.client, guard)\n"
        "        self.other = openai.OpenAI()\n"
    )
    assert [(v.rule, v.line) for v in scan_source(source)] == [("AIG005", 8), ("AIG005", 15)]


def test_aig006_policy_errors(tmp_path: Path) -> None:
    policy = variant(tmp_path, 'mode = "enforce"', 'mode = "enforce"\ncolour = "blue"')
    found = run_check(load_app("apps.gate_ok:app"), lint_file(policy)).violations
    assert [(v.rule, v.line) for v in found] == [("AIG006", 3)]


def test_aig008_monitor_mode_warns(tmp_path: Path) -> None:
    policy = variant(tmp_path, 'mode = "enforce"', 'mode = "monitor"')
    result = run_check(load_app("apps.gate_ok:app"), lint_file(policy))
    assert {v.rule for v in result.violations} == {"AIG008"}
    assert not result.failed() and result.failed(strict=True)


def test_aig009_tools_offered_while_every_tools_arguments_restore(tmp_path: Path) -> None:
    result = run_check(load_app("apps.gate_tools"), lint_file(GATE))
    assert [(v.rule, v.severity, v.line) for v in result.violations] == [("AIG009", "warning", 18)]
    assert "restore_tool_arguments" in result.violations[0].message
    assert not result.failed() and result.failed(strict=True)
    listed = variant(
        tmp_path,
        'processor = "OpenAI Ireland Ltd"\n',
        'processor = "OpenAI Ireland Ltd"\nrestore_tool_arguments = ["lookup_*"]\n',
    )
    assert rules("apps.gate_tools", listed) == []
    # An app that offers no tools is no finding under the default.
    assert rules("apps.gate_ok:app") == []


def test_aig009_knows_the_ways_code_offers_a_model_tools(tmp_path: Path) -> None:
    from aiguard.compliance.check import _tool_offers

    source = tmp_path / "agent.py"
    source.write_text(
        "client.chat.completions.create(model='m', messages=[], tools=TOOLS)\n"
        "client.responses.stream(model='m', input='x', tools=TOOLS)\n"
        "client.chat.completions.create(model='m', messages=[], functions=FUNCS)\n"
        "agent = Agent(name='support', tools=[lookup])\n"
        "agent = agents.Agent(name='support', tools=[lookup])\n"
        "model = ChatOpenAI().bind_tools([lookup])\n"
        "client.chat.completions.create(model='m', messages=[])\n"
        "toolbox.create(tools=3) if False else None\n"
        "Agent(name='plain')\n"
        "build(tools=TOOLS)\n"
    )
    found = _tool_offers(source, ["openai", "azure"])
    assert [v.line for v in found] == [1, 2, 3, 4, 5, 6, 8]
    assert "destinations 'openai', 'azure' restore" in found[0].message


def test_sarif() -> None:
    result = run_check(load_app("apps.gate_unguarded"), lint_file(GATE))
    sarif = render_sarif(result, "1.2.3")
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [r.id for r in RULES]
    first = run["results"][0]
    assert first["ruleId"] == "AIG005" and first["level"] == "error"
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"].endswith("apps/gate_unguarded.py")
    assert location["region"] == {"startLine": 13, "startColumn": 14}


def test_command_table_json_sarif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--policy", str(GATE), "apps.gate_ok:app"]) == 0
    assert capsys.readouterr().out.startswith("OK: 0 error(s)")
    assert main(["check", "--policy", str(GATE), "apps.gate_raw"]) == 1
    out = capsys.readouterr().out
    assert "AIG002 raw-above-max-level  error" in out and "FAILED: 1 error(s)" in out
    assert main(["check", "--policy", str(GATE), "--format", "json", "apps.gate_raw"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert (document["ok"], document["errors"], document["violations"][0]["rule"]) == (
        False,
        1,
        "AIG002",
    )
    sarif = tmp_path / "aiguard.sarif"
    code = main(
        ["check", "--policy", str(GATE), "--format", "sarif", "--out", str(sarif), "apps.gate_raw"]
    )
    assert code == 1
    assert json.loads(sarif.read_text())["runs"][0]["results"][0]["ruleId"] == "AIG002"
    assert "FAILED" in capsys.readouterr().err


def test_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--policy", str(tmp_path / "none.toml"), "apps.gate_ok"]) == 2
    assert main(["check", "--policy", str(GATE), "apps.missing"]) == 2
    assert "cannot import" in capsys.readouterr().err


def test_pre_commit_hook_definition() -> None:
    text = (HERE.parent / ".pre-commit-hooks.yaml").read_text()
    assert "id: aiguard-policy-lint" in text and "id: aiguard-check" in text
    assert not lint_text("").issues


def test_a_factory_app_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_check(load_app("apps.gate_factory"), lint_file(GATE))
    assert result.endpoints == 1 and not result.failed()
    assert main(["check", "--policy", str(GATE), "apps.gate_factory:create_app"]) == 0
    assert "in 1 endpoint(s)" in capsys.readouterr().out


@pytest.mark.parametrize("spec", ["apps.gate_empty", "apps.gate_empty:app"])
def test_a_gate_that_finds_nothing_fails(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Zero endpoints is exit 2 and says so, in every output format."""
    result = run_check(load_app(spec), lint_file(GATE))
    assert result.empty and result.failed()
    assert render_json(result)["ok"] is False
    assert main(["check", "--policy", str(GATE), spec]) == 2
    captured = capsys.readouterr()
    # Said once, where the reader looks: the table, or stderr beside a machine format.
    assert "FAILED" in captured.out and captured.out.count("no endpoints found") == 1
    assert captured.err == ""
    assert main(["check", "--policy", str(GATE), "--format", "json", spec]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is False
    assert captured.err.count(f"no endpoints found in {spec}") == 1
