"""Fails AIG001: tagged SENSITIVE and REGULATED fields go to the unapproved destination."""

from __future__ import annotations

from ._common import Ticket, guard


@guard.endpoint(purpose="inference", destination="shadow", subject_from="customer_id")
def summarize_ticket(customer_id: str, ticket: Ticket) -> str:
    return ticket.message
