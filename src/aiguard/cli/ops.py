"""``aiguard dsr``, ``aiguard keys`` and ``aiguard dataset``: data-subject requests, key
rotation and training-data preparation from a shell."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["COMMANDS", "register", "run"]

COMMANDS = frozenset({"dsr", "keys", "dataset"})


def register(sub: Any) -> None:
    """Add the ``dsr`` and ``keys`` commands to the ``aiguard`` parser's subparsers."""
    dsr = sub.add_parser("dsr", help="data-subject requests: export, erase, purge")
    dsr_sub = dsr.add_subparsers(dest="dsr_command", required=True, metavar="ACTION")
    for name, text in (
        ("export", "print everything held about SUBJECT as one JSON document"),
        ("erase", "crypto-shred SUBJECT's data, withdraw consent, record the erasure"),
    ):
        action = dsr_sub.add_parser(name, help=text)
        action.add_argument("subject", metavar="SUBJECT")
        action.add_argument("--policy", default="aiguard.toml", metavar="FILE")
        if name == "erase":
            action.add_argument("--request-ref", metavar="REF", help="your ticket id")
    purge = dsr_sub.add_parser("purge", help="delete vault entries past their retention")
    purge.add_argument("--policy", default="aiguard.toml", metavar="FILE")
    keys = sub.add_parser("keys", help="vault key management")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    rotate = keys_sub.add_parser(
        "rotate", help="new data-key version, re-wrap stored keys (no value is re-encrypted)"
    )
    rotate.add_argument("--policy", default="aiguard.toml", metavar="FILE")
    rotate.add_argument(
        "--new-key-file", metavar="FILE", help="also move to this new root key file"
    )
    public = keys_sub.add_parser(
        "public",
        help="write the provenance signing key's public half, for `aiguard verify --public-key`",
    )
    public.add_argument("--policy", default="aiguard.toml", metavar="FILE")
    public.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    _register_dataset(sub)


def _register_dataset(sub: Any) -> None:
    dataset = sub.add_parser("dataset", help="prepare training data: consent filter, protection")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    prepare = dataset_sub.add_parser(
        "prepare",
        help="keep consented records, protect them by policy, write a manifest",
        description="Read JSON Lines, keep the records whose subject consented to the "
        "purpose and destination, protect them as the policy protects a call to the "
        "destination, and write OUT plus OUT.manifest.json. Exit 0 on success (dropped "
        "records are summarised on stderr), 2 when the run was refused or failed.",
    )
    prepare.add_argument("input", metavar="IN.jsonl")
    prepare.add_argument("--out", required=True, metavar="OUT.jsonl")
    prepare.add_argument("--destination", required=True, metavar="D")
    prepare.add_argument("--purpose", default="model_training")
    prepare.add_argument("--policy", default="aiguard.toml", metavar="FILE")
    prepare.add_argument("--tenant", default="default")
    prepare.add_argument(
        "--subject-field",
        action="append",
        metavar="FIELD",
        help="field naming the record's subject (repeatable; default: subject, customer_id)",
    )
    prepare.add_argument(
        "--subject-action", choices=("pseudonymize", "keep", "drop"), default="pseudonymize"
    )
    prepare.add_argument(
        "--drop-field", action="append", default=[], metavar="FIELD", help="remove (repeatable)"
    )
    prepare.add_argument("--dataset", metavar="NAME", help="dataset name/version (ledger)")
    prepare.add_argument("--model", metavar="NAME", help="model the data trains (ledger)")
    prepare.add_argument("--principal", metavar="ID", help="who runs it (recorded)")
    prepare.add_argument(
        "--show-problems",
        type=int,
        default=10,
        metavar="N",
        help="list the first N dropped or unreadable lines on stderr (default 10; the "
        "manifest lists up to 1,000 and counts every one)",
    )
    prepare.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr (auto: when stderr is a terminal and the input is large)",
    )


def run(args: argparse.Namespace) -> int:
    """Run a ``dsr`` / ``keys`` / ``dataset`` command; 0 on success, 2 with a message on failure."""
    from ..errors import AIGuardError
    from ..guard import Guard

    if args.command == "dataset":
        return _dataset(args)
    if args.command == "keys" and args.keys_command == "public":
        return _public_key(args)

    try:
        guard = Guard.from_toml(args.policy)
    except (OSError, AIGuardError, ValueError) as exc:
        print(f"aiguard {args.command}: cannot open {args.policy}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "dsr":
            if args.dsr_command == "export":
                if guard.policy.database is None and guard.policy.keys is None:
                    # Subject digests are keyed with the guard's secret, which only the
                    # database's aiguard.key shares between processes: a new key here would
                    # match none of the logged events and export "no events" as if true.
                    print(
                        f"aiguard dsr: cannot export from {args.policy}: the policy sets no "
                        "`database`, so this process has a key of its own for subject "
                        "digests and cannot match the events other processes logged; set "
                        "`database = ...` (every process then shares its aiguard.key) or a "
                        "[keys] root key (every process derives the same key from it), or "
                        "call guard.dsr.export(...) in the process that logged them",
                        file=sys.stderr,
                    )
                    return 2
                print(json.dumps(guard.dsr.export(args.subject), indent=2, ensure_ascii=False))
            elif args.dsr_command == "erase":
                summary = guard.dsr.erase(args.subject, request_ref=args.request_ref)
                print(json.dumps(summary, indent=2))
            else:
                print(json.dumps({"purged": guard.dsr.purge()}))
            return 0
        from ..vault.keys import LocalKeyFileProvider

        rotate = getattr(guard.vault, "rotate", None)
        if not callable(rotate):
            print("aiguard keys: this vault cannot rotate keys", file=sys.stderr)
            return 2
        new_root = LocalKeyFileProvider(args.new_key_file) if args.new_key_file else None
        report = rotate(new_root)
        print(
            json.dumps(
                {
                    "data_version": report.data_version,
                    "tenants": report.tenants,
                    "rewrapped": report.rewrapped,
                    "root_key_id": report.root_key_id,
                }
            )
        )
        return 0
    except (AIGuardError, ValueError) as exc:
        # Typed errors never carry raw values, so they are safe to print.
        print(f"aiguard {args.command}: {exc}", file=sys.stderr)
        return 2
    finally:
        guard.close()


def _public_key(args: argparse.Namespace) -> int:
    """The verifier key (``name+id+key``) of ``[provenance] signing_key``; opens no store."""
    from pathlib import Path

    from ..errors import AIGuardError
    from ..policy import load_policy
    from ..provenance.checkpoint import Signer

    try:
        policy = load_policy(args.policy)
    except (OSError, AIGuardError, ValueError) as exc:
        print(f"aiguard keys: cannot open {args.policy}: {exc}", file=sys.stderr)
        return 2
    spec = policy.provenance
    if spec is None or not spec.signing_key:
        print(
            f"aiguard keys: {args.policy} names no [provenance] signing_key, so checkpoints "
            "are not signed and there is no public key",
            file=sys.stderr,
        )
        return 2
    path = Path(args.policy).resolve().parent / Path(spec.signing_key).expanduser()
    try:
        # The same name the log signs with (Guard.from_toml names it [provenance] log).
        signer = Signer.from_file(path, name=spec.log)
    except FileNotFoundError:
        print(
            f"aiguard keys: no signing key at {path} yet; the guard creates it when it "
            "first writes the log",
            file=sys.stderr,
        )
        return 2
    except (OSError, ValueError) as exc:
        print(f"aiguard keys: cannot read the signing key {path}: {exc}", file=sys.stderr)
        return 2
    text = signer.verifier.vkey + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _summarise_problems(args: argparse.Namespace, report: Any) -> None:
    """One line of counts by reason, a few examples, and where the rest are.

    A large input with a common refusal (no consent) must not bury the summary under a
    thousand lines; the manifest holds the list.
    """
    total = int(report.manifest["problems_total"])
    dropped = {reason: n for reason, n in report.dropped.items() if n}
    if not total and not dropped:
        return
    by_reason = ", ".join(f"{reason} {n:,}" for reason, n in sorted(dropped.items()))
    print(
        f"aiguard dataset: {args.input}: {sum(dropped.values()):,} record(s) dropped"
        + (f" ({by_reason})" if by_reason else ""),
        file=sys.stderr,
    )
    shown = report.problems[: max(0, args.show_problems)]
    for problem in shown:
        print(f"aiguard dataset: {args.input}: {problem}", file=sys.stderr)
    if total > len(shown):
        print(
            f"aiguard dataset: ... {total - len(shown):,} more line(s): see "
            f"{report.manifest_file} (lists the first {len(report.problems):,}, counts all)",
            file=sys.stderr,
        )


#: Inputs at least this large get a progress bar in ``--progress auto``.
LARGE_INPUT = 8 * 1024 * 1024


def _dataset(args: argparse.Namespace) -> int:
    import os

    from ..doors.dataset import DEFAULT_SUBJECT_FIELDS, prepare_dataset
    from ..errors import AIGuardError
    from ..guard import Guard
    from ._progress import ProgressBar

    try:
        size = os.stat(args.input).st_size
    except OSError as exc:
        print(f"aiguard dataset: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        guard = Guard.from_toml(args.policy)
    except (OSError, AIGuardError, ValueError) as exc:
        print(f"aiguard dataset: cannot open {args.policy}: {exc}", file=sys.stderr)
        return 2
    show = args.progress == "always" or (
        args.progress == "auto" and sys.stderr.isatty() and size >= LARGE_INPUT
    )
    drawn = ProgressBar() if show else None

    def bar(done: int, total: int, records: int) -> None:
        assert drawn is not None
        drawn("preparing", done, total, records)

    try:
        report = prepare_dataset(
            guard,
            args.input,
            args.out,
            destination=args.destination,
            purpose=args.purpose,
            tenant=args.tenant,
            subject_fields=args.subject_field or DEFAULT_SUBJECT_FIELDS,
            subject_action=args.subject_action,
            drop_fields=args.drop_field,
            dataset=args.dataset,
            model=args.model,
            principal=args.principal,
            progress=bar if drawn is not None else None,
        )
    except (AIGuardError, ValueError, OSError) as exc:
        if drawn is not None:
            drawn.done()
        # Typed errors and line problems never carry record content.
        print(f"aiguard dataset: {exc}", file=sys.stderr)
        return 2
    finally:
        guard.close()
    if drawn is not None:
        drawn.done()
    _summarise_problems(args, report)
    counts = report.manifest["counts"]
    print(
        json.dumps(
            {
                "output": str(report.output),
                "manifest": str(report.manifest_file),
                "read": counts["read"],
                "kept": counts["kept"],
                "dropped": counts["dropped"],
            }
        )
    )
    return 0
