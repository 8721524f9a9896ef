"""Building a `ProvenanceLog` from the policy's ``[provenance]`` table."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import ProvenanceError
from ..policy.model import ProvenancePolicy, ProvenanceSinkPolicy
from ..storage._faults import translating
from .chain import ProvenanceLog, Sink
from .checkpoint import Signer
from .sinks import JsonlSink

__all__ = ["build_log", "build_sink", "sink_key"]


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
        if spec.signing_key:
            key_path = _resolve(base, spec.signing_key)
            with translating(
                ProvenanceError,
                component="the signing key",
                target=os.fspath(key_path),
                operation="read or create the key",
                key="[provenance] signing_key",
            ):
                signer = Signer.from_file(key_path, name=name or spec.log, create=True)
        return ProvenanceLog(
            name or spec.log,
            sinks,
            signer=signer,
            checkpoint_every=spec.checkpoint_every,
            checkpoint_interval=spec.checkpoint_seconds,
            checkpoint_file=_resolve(base, spec.checkpoint_file) if spec.checkpoint_file else None,
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
