"""The compliance commands of ``aiguard``: inventory, check, policy lint, report.

Kept apart from cli.py so the command module stays small: `register` adds the
subcommands to the parser and `run` handles them. Exit codes: 0 fine, 1 the thing
checked failed (violations, lint errors, a log that does not verify), 2 the command
could not run (bad arguments, an application that does not import, unreadable files).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "register", "run"]

COMMANDS = frozenset({"inventory", "check", "policy", "report"})


def register(sub: Any) -> None:
    """Add the compliance subcommands to ``aiguard``'s subparsers."""
    inventory = sub.add_parser(
        "inventory",
        help="list every endpoint that touches a model, its fields and the policy's actions",
        description="Import MODULE[:ATTR] (a FastAPI app or a module using @guard.endpoint) "
        "and list its endpoints: destinations, purpose, fields with levels and kinds, "
        "consent requirements and the actions the policy applies.",
    )
    inventory.add_argument("app", metavar="MODULE[:ATTR]")
    inventory.add_argument("--policy", metavar="FILE", help="default: the app's own Guard")
    inventory.add_argument("--format", choices=("json", "markdown"), default="json")
    inventory.add_argument("--out", metavar="FILE", help="write here instead of stdout")

    check = sub.add_parser(
        "check",
        help="CI gate: exit 1 when the app can send personal data where the policy forbids",
        description="Check MODULE[:ATTR] against a policy (rules AIG001-AIG009, see "
        "docs/ci.md). Exit 1 on any error (or warning with --strict).",
    )
    check.add_argument("app", metavar="MODULE[:ATTR]")
    check.add_argument("--policy", metavar="FILE", required=True)
    check.add_argument("--format", choices=("table", "json", "sarif"), default="table")
    check.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    check.add_argument("--strict", action="store_true", help="fail on warnings too")

    policy = sub.add_parser("policy", help="policy tools: lint")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    lint = policy_sub.add_parser(
        "lint",
        help="report every mistake in a policy file with its key path and line",
        description="Lint policy files: syntax, unknown keys, levels, purposes, "
        "destination contradictions. Exit 1 on errors (or warnings with --strict).",
    )
    lint.add_argument("files", metavar="FILE", nargs="+")
    lint.add_argument("--format", choices=("text", "json"), default="text")
    lint.add_argument("--strict", action="store_true", help="fail on warnings too")

    report = sub.add_parser(
        "report",
        help="evidence report from a provenance log: calls, denials, consent, checklist",
        description="Read a provenance log (JSONL) and write an evidence report: calls per "
        "destination and purpose over time, denials, consent rates, data-subject requests, "
        "kill-switch events, alerts, chain verification and the pre-deployment checklist.",
    )
    report.add_argument(
        "--log",
        metavar="PATH",
        required=True,
        help="provenance JSONL file, sqlite:///file.db or a postgresql:// DSN",
    )
    report.add_argument("--log-name", metavar="NAME", help="log name inside a database")
    report.add_argument(
        "--public-key",
        metavar="FILE",
        help="verifier key checkpoints must match (from `aiguard keys public`); without "
        "it signed checkpoints are self-attested",
    )
    report.add_argument("--policy", metavar="FILE", required=True)
    report.add_argument("--out", metavar="FILE", help="default: stdout")
    report.add_argument("--format", choices=("html", "markdown", "json"), default="html")
    report.add_argument(
        "--check", metavar="FILE", help="output of `aiguard check --format json` as evidence"
    )
    report.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the compliance command ``args.command``."""
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "inventory": _inventory,
        "check": _check,
        "policy": _lint,
        "report": _report,
    }
    return handlers[args.command](args)


def _write(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _error(command: str, message: str) -> int:
    print(f"aiguard {command}: {message}", file=sys.stderr)
    return 2


def _load(command: str, spec: str) -> Any:
    from ..compliance.inventory import FactoryError, load_app

    try:
        return load_app(spec)
    except FactoryError as exc:
        _error(command, f"cannot build the app of {spec}: {exc}")
        return None
    except Exception as exc:  # an app that fails to import is the user's error to see
        _error(command, f"cannot import {spec}: {type(exc).__name__}: {exc}")
        return None


def _inventory(args: argparse.Namespace) -> int:
    from ..compliance.inventory import build_inventory, render_markdown
    from ..policy.lint import lint_file

    app = _load("inventory", args.app)
    if app is None:
        return 2
    policy = None
    if args.policy:
        result = lint_file(args.policy)
        if result.policy is None:
            for issue in result.errors:
                print(issue.format(result.source), file=sys.stderr)
            return _error("inventory", f"the policy {args.policy} has errors")
        policy = result.policy
    document = build_inventory(app, policy, policy_source=args.policy)
    if args.format == "markdown":
        _write(render_markdown(document), args.out)
    else:
        _write(json.dumps(document, indent=2) + "\n", args.out)
    if not document["endpoints"]:
        from ..compliance.check import NO_ENDPOINTS

        return _error("inventory", NO_ENDPOINTS.format(app=args.app))
    return 0


def _check(args: argparse.Namespace) -> int:
    from .._version import __version__
    from ..compliance.check import render_json, render_sarif, render_table, run_check
    from ..policy.lint import lint_file

    lint = lint_file(args.policy)
    if any(issue.code == "io" for issue in lint.issues):
        return _error("check", lint.issues[0].message)
    app = _load("check", args.app)
    if app is None:
        return 2
    result = run_check(app, lint)
    if args.format == "json":
        _write(json.dumps(render_json(result, strict=args.strict), indent=2) + "\n", args.out)
    elif args.format == "sarif":
        _write(json.dumps(render_sarif(result, __version__), indent=2) + "\n", args.out)
    else:
        _write(render_table(result, strict=args.strict) + "\n", args.out)
    table_shown = (args.format == "table") != bool(args.out)
    if args.out and args.format != "table":
        # The file is for tools; the job log still says why the gate failed.
        print(render_table(result, strict=args.strict), file=sys.stderr)
    if result.empty:
        from ..compliance.check import NO_ENDPOINTS

        if table_shown:
            return 2  # the table already says that no endpoint was found, and what to do
        return _error("check", NO_ENDPOINTS.format(app=args.app))
    return 1 if result.failed(strict=args.strict) else 0


def _lint(args: argparse.Namespace) -> int:
    from ..policy.lint import lint_file

    results = [lint_file(path) for path in args.files]
    if args.format == "json":
        print(json.dumps({"files": [r.as_dict() for r in results]}, indent=2))
    else:
        for result in results:
            for issue in result.issues:
                print(issue.format(result.source))
            errors, warnings = len(result.errors), len(result.warnings)
            verdict = "OK" if result.ok and not (args.strict and warnings) else "FAILED"
            print(f"{verdict}: {result.source}: {errors} error(s), {warnings} warning(s)")
    if any(issue.code == "io" for r in results for issue in r.issues):
        return 2
    failed = any(not r.ok or (args.strict and r.warnings) for r in results)
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from ..compliance.report import build_report, render_html, render_markdown
    from ..errors import ProvenanceError
    from ..policy.lint import lint_file
    from ._progress import ProgressBar

    lint = lint_file(args.policy)
    if lint.policy is None:
        for issue in lint.errors:
            print(issue.format(lint.source), file=sys.stderr)
        return _error("report", f"the policy {args.policy} has errors")
    check: dict[str, Any] | None = None
    if args.check:
        try:
            check = json.loads(Path(args.check).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return _error("report", f"cannot read {args.check}: {exc}")
    options = None
    if args.public_key:
        from ..provenance.checkpoint import Verifier
        from ..provenance.verify import VerifyOptions

        try:
            key = Verifier.from_vkey(Path(args.public_key).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            return _error("report", f"cannot use the key file {args.public_key}: {exc}")
        options = VerifyOptions(public_key=key)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = ProgressBar(sys.stderr) if show else None
    try:
        report = build_report(
            args.log,
            lint.policy,
            check=check,
            progress=bar,
            log_name=args.log_name,
            verify_options=options,
        )
    except OSError as exc:
        return _error("report", f"cannot read {args.log}: {exc.strerror or exc}")
    except ProvenanceError as exc:
        return _error("report", exc.message)
    finally:
        if bar is not None:
            bar.done()
    if args.format == "json":
        _write(json.dumps(report.as_dict(), indent=2) + "\n", args.out)
    elif args.format == "markdown":
        _write(render_markdown(report), args.out)
    else:
        _write(render_html(report), args.out)
    return 0 if report.chain_ok else 1
