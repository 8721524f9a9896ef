"""``aiguard verify``: check a provenance log's chain, checkpoints and signatures.

Exit 0 when it verifies, 1 naming the first bad record, 2 when it cannot be read or the
arguments are wrong.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["COMMANDS", "register", "run"]

COMMANDS = frozenset({"verify"})


def register(sub: Any) -> None:
    """Add ``verify`` to ``aiguard``'s subparsers."""
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


def run(args: argparse.Namespace) -> int:
    """Verify the log ``args.path`` names."""
    return _verify(args)


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
