"""Provenance: events, canonical hashing, the chain, sinks and verification."""

from __future__ import annotations

from .canonical import canonical_bytes
from .chain import (
    BatchSink,
    EventRecord,
    ProvenanceLog,
    Receipt,
    ResumableSink,
    SequencingSink,
    Sink,
)
from .checkpoint import Signer, Verifier
from .events import ProvenanceEvent
from .sinks import InMemorySink, JsonlSink
from .verify import (
    VerifyFailure,
    VerifyOptions,
    VerifyReport,
    verify_file,
    verify_lines,
    verify_records,
)

__all__ = [
    "BatchSink",
    "EventRecord",
    "InMemorySink",
    "JsonlSink",
    "ProvenanceEvent",
    "ProvenanceLog",
    "Receipt",
    "ResumableSink",
    "SequencingSink",
    "Signer",
    "Sink",
    "Verifier",
    "VerifyFailure",
    "VerifyOptions",
    "VerifyReport",
    "canonical_bytes",
    "verify_file",
    "verify_lines",
    "verify_records",
]
