"""Fails AIG002 under policies/gate.toml: diagnosis (REGULATED) is kept raw for openai."""

from __future__ import annotations

from ._common import Record, guard


@guard.endpoint(purpose="inference", destination="openai")
def triage(record: Record) -> str:
    return record.patient
