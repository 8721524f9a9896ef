"""Every built-in provenance sink, in one place users import from.

Drivers for the optional ones (psycopg, OpenTelemetry) are imported only when such a
sink is created, so importing this module costs nothing extra.
"""

from __future__ import annotations

from .provenance.chain import BatchSink, ResumableSink, SequencingSink, Sink
from .provenance.http_sink import HttpSink
from .provenance.logging_sink import LoggingSink
from .provenance.otel import OpenTelemetrySink
from .provenance.postgres import PostgresSink, read_postgres
from .provenance.sinks import InMemorySink, JsonlSink
from .provenance.sqlite_sink import SqliteSink, read_sqlite

__all__ = [
    "BatchSink",
    "HttpSink",
    "InMemorySink",
    "JsonlSink",
    "LoggingSink",
    "OpenTelemetrySink",
    "PostgresSink",
    "ResumableSink",
    "SequencingSink",
    "Sink",
    "SqliteSink",
    "read_postgres",
    "read_sqlite",
]
