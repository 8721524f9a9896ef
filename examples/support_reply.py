"""Draft an AI reply to a support ticket without sending the customer's data raw.

Run it as is (it uses aiguard's fake model, no network, no API key):

    python examples/support_reply.py

To call the real API, drop `transport=` and pass your key: aiguard's client keeps the
SDK's timeouts and connection limits.
"""

from __future__ import annotations

from typing import Annotated

import openai
from pydantic import BaseModel

import aiguard
from aiguard.testing import FakeModel, assert_no_raw_values

POLICY = """
[destinations.openai]
base_url = "https://api.openai.com/v1"
models = ["gpt-4o*"]
approved = true
purposes = ["inference"]
max_raw_level = "internal"

[[patterns]]
kind = "account"
level = "sensitive"
regex = "ACC-[0-9]{8}"
"""


class Customer(BaseModel):
    id: str
    name: Annotated[str, aiguard.Classified(aiguard.Level.SENSITIVE, "person")]
    email: Annotated[str, aiguard.Classified(aiguard.Level.SENSITIVE, "email")]


def main() -> None:
    guard = aiguard.Guard(aiguard.policy.parse_policy(POLICY))

    def draft(request: dict[str, object]) -> str:
        # The fake "model" refers to the account token it was given, as a real one would.
        ticket_text = str(request["messages"][-1]["content"])  # type: ignore[index]
        account = ticket_text.rsplit(" ", 1)[-1]
        return f"Dear customer, we have refunded the charge on {account}."

    fake = FakeModel(draft)
    client = openai.OpenAI(
        http_client=guard.http_client(transport=fake.transport),
        base_url="https://api.openai.com/v1",
        api_key="not-needed-for-the-fake",
    )
    customer = Customer(id="cust-42", name="Jane Roe", email="jane.roe@example.com")
    ticket = "Jane Roe here (jane.roe@example.com). Please refund ACC-12345678"
    with guard.context(subject=customer.id, tenant="acme", purpose="inference", known=[customer]):
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": ticket}]
        )
    print("model received:", fake.bodies[0]["messages"][0]["content"])
    print("app got back  :", reply.choices[0].message.content)
    assert_no_raw_values(fake, ["Jane Roe", "jane.roe@example.com", "ACC-12345678"])


if __name__ == "__main__":
    main()
