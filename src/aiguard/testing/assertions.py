"""Assertions for users' own tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..provenance.chain import EventRecord
from ..provenance.sinks import InMemorySink
from ..provenance.verify import VerifyReport, verify_file, verify_records
from .fake import FakeModel

__all__ = ["assert_chain_valid", "assert_no_raw_values"]


def _preview(value: str) -> str:
    # Even a failing assertion should not print a whole personal value into CI logs.
    return value[:2] + "…" if len(value) > 3 else "…"


def assert_no_raw_values(fake: FakeModel, values: Iterable[str]) -> None:
    """Fail if any of ``values`` reached the model, in any request, raw or JSON-escaped."""
    wanted = [v for v in values if v]
    for number, request in enumerate(fake.requests, start=1):
        body = request.text
        decoded = _all_strings(request.json) if request.body else ""
        for value in wanted:
            escaped = json.dumps(value)[1:-1]
            if value in body or escaped in body or value in decoded:
                raise AssertionError(
                    f"a raw value ({_preview(value)}, {len(value)} chars) reached the model "
                    f"in request {number} to {request.url}"
                )
        for header, content in request.headers.items():
            for value in wanted:
                if value in content:
                    raise AssertionError(
                        f"a raw value ({_preview(value)}) reached the model in header {header!r}"
                    )


def _all_strings(node: Any) -> str:
    if isinstance(node, str):
        return node + "\n"
    if isinstance(node, Mapping):
        return "".join(_all_strings(k) + _all_strings(v) for k, v in node.items())
    if isinstance(node, list):
        return "".join(_all_strings(v) for v in node)
    return ""


def assert_chain_valid(
    events: InMemorySink | Iterable[EventRecord | Mapping[str, Any]] | str | os.PathLike[str],
) -> VerifyReport:
    """Fail unless the events (a sink, records, documents or a JSONL path) verify."""
    if isinstance(events, (str, os.PathLike)):
        report = verify_file(os.fspath(events))
    elif isinstance(events, InMemorySink):
        report = verify_records(events.records)
    else:
        report = verify_records(events)
    if not report.ok:
        raise AssertionError(f"provenance chain does not verify: {report.summary()}")
    return report
