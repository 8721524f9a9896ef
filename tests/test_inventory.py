"""`aiguard inventory`: every endpoint touching a model, its fields and the policy's actions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiguard.cli import main
from aiguard.compliance.inventory import SCHEMA, build_inventory, load_app, render_markdown
from aiguard.policy import load_policy

HERE = Path(__file__).parent
GATE = HERE / "apps" / "policies" / "gate.toml"


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def test_fastapi_app_endpoints_fields_and_actions() -> None:
    """Routes, purpose, destination, tagged fields with levels/kinds and per-destination actions."""
    document = build_inventory(load_app("apps.gate_ok:app"), load_policy(GATE), policy_source="p")
    assert document["schema"] == SCHEMA
    names = [e["name"] for e in document["endpoints"]]
    assert names == ["apps.gate_ok.draft_reply", "apps.gate_ok.learn"]
    reply = document["endpoints"][0]
    assert reply["routes"] == [{"method": "POST", "path": "/tickets/{customer_id}/reply"}]
    assert (reply["purpose"], reply["destinations"], reply["is_async"]) == (
        "inference",
        ["openai"],
        True,
    )
    assert reply["fields"] == [
        {
            "path": "ticket.customer_name",
            "level": "sensitive",
            "kind": "person",
            "actions": {"openai": "tokenize"},
        },
        {
            "path": "ticket.ssn",
            "level": "regulated",
            "kind": "ssn",
            "actions": {"openai": "tokenize"},
        },
    ]
    response = next(m for m in reply["models"] if m["role"] == "response")
    assert response["model"] == "apps._common.Reply"
    assert response["fields"][0]["path"] == "return.agent_email"
    assert response["untagged"] == ["text"]
    learn = document["endpoints"][1]
    assert learn["consent"] == {
        "legal_basis": "consent",
        "requires_consent": True,
        "requires_training_flag": True,
        "takes_use_for_training": True,
        "use_for_training_default": False,
    }
    openai = document["destinations"]["openai"]
    assert openai["actions"] == {
        "public": "keep",
        "internal": "keep",
        "sensitive": "tokenize",
        "regulated": "tokenize",
    }
    assert openai["kind_actions"] == {"diagnosis": "keep"}
    assert (openai["stage"], openai["mode"], openai["region"]) == ("general", "enforce", "eu")
    # Where answers give originals back: every tool's arguments (the default), no link.
    assert (openai["restore_tool_arguments"], openai["restore_in_links"]) == (True, False)


def test_plain_module_and_the_apps_own_guard() -> None:
    """A module without FastAPI works too; without --policy the app's Guard policy is used."""
    document = build_inventory(load_app("apps.gate_raw"))
    assert document["policy"] == "(the application's Guard)"
    (entry,) = document["endpoints"]
    assert entry["routes"] == [] and entry["file"].endswith("gate_raw.py")
    assert {f["kind"]: f["actions"]["openai"] for f in entry["fields"]} == {
        "person": "tokenize",
        "diagnosis": "tokenize",
    }


def test_markdown() -> None:
    text = render_markdown(build_inventory(load_app("apps.gate_ok:app"), load_policy(GATE)))
    assert "| `apps.gate_ok.learn` | POST /tickets/{customer_id}/learn | model_training |" in text
    assert (
        "| request `apps._common.Ticket` | `ticket.ssn` | regulated | ssn | openai: tokenize |"
        in text
    )


def test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "apps.gate_ok:app", "--policy", str(GATE)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["endpoints"]) == 2
    out = tmp_path / "inventory.md"
    assert main(["inventory", "apps.gate_ok:app", "--format", "markdown", "--out", str(out)]) == 0
    assert out.read_text().startswith("# Inventory of `apps.gate_ok:app`")


def test_command_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", "apps.no_such_module"]) == 2
    assert "cannot import apps.no_such_module" in capsys.readouterr().err
    assert main(["inventory", "apps.gate_ok:nothing"]) == 2


@pytest.mark.parametrize("spec", ["apps.gate_factory", "apps.gate_factory:create_app"])
def test_an_app_built_in_a_factory_is_followed(spec: str) -> None:
    """Handlers defined inside ``create_app`` register only when it runs: the loader runs it."""
    document = build_inventory(load_app(spec), load_policy(GATE))
    (entry,) = document["endpoints"]
    assert entry["name"] == "apps.gate_factory.create_app.<locals>.draft_reply"
    assert entry["routes"] == [{"method": "POST", "path": "/tickets/{customer_id}/reply"}]
    assert entry["file"].endswith("gate_factory.py") and entry["line"] is not None
    assert [f["path"] for f in entry["fields"]] == ["ticket.customer_name", "ticket.ssn"]


def test_a_factory_that_needs_arguments_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TypeError, match="needs_arguments\\(\\) needs arguments"):
        load_app("apps.gate_factory:needs_arguments")
    assert main(["inventory", "apps.gate_factory:needs_arguments"]) == 2
    assert "needs arguments" in capsys.readouterr().err


def test_a_factory_that_raises_is_named_not_an_import_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["inventory", "apps.gate_factory:needs_a_secret"]) == 2
    err = capsys.readouterr().err
    assert "cannot build the app of apps.gate_factory:needs_a_secret" in err
    assert "needs_a_secret() raised RuntimeError: Missing credentials" in err and "lifespan" in err
    assert "cannot import" not in err


def test_the_factory_docs_testing_md_recommends_is_gated_without_an_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/testing.md's ``myapp.py``, as CI would see it: no OPENAI_API_KEY, no network."""
    pytest.importorskip("openai")
    import sys
    import uuid

    from test_docs_examples import ROOT, blocks

    files = {b.argument: b.text for b in blocks(ROOT / "docs" / "testing.md") if b.marker == "file"}
    module = f"myapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(files["myapp.py"])
    (tmp_path / "aiguard.toml").write_text(files["aiguard.toml"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    try:
        assert main(["inventory", module, "--format", "json"]) == 0, capsys.readouterr().err
        (entry,) = json.loads(capsys.readouterr().out)["endpoints"]
        assert entry["routes"] == [{"method": "POST", "path": "/tickets/{customer_id}/reply"}]
        assert main(["check", "--policy", "aiguard.toml", module]) == 0, capsys.readouterr()
    finally:
        sys.modules.pop(module, None)


def test_no_endpoints_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """An inventory of nothing is an error (exit 2), not an empty success."""
    assert main(["inventory", "apps.gate_empty:app"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["endpoints"] == []
    assert "no endpoints found in apps.gate_empty:app" in captured.err
