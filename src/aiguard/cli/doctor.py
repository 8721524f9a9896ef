"""``aiguard doctor``: open every store and sink a policy names, probe each, report.

What a user runs before deploying. Each component is opened on its own, the way
`Guard.from_toml` opens it, so one broken store does not hide the state of the others;
each gets a write and a read-back, and is reported ok or with its typed error (which
names the file or masked DSN, what to fix and the policy key). Exit 0 when every
component is ok, 1 when any is not, 2 when the policy itself cannot be loaded.

Probes never change what the stores hold:

* database stores (vault, consent records, kill switch, SQLite and PostgreSQL
  provenance sinks) write a probe row and read it back inside a transaction that is
  rolled back, so no other connection ever sees it: no consent record is appended to
  the append-only ledger, no destination is ever seen revoked, and no provenance row
  is committed. (A PostgreSQL sequence a probe advanced stays advanced; nothing
  orders by it but the store's own append order.)
* file sinks (JSONL, the HTTP sink's spool) are not opened as sinks, since opening
  a JSONL log repairs a torn tail, which must be recorded by the log that does it.
  Instead the directory gets a probe file (written, synced, read back, removed), the
  log's writer lock is tried and released, and its last record is read and parsed.

A provenance probe therefore never appends to a log: appending a "probe" record would
be a valid link, but it would put a record that is not a call into the evidence and,
for a log with a signer, a record after the last checkpoint; a rolled-back row or a
side file tests the same permissions, locks and disk without touching the chain.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import AIGuardError, PolicyError, ProvenanceError
from ..storage._faults import PROBE, mask_dsn, prepare_file_location, probe_name, translating

__all__ = ["COMMANDS", "Check", "register", "run", "run_checks"]

COMMANDS = frozenset({"doctor"})

#: Stands for "given": a store `embedded_stores` / `postgres_stores` must not open.
_SKIP = object()


@dataclass(frozen=True)
class Check:
    """One component's result."""

    component: str
    target: str
    ok: bool
    detail: str
    error: str | None = None


def register(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="open every store and sink the policy names, probe each, report",
        description="Open every store and sink the policy names (vault, consent store, kill "
        "switch, root key, provenance sinks), write and read back a probe that is never "
        "kept, and report each ok or the error that says what to fix. Exit 0 when all are "
        "ok, 1 when any is not, 2 when the policy cannot be loaded.",
    )
    doctor.add_argument("--policy", default="aiguard.toml", metavar="FILE")
    doctor.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace) -> int:
    from ..policy import load_policy

    try:
        policy = load_policy(args.policy)
    except (PolicyError, OSError) as exc:
        message = exc.message if isinstance(exc, PolicyError) else f"{exc.strerror}: {exc}"
        if args.format == "json":
            print(json.dumps({"ok": False, "error": f"cannot load the policy: {message}"}))
        else:
            print(f"aiguard doctor: cannot load the policy: {message}", file=sys.stderr)
        return 2
    checks = run_checks(policy, Path(args.policy).resolve().parent)
    ok = all(check.ok for check in checks)
    if args.format == "json":
        print(json.dumps({"ok": ok, "checks": [asdict(check) for check in checks]}))
    else:
        width = max(len(check.component) for check in checks)
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            print(f"{mark}  {check.component.ljust(width)}  {check.target}")
            print(f"      {' ' * width}  {check.detail}")
        print("all stores and sinks are ok" if ok else "some stores or sinks are not ok")
    return 0 if ok else 1


def run_checks(policy: Any, base: Path) -> list[Check]:
    """Every store and sink ``policy`` names (paths relative to ``base``), probed."""
    checks: list[Check] = []
    _check_keys_and_vault(policy, base, checks)
    _check_consent_and_killswitch(policy, base, checks)
    _check_provenance(policy, base, checks)
    return checks


def _probe(
    checks: list[Check],
    component: str,
    target: str,
    action: Callable[[], str | None],
) -> None:
    try:
        note = action()
    except AIGuardError as exc:
        checks.append(Check(component, target, False, exc.message, exc.code))
    except Exception as exc:  # an untyped fault is itself a finding: report its class only
        checks.append(
            Check(
                component,
                target,
                False,
                f"failed with an untyped {type(exc).__name__} (a bug in aiguard: please report)",
                type(exc).__name__,
            )
        )
    else:
        checks.append(Check(component, target, True, note or "ok: written and read back"))


def _close(thing: Any) -> None:
    close = getattr(thing, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


# -- keys, vault -----------------------------------------------------------------------


def _pg_target(keys: Any) -> str:
    dsn = keys.dsn or os.environ.get(keys.dsn_env)
    return mask_dsn(dsn) if dsn else f"(no DSN: {keys.dsn_env} is not set)"


def _check_keys_and_vault(policy: Any, base: Path, checks: list[Check]) -> None:
    keys = policy.keys
    if keys is not None:
        from ..vault.factory import provider_from_policy

        where = (
            f"variable {keys.env}"
            if keys.provider == "env"
            else os.fspath(_resolve(base, keys.file))
        )

        def root_key() -> str:
            provider = provider_from_policy(keys, base)
            secret = os.urandom(32)
            context = PROBE.encode()
            if provider.unwrap(provider.wrap(secret, context), context) != secret:
                raise AIGuardError("the root key did not unwrap what it wrapped")
            return f"ok: wraps and unwraps ({provider.key_id})"

        _probe(checks, "root key", where, root_key)
    if keys is not None and keys.vault == "memory":
        checks.append(Check("vault", "memory", True, "ok: in memory, nothing to open"))
        return
    if keys is not None and keys.vault == "postgres":
        target = _pg_target(keys)
    elif policy.database is not None:
        target = os.fspath(_resolve(base, policy.database))
    else:
        checks.append(
            Check("vault", "memory", True, "ok: in memory (the policy names no database)")
        )
        return

    def vault() -> str | None:
        if keys is not None:
            from ..vault.factory import vault_from_policy

            store = vault_from_policy(policy, base)
        else:
            from ..vault.factory import embedded_stores

            opened = embedded_stores(
                _resolve(base, policy.database),
                {"consent": _SKIP, "killswitch": _SKIP},
                timeout=policy.database_timeout,
            )
            store = opened["vault"]
        try:
            store.probe()
        finally:
            _close(store)
        return None

    _probe(checks, "vault", target, vault)


# -- consent store, kill switch ----------------------------------------------------------


def _check_consent_and_killswitch(policy: Any, base: Path, checks: list[Check]) -> None:
    keys = policy.keys
    postgres = keys is not None and keys.vault == "postgres"
    if postgres:
        target = _pg_target(keys)
    elif policy.database is not None:
        target = os.fspath(_resolve(base, policy.database))
    else:
        for name in ("consent store", "kill switch"):
            checks.append(Check(name, "memory", True, "ok: in memory (no database named)"))
        return
    for component, name, other in (
        ("consent store", "consent", "killswitch"),
        ("kill switch", "killswitch", "consent"),
    ):

        def open_and_probe(name: str = name, other: str = other) -> str | None:
            overrides: dict[str, Any] = {other: _SKIP}
            if postgres:
                from ..vault.factory import postgres_stores

                opened = postgres_stores(policy, overrides)
            else:
                from ..vault.factory import embedded_stores

                opened = embedded_stores(
                    _resolve(base, policy.database),
                    {**overrides, "vault": _SKIP},
                    timeout=policy.database_timeout,
                )
            store = opened[name]
            try:
                store.probe()
            finally:
                _close(store)
            return None

        _probe(checks, component, target, open_and_probe)


# -- provenance --------------------------------------------------------------------------


def _check_provenance(policy: Any, base: Path, checks: list[Check]) -> None:
    spec = policy.provenance
    if spec is None:
        checks.append(
            Check("provenance", "memory", True, "ok: in memory (the policy has no [provenance])")
        )
        return
    from ..provenance.config import build_sink, sink_key

    if spec.jsonl:
        path = _resolve(base, spec.jsonl)
        _probe(
            checks,
            "provenance jsonl",
            os.fspath(path),
            lambda: _probe_jsonl(path, "[provenance] jsonl"),
        )
    for index, item in enumerate(spec.sinks):
        label = f"provenance sink #{index + 1} ({item.type})"
        if item.type == "jsonl":
            path = _resolve(base, item.path)
            key = sink_key(index, "path")
            _probe(
                checks,
                label,
                os.fspath(path),
                functools.partial(_probe_jsonl, path, key),
            )
        elif item.type == "http":
            spool = _resolve(base, item.spool_dir)
            key = sink_key(index, "spool_dir")
            _probe(
                checks,
                label,
                f"{item.url} (spool {spool})",
                functools.partial(_probe_spool, spool, key),
            )
        elif item.type in ("sqlite", "postgres"):
            target = (
                os.fspath(_resolve(base, item.path))
                if item.type == "sqlite"
                else mask_dsn(item.dsn)
            )

            def database_sink(item: Any = item, index: int = index) -> str | None:
                sink = build_sink(item, base, index)
                try:
                    sink.probe()  # type: ignore[attr-defined]
                finally:
                    _close(sink)
                return None

            _probe(checks, label, target, database_sink)
        else:
            checks.append(Check(label, item.type, True, "ok: nothing to open"))
    if spec.signing_key:
        key_file = _resolve(base, spec.signing_key)
        _probe(
            checks,
            "signing key",
            os.fspath(key_file),
            lambda: _probe_signing_key(key_file, spec.log),
        )
        if spec.checkpoint_file:
            checkpoint = _resolve(base, spec.checkpoint_file)
            _probe(
                checks,
                "checkpoint file",
                os.fspath(checkpoint),
                lambda: _probe_checkpoint_file(checkpoint),
            )


def _probe_file(directory: Path) -> None:
    """Create, write, sync, read back and remove a small file in ``directory``."""
    probe = directory / f".{probe_name()}"
    payload = os.urandom(512)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        if probe.read_bytes() != payload:
            raise OSError(errno.EIO, "a probe file read back different bytes", str(probe))
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def _try_lock(path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - advisory locks are POSIX here
        return
    import fcntl

    with open(path, "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _probe_jsonl(path: Path, key: str) -> str:
    from ..provenance.sinks import _last_line

    with translating(
        ProvenanceError,
        component="the JSONL provenance sink",
        target=os.fspath(path),
        operation="probe the log",
        key=key,
    ):
        prepare_file_location(path)
        _probe_file(path.parent)
        if not path.exists():
            return "ok: the directory is writable; the log will be created"
        _try_lock(path)
        last = _last_line(path)
        if last is None:
            return "ok: the log is empty"
        if not last.endswith(b"\n"):
            return "ok: the last record is torn; the next start cuts it off and records that"
        try:
            record = json.loads(last)
        except ValueError:
            raise ProvenanceError(
                f"{path}: the last record is not valid JSON (the file is damaged); run "
                f"`aiguard verify` and restore it, or point {key} at a new file"
            ) from None
        return f"ok: writable, not locked, last record seq {record.get('seq')} reads"


def _probe_spool(spool: Path, key: str) -> str:
    with translating(
        ProvenanceError,
        component="the HTTP provenance sink's spool",
        target=os.fspath(spool),
        operation="probe the spool",
        key=key,
        catch=(OSError, ValueError),
    ):
        spool.mkdir(parents=True, exist_ok=True)
        _probe_file(spool)
        _try_lock(spool / "spool.lock")
        cursor = spool / "delivered.json"
        if cursor.exists():
            json.loads(cursor.read_bytes())
    return "ok: the spool is writable and not locked (the collector is not contacted)"


def _probe_signing_key(path: Path, log: str) -> str:
    from ..provenance.config import load_signer

    with translating(
        ProvenanceError,
        component="the signing key",
        target=os.fspath(path),
        operation="read the key",
        key="[provenance] signing_key",
    ):
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _probe_file(path.parent)
            return "ok: it will be created on first start"
    # Loaded as start-up loads it: a damaged key or one of another type is reported.
    load_signer(path, log)
    return "ok: readable, an Ed25519 key"


def _probe_checkpoint_file(path: Path) -> str:
    from ..provenance.config import prepare_checkpoint_file

    # The same check a guard makes at start-up.
    prepare_checkpoint_file(path)
    return "ok: its directory is writable"
