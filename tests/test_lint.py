"""Policy lint: every mistake at once, each with its key path, line and a fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import aiguard
from aiguard.cli import main
from aiguard.errors import PolicyError
from aiguard.policy import load_policy, parse_policy
from aiguard.policy.lint import PolicyLintError, lint_policy, lint_text

BAD = """\
mode = "enforce"
colour = "blue"

[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference", "fortune_telling"]
max_raw_level = "secret"
stage = "internal"

[destinations.copy]
base_url = "https://api.openai.com/v1/"
approved = true
purposes = []
retension_days = 3

[purposes.marketing]
legal_basis = "consent"

[actions]
sensitive = "shred"
"""


def issues_by_key(text: str) -> dict[str, tuple[int | None, str, str]]:
    result = lint_text(text, source="bad.toml")
    return {i.key: (i.line, i.code, i.message) for i in result.issues}


class TestEveryError:
    def test_all_errors_are_reported_with_key_and_line(self) -> None:
        """One run finds the typo, unknown purpose, bad level, contradictions and bad action."""
        found = issues_by_key(BAD)
        assert found["colour"][:2] == (2, "unknown-key")
        assert found["destinations.openai.purposes.1"][:2] == (7, "unknown-purpose")
        assert "fortune_telling" in found["destinations.openai.purposes.1"][2]
        assert found["destinations.openai.max_raw_level"][:2] == (8, "invalid-value")
        assert "unknown level 'secret'" in found["destinations.openai.max_raw_level"][2]
        assert found["destinations.openai.stage"][:2] == (9, "contradiction")
        assert "internal_principals" in found["destinations.openai.stage"][2]
        assert found["destinations.copy.base_url"][:2] == (12, "contradiction")
        assert found["destinations.copy.approved"][:2] == (13, "contradiction")
        assert found["destinations.copy.retension_days"][:2] == (15, "unknown-key")
        assert found["purposes.marketing.requires_consent"][:2] == (17, "contradiction")
        assert found["actions.sensitive"][:2] == (21, "invalid-value")
        assert "'shred'" in found["actions.sensitive"][2]
        assert len(found) == 9

    def test_issues_are_sorted_by_line(self) -> None:
        lines = [i.line or 0 for i in lint_text(BAD).issues]
        assert lines == sorted(lines)

    def test_toml_syntax_error_names_its_line(self) -> None:
        result = lint_text('mode = "enforce"\n[destinations.x\n')
        assert [(i.code, i.line) for i in result.issues] == [("toml", 2)]

    def test_missing_required_key(self) -> None:
        found = issues_by_key("[destinations.x]\napproved = true\npurposes = ['inference']\n")
        assert found["destinations.x.base_url"][:2] == (1, "missing-key")

    def test_required_destination_info(self) -> None:
        text = (
            '[compliance]\nrequire = ["region"]\n[destinations.a]\n'
            'base_url = "https://a.example/v1"\napproved = true\npurposes = ["inference"]\n'
        )
        found = issues_by_key(text)
        assert found["destinations.a"][:2] == (3, "missing-info")

    def test_training_purpose_must_need_the_flag(self) -> None:
        text = '[purposes.model_training]\nlegal_basis = "contract"\n'
        found = issues_by_key(text)
        assert found["purposes.model_training.requires_training_flag"][1] == "training-flag"
        assert found["purposes.model_training.requires_consent"][1] == "training-consent"


class TestWarnings:
    def test_warnings_do_not_fail_loading(self) -> None:
        text = (
            '[destinations.a]\nbase_url = "https://a.example/v1"\napproved = true\n'
            'purposes = ["inference"]\nmax_raw_level = "regulated"\n'
        )
        result = lint_text(text)
        assert result.ok and [i.code for i in result.warnings] == ["raw-regulated"]
        assert parse_policy(text).destinations["a"].max_raw_level.label == "regulated"

    def test_lint_policy_checks_a_policy_built_in_code(self) -> None:
        policy = aiguard.Policy.model_validate(
            {"actions": {"regulated": "keep"}, "destinations": {}}
        )
        assert [i.code for i in lint_policy(policy)] == ["keep-above-raw"]


class TestLoading:
    def test_parse_policy_raises_all_errors(self) -> None:
        with pytest.raises(PolicyLintError) as caught:
            parse_policy(BAD, source="bad.toml")
        error = caught.value
        assert isinstance(error, PolicyError)
        assert (error.key, error.line) == ("colour", 2)
        assert len(error.issues) == 9
        assert "bad.toml:21: error: actions.sensitive" in str(error)

    def test_guard_from_toml_runs_the_same_validation(self, tmp_path: Path) -> None:
        path = tmp_path / "aiguard.toml"
        path.write_text(BAD)
        with pytest.raises(PolicyLintError) as caught:
            aiguard.Guard.from_toml(path)
        assert len(caught.value.issues) == 9
        with pytest.raises(PolicyLintError):
            load_policy(path)

    def test_valid_policy_loads(self) -> None:
        path = Path(__file__).parent / "apps" / "policies" / "gate.toml"
        assert load_policy(path).destinations["openai"].approved


class TestCommand:
    def test_text_output_and_exit_code(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "aiguard.toml"
        path.write_text(BAD)
        assert main(["policy", "lint", str(path)]) == 1
        out = capsys.readouterr().out
        assert f"{path}:2: error: colour: unknown key" in out
        assert "FAILED" in out and "9 error(s)" in out

    def test_json_output(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "aiguard.toml"
        path.write_text(BAD)
        assert main(["policy", "lint", "--format", "json", str(path)]) == 1
        document = json.loads(capsys.readouterr().out)
        issues = document["files"][0]["issues"]
        assert {"severity", "code", "key", "line", "message"} <= set(issues[0])
        assert document["files"][0]["errors"] == 9

    def test_strict_fails_on_warnings(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "aiguard.toml"
        path.write_text('[actions]\nregulated = "keep"\n')
        assert main(["policy", "lint", str(path)]) == 0
        assert main(["policy", "lint", "--strict", str(path)]) == 1
        assert "warning: actions.regulated" in capsys.readouterr().out

    def test_missing_file_is_exit_2(self, tmp_path: Path) -> None:
        assert main(["policy", "lint", str(tmp_path / "nope.toml")]) == 2

    def test_shipped_policies_lint_clean(self) -> None:
        root = Path(__file__).parent / "apps" / "policies"
        for path in sorted(root.glob("*.toml")):
            assert main(["policy", "lint", str(path)]) == 0, path
