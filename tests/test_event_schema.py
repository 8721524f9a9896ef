"""The event schema: documented, current, and matched by what the library writes."""

from __future__ import annotations

import json
from pathlib import Path

from aiguard.cli import main
from aiguard.provenance.events import ProvenanceEvent, event_json_schema

DOCS = Path(__file__).resolve().parent.parent / "docs" / "event-schema.json"


def test_docs_hold_the_current_schema() -> None:
    assert DOCS.read_text() == event_json_schema(), (
        "docs/event-schema.json is stale; regenerate it with "
        "python -c \"from aiguard.provenance.events import event_json_schema; "
        "open('docs/event-schema.json','w').write(event_json_schema())\""
    )


def test_every_event_the_demo_writes_validates(tmp_path: Path) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "provenance.jsonl").read_text().splitlines()
    types = set()
    for line in lines:
        event = ProvenanceEvent.model_validate(json.loads(line))
        types.add(event.type)
    assert {"genesis", "call", "refusal", "checkpoint"} <= types
