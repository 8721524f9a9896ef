"""Fails AIG003: a training endpoint whose use_for_training defaults to True."""

from __future__ import annotations

from ._common import Ticket, guard


@guard.endpoint(purpose="model_training", destination="openai", subject_from="customer_id")
def collect(customer_id: str, ticket: Ticket, use_for_training: bool = True) -> None:
    return None
