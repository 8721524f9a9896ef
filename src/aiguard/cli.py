"""The ``aiguard`` command: demo, verify."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiguard", description="Compliant calls to AI models: demo and log verification."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="play the customer-support scenario against a fake model")
    demo.add_argument(
        "--out", metavar="DIR", help="write DIR/provenance.jsonl (default: a temp dir)"
    )
    verify = sub.add_parser("verify", help="verify a provenance JSONL log")
    verify.add_argument("path", metavar="PATH")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.out, sys.stdout)
    if args.command == "verify":
        return _verify(args.path, args.format)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _verify(path: str, output: str) -> int:
    from .provenance.verify import verify_file

    try:
        report = verify_file(path)
    except OSError as exc:
        message = f"cannot read {path}: {exc.strerror or exc}"
        if output == "json":
            print(json.dumps({"ok": False, "error": message}))
        else:
            print(f"aiguard verify: {message}", file=sys.stderr)
        return 2
    if output == "json":
        print(json.dumps(report.as_dict()))
    else:
        print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
