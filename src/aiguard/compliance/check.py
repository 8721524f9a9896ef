"""The CI gate: ``aiguard check --policy aiguard.toml MODULE`` fails on unsafe data flows.

It reads the same inventory as ``aiguard inventory`` and the policy (linted first), and
scans the application's source with `ast` for model clients built around the guard.
Each rule has a stable id (``AIG001``...) used in the table, the JSON and SARIF output,
and in docs/ci.md. Errors make the command exit 1; warnings only with ``--strict``.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..classify.levels import Level
from ..policy._source import line_of as _line_of
from ..policy.lint import LintResult
from ..policy.model import Policy
from .inventory import App, build_inventory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "NO_ENDPOINTS",
    "RULES",
    "CheckResult",
    "Rule",
    "Violation",
    "render_json",
    "render_sarif",
    "render_table",
    "run_check",
    "scan_source",
]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    summary: str


RULES: tuple[Rule, ...] = (
    Rule(
        "AIG001",
        "unapproved-destination",
        "SENSITIVE or REGULATED data can reach a destination that is not approved for it",
    ),
    Rule(
        "AIG002",
        "raw-above-max-level",
        "data above a destination's max_raw_level is sent without a minimizing action",
    ),
    Rule(
        "AIG003",
        "training-without-consent",
        "a model_training flow does not require consent, or defaults use_for_training to true",
    ),
    Rule(
        "AIG004",
        "destination-info-missing",
        "a destination lacks retention, region or processor information the policy requires",
    ),
    Rule(
        "AIG005",
        "unguarded-client",
        "an OpenAI or Anthropic client is built without aiguard's http_client",
    ),
    Rule("AIG006", "policy-invalid", "the policy file has errors (or warnings) from policy lint"),
    Rule("AIG007", "guard-disabled", "a handler is decorated with enabled=False"),
    Rule("AIG008", "monitor-mode", "enforcement is off: the destination is in monitor mode"),
    Rule(
        "AIG009",
        "tool-arguments-restored",
        "the application offers a model tools, and a destination restores every tool's "
        "call arguments",
    ),
)
_RULES = {rule.id: rule for rule in RULES}


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    endpoint: str | None = None

    @property
    def name(self) -> str:
        return _RULES[self.rule].name

    def where(self) -> str:
        if self.file is None:
            return self.endpoint or "-"
        return f"{_relative(self.file)}:{self.line or 1}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "file": _relative(self.file) if self.file else None,
            "line": self.line,
            "column": self.column,
            "endpoint": self.endpoint,
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    app: str
    policy_source: str
    violations: tuple[Violation, ...]
    endpoints: int

    @property
    def errors(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == "error")

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == "warning")

    @property
    def empty(self) -> bool:
        """No endpoint was found: a gate that sees nothing must not pass."""
        return self.endpoints == 0

    def failed(self, *, strict: bool = False) -> bool:
        return self.empty or bool(self.errors) or (strict and bool(self.warnings))


def run_check(app: App, lint: LintResult, policy_text: str | None = None) -> CheckResult:
    """Every violation of ``app`` under the linted policy, in a stable order."""
    found: list[Violation] = []
    source = lint.source
    text = policy_text
    if text is None:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError:
            text = ""
    for issue in lint.issues:
        if issue.code == "missing-info":
            continue  # reported below as AIG004, with the destination's line
        found.append(
            Violation(
                "AIG006",
                issue.severity,
                f"{issue.key or '(top level)'}: {issue.message}",
                source,
                issue.line,
            )
        )
    policy = lint.policy
    if policy is None and all(i.code == "missing-info" for i in lint.errors):
        # Only facts are missing (AIG004, below): the flows can still be checked.
        policy = Policy.model_validate(tomllib.loads(text))
    document = build_inventory(app, policy, policy_source=source) if policy is not None else None
    if policy is not None and document is not None:
        found.extend(_flow_rules(document, policy, source, text))
        found.extend(_destination_rules(document, policy, source, text))
    trusting = (
        sorted(
            name
            for name, dest in policy.destinations.items()
            if dest.approved and dest.restore_tool_arguments is True
        )
        if policy is not None
        else []
    )
    for path in app.source_files():
        found.extend(scan_source(path))
        if trusting:
            found.extend(_tool_offers(path, trusting))
    found.sort(key=lambda v: (v.severity != "error", v.rule, v.file or "", v.line or 0))
    return CheckResult(app.spec, source, tuple(found), app.endpoints)


def _flow_rules(
    document: Mapping[str, Any], policy: Policy, source: str, text: str
) -> Iterator[Violation]:
    for entry in document["endpoints"]:
        file, line, name = entry["file"], entry["line"], entry["name"]
        if not entry["enabled"]:
            yield Violation(
                "AIG007",
                "warning",
                f"{name} is decorated with enabled=False: its calls carry no subject, purpose "
                "or known values",
                file,
                line,
                endpoint=name,
            )
        personal = [f for f in entry["fields"] if Level.parse(f["level"]) >= Level.SENSITIVE]
        for dest_name in entry["destinations"]:
            dest = policy.destinations.get(dest_name)
            listed = ", ".join(f"{f['path']} ({f['level']} {f['kind']})" for f in personal)
            if dest is None or not dest.approved or entry["purpose"] not in dest.purposes:
                if personal:
                    why = (
                        "is not named by the policy"
                        if dest is None
                        else "is not approved"
                        if not dest.approved
                        else f"is not approved for purpose {entry['purpose']!r}"
                    )
                    yield Violation(
                        "AIG001",
                        "error",
                        f"{name} sends {listed} to destination {dest_name!r}, which {why}; "
                        "approve it after review or send the data elsewhere",
                        file,
                        line,
                        endpoint=name,
                    )
                continue
            for f in personal:
                action = f["actions"].get(dest_name)
                level = Level.parse(f["level"])
                if action == "keep" and level > dest.max_raw_level:
                    yield Violation(
                        "AIG002",
                        "error",
                        f"{name} sends {f['path']} ({f['level']} {f['kind']}) raw to "
                        f"{dest_name!r}, which accepts at most {dest.max_raw_level.label} raw; "
                        "tokenize, pseudonymize, mask or redact it under [actions]",
                        file,
                        line,
                        endpoint=name,
                    )
            if policy.mode_for(dest_name) == "monitor":
                yield Violation(
                    "AIG008",
                    "warning",
                    f"{name} calls {dest_name!r} in monitor mode: calls the policy would "
                    "refuse still go out",
                    file,
                    line,
                    endpoint=name,
                )
        spec = policy.purpose(entry["purpose"])
        training = entry["purpose"] == "model_training" or (
            spec is not None and spec.requires_training_flag
        )
        if training and spec is not None:
            if not spec.requires_consent:
                yield Violation(
                    "AIG003",
                    "error",
                    f"{name} trains (purpose {entry['purpose']!r}) but the purpose does not "
                    "require consent; set requires_consent = true under "
                    f"[purposes.{entry['purpose']}]",
                    source,
                    _line_of(text, ["purposes", entry["purpose"]]),
                    endpoint=name,
                )
            if not spec.requires_training_flag:
                yield Violation(
                    "AIG003",
                    "error",
                    f"{name} trains (purpose {entry['purpose']!r}) but the purpose does not "
                    "require the caller's use_for_training flag",
                    source,
                    _line_of(text, ["purposes", entry["purpose"]]),
                    endpoint=name,
                )
        if entry["consent"]["use_for_training_default"]:
            yield Violation(
                "AIG003",
                "error",
                f"{name} defaults use_for_training to True; training must be opted into "
                "per call, so default it to False",
                file,
                line,
                endpoint=name,
            )
    # Free text found by detectors gets the per-level action: "keep" above a
    # destination's max_raw_level sends it raw, for every endpoint calling it.
    reached = {d for entry in document["endpoints"] for d in entry["destinations"]}
    for level in (Level.SENSITIVE, Level.REGULATED):
        if policy.actions.for_level(level).value != "keep":
            continue
        for dest_name in sorted(reached):
            dest = policy.destinations.get(dest_name)
            if dest is not None and dest.approved and level > dest.max_raw_level:
                yield Violation(
                    "AIG002",
                    "error",
                    f'[actions] {level.label} = "keep" sends {level.label} values detectors '
                    f"find in free text raw to {dest_name!r} (max_raw_level "
                    f"{dest.max_raw_level.label})",
                    source,
                    _line_of(text, ["actions", level.label]),
                )


def _destination_rules(
    document: Mapping[str, Any], policy: Policy, source: str, text: str
) -> Iterator[Violation]:
    if not policy.compliance.require:
        return
    reached = {d for entry in document["endpoints"] for d in entry["destinations"]}
    for name, dest in sorted(policy.destinations.items()):
        if not (dest.approved or name in reached):
            continue
        missing = [info for info in policy.compliance.require if getattr(dest, info) is None]
        if missing:
            yield Violation(
                "AIG004",
                "error",
                f"destination {name!r} lacks {', '.join(missing)}, which [compliance] "
                "require lists; record them under "
                f"[destinations.{name}]",
                source,
                _line_of(text, ["destinations", name]),
            )


# -- the static scan ------------------------------------------------------------------

#: SDK methods that send a request (``client.chat.completions.create(..., tools=...)``),
#: and agent frameworks' constructors (the OpenAI Agents SDK's ``Agent(tools=...)``).
_REQUEST_METHODS = {"create", "stream", "parse", "Agent"}
#: Their keywords that offer the model tools (``functions``: Chat's legacy form).
_TOOL_KEYWORDS = {"tools", "functions"}
#: Methods whose call offers tools by itself (LangChain's ``model.bind_tools([...])``).
_TOOL_BINDERS = {"bind_tools"}


def _offers_tools(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in _TOOL_BINDERS:
        return True
    return name in _REQUEST_METHODS and any(k.arg in _TOOL_KEYWORDS for k in node.keywords)


def _tool_offers(path: str | os.PathLike[str], trusting: Sequence[str]) -> list[Violation]:
    """AIG009 findings in one Python file: requests that offer a model tools, while the
    ``trusting`` destinations restore every tool's call arguments."""
    file = os.fspath(path)
    try:
        tree = ast.parse(Path(file).read_text(encoding="utf-8"), filename=file)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    names = ", ".join(repr(name) for name in trusting)
    which = (
        f"destination {names} restores" if len(trusting) == 1 else f"destinations {names} restore"
    )
    return [
        Violation(
            "AIG009",
            "warning",
            f"this request offers the model tools, and {which} every tool's call "
            "arguments: a model told by injected text to call a tool that "
            "sends data out gets the caller's originals to send. List the tools you trust "
            '(restore_tool_arguments = ["lookup_*"]) and restore the others where the '
            "agent runs them (guard.restore_tool_arguments)",
            file,
            node.lineno,
            node.col_offset + 1,
        )
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _offers_tools(node)
    ]


_CLIENTS = {
    "openai": {"OpenAI", "AsyncOpenAI", "AzureOpenAI", "AsyncAzureOpenAI"},
    "anthropic": {
        "Anthropic",
        "AsyncAnthropic",
        "AnthropicBedrock",
        "AsyncAnthropicBedrock",
        "AnthropicVertex",
        "AsyncAnthropicVertex",
    },
}
#: Calls on the openai module itself use its global client, which aiguard never sees.
_MODULE_RESOURCES = {
    "chat",
    "completions",
    "embeddings",
    "responses",
    "images",
    "audio",
    "moderations",
    "ChatCompletion",
    "Completion",
    "Embedding",
}
_GUARD_FACTORIES = {"http_client", "async_http_client"}


def scan_source(path: str | os.PathLike[str]) -> list[Violation]:
    """AIG005 findings in one Python file; a file that does not parse is skipped."""
    file = os.fspath(path)
    try:
        tree = ast.parse(Path(file).read_text(encoding="utf-8"), filename=file)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    modules: dict[str, str] = {}  # local alias -> provider module
    constructors: dict[str, str] = {}  # local name -> "openai.OpenAI"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in _CLIENTS and alias.name == root:
                    modules[alias.asname or root] = root
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in _CLIENTS:
                for alias in node.names:
                    if alias.name in _CLIENTS[root]:
                        constructors[alias.asname or alias.name] = f"{root}.{alias.name}"
    if not modules and not constructors:
        return []
    guarded_names = _guarded_variables(tree)
    wrapped = _wrapped_calls(tree)
    found: list[Violation] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        client = _constructor(node.func, modules, constructors)
        if client is not None:
            if id(node) in wrapped or _has_guarded_client(node, guarded_names):
                continue
            if any(k.arg is None for k in node.keywords):
                continue  # **options: cannot be seen statically
            found.append(
                Violation(
                    "AIG005",
                    "error",
                    f"{client}(...) is built without aiguard's http_client, so its calls skip "
                    "the guard; pass http_client=guard.http_client() "
                    "(guard.async_http_client() for async clients), or wrap it: guard.wrap(client)",
                    file,
                    node.lineno,
                    node.col_offset + 1,
                )
            )
            continue
        module_call = _module_level_call(node.func, modules)
        if module_call is not None:
            found.append(
                Violation(
                    "AIG005",
                    "error",
                    f"{module_call}(...) uses the module's global client, which aiguard does "
                    "not see; build a client with http_client=guard.http_client()",
                    file,
                    node.lineno,
                    node.col_offset + 1,
                )
            )
    return found


def _constructor(
    func: ast.expr, modules: Mapping[str, str], constructors: Mapping[str, str]
) -> str | None:
    if isinstance(func, ast.Name) and func.id in constructors:
        return constructors[func.id]
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in modules
        and func.attr in _CLIENTS[modules[func.value.id]]
    ):
        return f"{modules[func.value.id]}.{func.attr}"
    return None


def _module_level_call(func: ast.expr, modules: Mapping[str, str]) -> str | None:
    parts: list[str] = []
    node = func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in modules or len(parts) < 2:
        return None
    parts.reverse()
    if modules[node.id] == "openai" and parts[0] in _MODULE_RESOURCES:
        return ".".join(["openai", *parts])
    return None


def _is_guard_factory(value: ast.expr, guarded: set[str]) -> bool:
    if isinstance(value, ast.Name):
        return value.id in guarded
    if isinstance(value, ast.Call):
        func = value.func
        name = (
            func.attr
            if isinstance(func, ast.Attribute)
            else func.id
            if isinstance(func, ast.Name)
            else None
        )
        return name in _GUARD_FACTORIES
    return False


def _has_guarded_client(call: ast.Call, guarded: set[str]) -> bool:
    return any(
        k.arg == "http_client" and _is_guard_factory(k.value, guarded) for k in call.keywords
    )


def _guarded_variables(tree: ast.AST) -> set[str]:
    """Names assigned from ``guard.http_client(...)`` anywhere in the module."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_guard_factory(node.value, set()):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
        elif (
            isinstance(node, ast.AnnAssign)
            and node.value is not None
            and isinstance(node.target, ast.Name)
            and _is_guard_factory(node.value, set())
        ):
            names.add(node.target.id)
    return names


def _wrapped_calls(tree: ast.AST) -> set[int]:
    """ids of calls wrapped by ``wrap(...)`` (``aiguard.wrap``, ``guard.wrap``): passed
    straight to it, or assigned to a name (``client``, ``self.client``) the file wraps,
    as in ``client = openai.OpenAI()`` then ``client = guard.wrap(client)``."""
    out: set[int] = set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.attr
            if isinstance(func, ast.Attribute)
            else func.id
            if isinstance(func, ast.Name)
            else None
        )
        if name == "wrap" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Call):
                out.add(id(first))
            elif isinstance(first, (ast.Name, ast.Attribute)):
                names.add(ast.unparse(first))
    if names:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(ast.unparse(t) in names for t in targets):
                    out.add(id(node.value))
    return out


# -- output ---------------------------------------------------------------------------


#: Said (and exit status 2) when the application has no ``@guard.endpoint`` handler.
NO_ENDPOINTS = (
    "no endpoints found in {app}: import the module that defines the app, name the app "
    "(MODULE:app) or its factory (MODULE:create_app), and decorate handlers with "
    "@guard.endpoint"
)


def _relative(file: str | None) -> str:
    if file is None:
        return ""
    try:
        return Path(file).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(file).as_posix()


def render_table(result: CheckResult, *, strict: bool = False) -> str:
    """A readable table, then one line saying whether the gate passes."""
    lines: list[str] = []
    if result.violations:
        rows = [("RULE", "LEVEL", "WHERE", "PROBLEM")]
        rows += [
            (f"{v.rule} {v.name}", v.severity, v.where(), v.message) for v in result.violations
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            lines.append("  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3])
        lines.append("")
    if result.empty:
        lines.append(NO_ENDPOINTS.format(app=result.app))
    verdict = "FAILED" if result.failed(strict=strict) else "OK"
    lines.append(
        f"{verdict}: {len(result.errors)} error(s), {len(result.warnings)} warning(s) in "
        f"{result.endpoints} endpoint(s) of {result.app} under {_relative(result.policy_source)}"
    )
    return "\n".join(lines)


def render_json(result: CheckResult, *, strict: bool = False) -> dict[str, Any]:
    return {
        "schema": "aiguard.check/1",
        "app": result.app,
        "policy": _relative(result.policy_source),
        "ok": not result.failed(strict=strict),
        "endpoints": result.endpoints,
        "no_endpoints": result.empty,
        "errors": len(result.errors),
        "warnings": len(result.warnings),
        "violations": [v.as_dict() for v in result.violations],
    }


def render_sarif(result: CheckResult, version: str = "0") -> dict[str, Any]:
    """SARIF 2.1.0 for code-scanning tools (GitHub, GitLab, Azure DevOps)."""
    used: Sequence[Rule] = RULES
    results = []
    for v in result.violations:
        entry: dict[str, Any] = {
            "ruleId": v.rule,
            "ruleIndex": [r.id for r in used].index(v.rule),
            "level": v.severity,
            "message": {"text": v.message},
        }
        if v.file is not None:
            region: dict[str, Any] = {"startLine": v.line or 1}
            if v.column is not None:
                region["startColumn"] = v.column
            entry["locations"] = [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _relative(v.file), "uriBaseId": "%SRCROOT%"},
                        "region": region,
                    }
                }
            ]
        results.append(entry)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "aiguard",
                        "version": version,
                        "rules": [
                            {
                                "id": r.id,
                                "name": r.name,
                                "shortDescription": {"text": r.summary},
                                "defaultConfiguration": {
                                    "level": "warning"
                                    if r.id in {"AIG007", "AIG008", "AIG009"}
                                    else "error"
                                },
                            }
                            for r in used
                        ],
                    }
                },
                "results": results,
            }
        ],
    }
