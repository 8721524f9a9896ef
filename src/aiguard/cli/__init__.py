"""The ``aiguard`` command: one module of this package per command group.

Each module has ``COMMANDS`` (the top-level names it handles), ``register(sub)`` (adds
its argparse parsers, importing nothing heavy) and ``run(args) -> int``. Exit codes: 0
fine, 1 the thing checked failed, 2 the command could not run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["main"]

#: The command-group modules, in the order ``aiguard --help`` lists them. The gateway's
#: `register` only builds its parser; its extra is imported when it runs.
_GROUPS = ("demo", "verify", "compliance", "ops", "doctor", "gateway")


def _groups() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in _GROUPS]


def _parser(groups: Sequence[ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiguard",
        description="Compliant calls to AI models: demo, verification, evidence, "
        "data-subject rights, gateway.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in groups:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    groups = _groups()
    args = _parser(groups).parse_args(argv)
    for group in groups:
        if args.command in group.COMMANDS:
            try:
                return int(group.run(args))
            except BrokenPipeError:
                # The reader went away (`aiguard dsr export ... | head`): stop quietly, as
                # other command-line tools do, instead of a traceback. Python's docs' way:
                # stdout points at devnull so the flush at exit cannot fail again.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                return 141  # 128 + SIGPIPE, what a shell reports for such a command
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
