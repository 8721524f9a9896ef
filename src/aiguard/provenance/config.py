"""Building a `ProvenanceLog` from the policy's ``[provenance]`` table."""

from __future__ import annotations

from pathlib import Path

from ..policy.model import ProvenancePolicy, ProvenanceSinkPolicy
from .chain import ProvenanceLog, Sink
from .checkpoint import Signer
from .sinks import JsonlSink

__all__ = ["build_log", "build_sink"]


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def build_sink(spec: ProvenanceSinkPolicy, base: Path) -> Sink:
    """One configured sink; optional drivers load only for the sinks that are used."""
    if spec.type == "jsonl":
        assert spec.path is not None
        return JsonlSink(_resolve(base, spec.path), fsync=spec.fsync, required=spec.required)
    if spec.type == "sqlite":
        from .sqlite_sink import SqliteSink

        assert spec.path is not None
        return SqliteSink(_resolve(base, spec.path), required=spec.required)
    if spec.type == "postgres":
        from .postgres import PostgresSink

        assert spec.dsn is not None
        return PostgresSink(spec.dsn, required=spec.required)
    if spec.type == "logging":
        from .logging_sink import LoggingSink

        return LoggingSink(required=spec.required)
    if spec.type == "otel":
        from .otel import OpenTelemetrySink

        return OpenTelemetrySink(required=spec.required)
    from .http_sink import HttpSink

    assert spec.url is not None and spec.spool_dir is not None
    return HttpSink(spec.url, spool_dir=_resolve(base, spec.spool_dir), required=spec.required)


def build_log(spec: ProvenancePolicy, base: Path, name: str | None = None) -> ProvenanceLog:
    sinks: list[Sink] = []
    if spec.jsonl:
        sinks.append(JsonlSink(_resolve(base, spec.jsonl), fsync=spec.fsync))
    sinks.extend(build_sink(item, base) for item in spec.sinks)
    signer = None
    if spec.signing_key:
        signer = Signer.from_file(
            _resolve(base, spec.signing_key), name=name or spec.log, create=True
        )
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
