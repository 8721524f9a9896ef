"""Building a `ProvenanceLog` from the policy's ``[provenance]`` table."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from ..errors import PolicyError, ProvenanceError
from ..policy.model import ProvenancePolicy, ProvenanceSinkPolicy
from ..storage._faults import prepare_file_location, translating
from .chain import ProvenanceLog, Sink
from .checkpoint import Signer
from .sinks import JsonlSink

__all__ = ["build_log", "build_sink", "load_signer", "prepare_checkpoint_file", "sink_key"]

SIGNING_KEY = "[provenance] signing_key"
CHECKPOINT_FILE = "[provenance] checkpoint_file"


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def sink_key(index: int, field: str) -> str:
    """The policy key of field ``field`` of the ``index``-th (0-based) configured sink."""
    return f"[[provenance.sinks]] #{index + 1} {field}"


def build_sink(
    spec: ProvenanceSinkPolicy, base: Path, index: int = 0, *, log: str | None = None
) -> Sink:
    """One configured sink; optional drivers load only for the sinks that are used.

    ``index`` is its place in ``[[provenance.sinks]]``, named by its errors. ``log`` is
    the log's name: a database sink (SQLite, PostgreSQL) holds several logs, and resumes
    and reads back only this one (None: the database's only log).
    """
    if spec.type == "jsonl":
        assert spec.path is not None
        return JsonlSink(
            _resolve(base, spec.path),
            fsync=spec.fsync,
            required=spec.required,
            key=sink_key(index, "path"),
        )
    if spec.type == "sqlite":
        from .sqlite_sink import SqliteSink

        assert spec.path is not None
        return SqliteSink(
            _resolve(base, spec.path),
            log=log,
            required=spec.required,
            timeout=spec.lock_timeout,
            key=sink_key(index, "path"),
        )
    if spec.type == "postgres":
        from .postgres import PostgresSink

        assert spec.dsn is not None
        return PostgresSink(
            spec.dsn,
            log=log,
            required=spec.required,
            connect_timeout=spec.connect_timeout,
            statement_timeout=spec.statement_timeout,
            key=sink_key(index, "dsn"),
        )
    if spec.type == "logging":
        from .logging_sink import LoggingSink

        return LoggingSink(required=spec.required)
    if spec.type == "otel":
        from .otel import OpenTelemetrySink

        return OpenTelemetrySink(required=spec.required)
    from .http_sink import HttpSink

    assert spec.url is not None and spec.spool_dir is not None
    return HttpSink(
        spec.url,
        spool_dir=_resolve(base, spec.spool_dir),
        required=spec.required,
        key=sink_key(index, "spool_dir"),
    )


def build_log(spec: ProvenancePolicy, base: Path, name: str | None = None) -> ProvenanceLog:
    """The log of ``[provenance]``; a sink that cannot open closes the ones opened before it
    (their file locks are released) and raises its typed error."""
    sinks: list[Sink] = []
    try:
        if spec.jsonl:
            sinks.append(JsonlSink(_resolve(base, spec.jsonl), fsync=spec.fsync))
        sinks.extend(
            build_sink(item, base, index, log=name or spec.log)
            for index, item in enumerate(spec.sinks)
        )
        signer = None
        checkpoint_file = _resolve(base, spec.checkpoint_file) if spec.checkpoint_file else None
        if spec.signing_key:
            signer = load_signer(_resolve(base, spec.signing_key), name or spec.log)
            if checkpoint_file is not None:
                prepare_checkpoint_file(checkpoint_file)
        return ProvenanceLog(
            name or spec.log,
            sinks,
            signer=signer,
            checkpoint_every=spec.checkpoint_every,
            checkpoint_interval=spec.checkpoint_seconds,
            checkpoint_file=checkpoint_file,
            background=spec.background,
            queue_size=spec.queue_size,
            when_full=spec.when_full,
        )
    except BaseException:
        for sink in sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
        raise


def load_signer(path: Path, name: str) -> Signer:
    """The signing key at ``path`` (created, with its directory, when missing); any fault
    of the file, or a file that holds no Ed25519 key, raises `ProvenanceError`."""
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise PolicyError(
            f"[provenance] log = {name!r}: a signed log's name is non-empty, without spaces "
            "or '+' (it names the signer of every checkpoint)",
            key="[provenance] log",
        )
    from cryptography.exceptions import UnsupportedAlgorithm

    target = os.fspath(path)
    with translating(
        ProvenanceError,
        component="the signing key",
        target=target,
        operation="read or create the key",
        key=SIGNING_KEY,
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return Signer.from_file(path, name=name, create=True)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ProvenanceError(
                f"the signing key {target}: cannot read the key: the file holds no usable "
                "Ed25519 private key (a raw 32-byte seed or an unencrypted PEM key; damaged "
                "or another file): restore it, or point the policy key at a new file, which "
                f"is then created. It is configured by the policy key {SIGNING_KEY}."
            ) from exc


def prepare_checkpoint_file(path: Path) -> None:
    """Check at start-up that the latest checkpoint can be written to ``path`` (its
    directory is created), so a read-only or misnamed location fails the start, not the
    call that happens to seal a checkpoint."""
    with translating(
        ProvenanceError,
        component="the checkpoint file",
        target=os.fspath(path),
        operation="prepare the checkpoint file",
        key=CHECKPOINT_FILE,
    ):
        prepare_file_location(path)
        # A name of its own: a process still running with this file is never disturbed.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        temporary.unlink()
