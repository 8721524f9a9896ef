"""The ``aiguard`` command: demo, verify."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import compliance as _cli_compliance
from . import doctor as _cli_doctor
from . import ops as _cli_ops

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiguard",
        description="Compliant calls to AI models: demo, verification, evidence, "
        "data-subject rights, gateway.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="play the customer-support scenario against a fake model")
    demo.add_argument(
        "--out", metavar="DIR", help="write DIR/provenance.jsonl (default: a temp dir)"
    )
    verify = sub.add_parser(
        "verify",
        help="verify a provenance log",
        description="Verify a provenance log: a JSONL file, sqlite:///path.db or a "
        "postgresql:// DSN. Exit 0 when it verifies, 1 naming the first bad record, "
        "2 when it cannot be read or the arguments are wrong.",
    )
    verify.add_argument("path", metavar="PATH", help="JSONL file, sqlite:///file or postgresql://…")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.add_argument("--log", metavar="NAME", help="log name inside a database")
    verify.add_argument(
        "--public-key", metavar="FILE", help="verifier key (name+id+key) checkpoints must match"
    )
    verify.add_argument(
        "--checkpoint", metavar="FILE", help="a checkpoint note published elsewhere"
    )
    verify.add_argument(
        "--allow-unsealed",
        action="store_true",
        help="accept records after the last checkpoint (a log still being written)",
    )
    _cli_compliance.register(sub)
    _cli_ops.register(sub)
    _cli_doctor.register(sub)
    importlib.import_module("aiguard.cli.gateway").register(sub)  # argparse only; lazy deps
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.out, sys.stdout)
    if args.command in _cli_compliance.COMMANDS:
        return _cli_compliance.run(args)
    if args.command == "verify":
        return _verify(args)
    if args.command in _cli_ops.COMMANDS:
        return _cli_ops.run(args)
    if args.command in _cli_doctor.COMMANDS:
        return _cli_doctor.run(args)
    if args.command == "gateway":
        return int(importlib.import_module("aiguard.cli.gateway").run(args))
    return 2  # pragma: no cover - argparse rejects unknown commands


def _fail(message: str, output: str) -> int:
    if output == "json":
        print(json.dumps({"ok": False, "error": message}))
    else:
        print(f"aiguard verify: {message}", file=sys.stderr)
    return 2


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ProvenanceError
    from ..provenance.checkpoint import Verifier
    from ..provenance.verify import (
        VerifyFailure,
        VerifyOptions,
        VerifyReport,
        verify_file,
        verify_records,
    )

    output: str = args.format
    try:
        key = (
            Verifier.from_vkey(Path(args.public_key).read_text("utf-8"))
            if args.public_key
            else None
        )
        published = Path(args.checkpoint).read_text("utf-8") if args.checkpoint else None
    except (OSError, ValueError) as exc:
        return _fail(f"cannot use the key or checkpoint file: {exc}", output)
    options = VerifyOptions(
        public_key=key, checkpoint=published, allow_unsealed=args.allow_unsealed
    )
    progress = _progress_printer() if output == "text" and sys.stderr.isatty() else None
    path: str = args.path
    try:
        if path.startswith("sqlite:"):
            reader = _reader("sqlite_sink", "read_sqlite")
            target = path.removeprefix("sqlite:").removeprefix("//")
            report = verify_records(reader(target, log=args.log), options, progress)
        elif path.startswith(("postgresql:", "postgres:")):
            reader = _reader("postgres", "read_postgres")
            report = verify_records(reader(path, log=args.log), options, progress)
        else:
            report = verify_file(path, options, progress)
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror or exc}", output)
    except ProvenanceError as exc:
        # A database reader that finds rows missing behind its head is a verify failure.
        report = VerifyReport(ok=False, records=0, failure=VerifyFailure(0, None, exc.message))
    except Exception as exc:  # a database that cannot be reached is "cannot read" too
        return _fail(f"cannot read {path}: {type(exc).__name__}: {exc}", output)
    finally:
        if progress is not None:
            print(file=sys.stderr)
    if output == "json":
        print(json.dumps(report.as_dict()))
    else:
        print(report.summary())
    return 0 if report.ok else 1


def _reader(module: str, name: str) -> Any:
    # Imported by name: the database readers pull in optional drivers.
    return getattr(importlib.import_module(f"aiguard.provenance.{module}"), name)


def _progress_printer() -> Callable[[int], None]:
    from ._progress import ProgressBar

    bar = ProgressBar(sys.stderr)

    def show(count: int) -> None:
        bar("verifying", 0, 0, count)

    return show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
