"""What the example applications share: one guard and the tagged models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel

import aiguard
from aiguard import Classified, Level

guard = aiguard.Guard.from_toml(Path(__file__).parent / "policies" / "app.toml")


class Ticket(BaseModel):
    customer_name: Annotated[str, Classified(Level.SENSITIVE, "person")]
    ssn: Annotated[str, Classified(Level.REGULATED, "ssn")]
    message: str


class Reply(BaseModel):
    text: str
    agent_email: Annotated[str, Classified(Level.SENSITIVE, "email")]


class Record(BaseModel):
    patient: Annotated[str, Classified(Level.SENSITIVE, "person")]
    diagnosis: Annotated[str, Classified(Level.REGULATED, "diagnosis")]
