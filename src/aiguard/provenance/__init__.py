"""Provenance: events, canonical hashing, the chain, sinks and verification."""

from __future__ import annotations

from .canonical import canonical_bytes
from .chain import EventRecord, ProvenanceLog, Sink
from .events import ProvenanceEvent
from .sinks import InMemorySink, JsonlSink
from .verify import VerifyFailure, VerifyReport, verify_file, verify_lines, verify_records

__all__ = [
    "EventRecord",
    "InMemorySink",
    "JsonlSink",
    "ProvenanceEvent",
    "ProvenanceLog",
    "Sink",
    "VerifyFailure",
    "VerifyReport",
    "canonical_bytes",
    "verify_file",
    "verify_lines",
    "verify_records",
]
