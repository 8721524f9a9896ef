"""Issue #19 item 2: structured values in JSON went out raw.

The transport scanned each string alone, so a key's meaning was lost; JSON numbers and
object keys were never inspected. Every door now walks JSON as `detect_json` does.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from _adv import anthropic_client, gateway, new_guard, openai_client, sent

import aiguard
from aiguard.testing import FakeModel
from aiguard.vault.tokens import TOKEN_RE

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

TOOL_RESULT = {
    "ssn": "536228726",
    "phone": "4155550132",
    "password": "Hunter2xyz!",
    "api_key": "q8Fz2LmP9xK3",
    "dob": "1985-03-12",
    "card_number": 4111111111111111,
}
RAW = ["536228726", "4155550132", "Hunter2xyz!", "q8Fz2LmP9xK3", "1985-03-12", "4111111111111111"]


def _tool_messages(result: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "look the customer up"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "customer"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]


def _tool_result_through_openai(result: Any, raw: list[str]) -> tuple[FakeModel, Any]:
    """Send ``result`` as a tool's answer through the OpenAI SDK; none of ``raw`` went out."""
    guard, sink = new_guard()
    fake = FakeModel(reply="done")
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o-mini", messages=_tool_messages(json.dumps(result))
        )
    upstream = sent(fake)
    for value in raw:
        assert value not in upstream, value
    return fake, sink


def test_a_tool_result_keeps_its_keys_meaning_through_the_openai_sdk(leak_values: Any) -> None:
    leak_values(RAW)
    fake, sink = _tool_result_through_openai(TOOL_RESULT, RAW)
    content = json.loads(fake.requests[0].json["messages"][2]["content"])
    assert set(content) == set(TOOL_RESULT)  # the keys stay; every value is a token
    assert all(isinstance(v, str) and TOKEN_RE.fullmatch(v) for v in content.values())
    assert sink.calls()[0]["findings"]["credit_card"] == 1


def test_numbers_and_object_keys_are_inspected(leak_values: Any) -> None:
    email, card = "jane.doe@example.com", 4111111111111111
    leak_values([email, str(card)])
    guard, _sink = new_guard()
    fake = FakeModel(reply="ok")
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"metadata": {email: "vip", "ref": card}},
        )
    body = fake.requests[0].json
    assert email not in sent(fake) and str(card) not in sent(fake)
    (key,) = set(body["metadata"]) - {"ref"}
    assert TOKEN_RE.fullmatch(key) and body["metadata"][key] == "vip"
    # A JSON number holding a card number goes out as a string token.
    assert TOKEN_RE.fullmatch(body["metadata"]["ref"])


def test_tool_use_input_keys_and_numbers_through_the_anthropic_sdk(leak_values: Any) -> None:
    leak_values(RAW)
    guard, _sink = new_guard()
    fake = FakeModel(reply="ok")
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        anthropic_client(guard, fake).messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=64,
            messages=[
                {"role": "user", "content": "look up"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "tu_1", "name": "lookup", "input": TOOL_RESULT}
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "tu_1",
                            "content": json.dumps(TOOL_RESULT),
                        }
                    ],
                },
            ],
        )
    upstream = sent(fake)
    for value in RAW:
        assert value not in upstream, value


def test_the_gateway_protects_json_with_key_context(leak_values: Any) -> None:
    pytest.importorskip("uvicorn")
    leak_values(RAW)
    model = FakeModel(reply="ok")
    with model.serve() as base, gateway(base + "/v1") as (url, _guard, _sink):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        client.chat.completions.create(
            model="gpt-4o-mini", messages=_tool_messages(json.dumps(TOOL_RESULT))
        )
    upstream = sent(model)
    for value in RAW:
        assert value not in upstream, value


def test_the_direct_door_reads_keys_too(leak_values: Any) -> None:
    leak_values(RAW)
    guard, _sink = new_guard()
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        protected = guard.protect({"record": TOOL_RESULT}, destination="openai")
    text = json.dumps(protected.payload)
    for value in RAW:
        assert value not in text, value
    assert guard.restore(protected.payload, protected)["record"]["ssn"] == "536228726"


def test_depth_beyond_the_limit_is_refused_not_sent() -> None:
    guard, _sink = new_guard()
    fake = FakeModel(reply="ok")
    deep: Any = "jane.doe@example.com"
    for _ in range(200):
        deep = {"a": deep}
    with (
        guard.context(subject="cust-1", tenant="acme", purpose="inference"),
        pytest.raises(aiguard.MalformedPayload, match="nests deeper"),
    ):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"metadata": deep},
        )
    assert fake.requests == []


def test_the_direct_door_reads_a_pydantic_models_keys_and_numbers(leak_values: Any) -> None:
    """`guard.protect(model)` walked the model's strings alone: values under kind-naming
    field names, numbers, dict keys and fields named like structural keys went out raw."""
    from typing import Annotated

    from pydantic import BaseModel

    from aiguard import Classified, Level

    class Record(BaseModel):
        ssn: str
        phone: str
        password: str
        api_key: str
        dob: str
        card_number: int
        id: str
        extra: dict[str, Any]
        owner: Annotated[str, Classified(Level.SENSITIVE, "person")]

    email = "jane.doe@example.com"
    leak_values([*RAW, email, "Jane Roe"])
    guard, _sink = new_guard()
    record = Record(
        **TOOL_RESULT, id=email, extra={email: TOOL_RESULT, "n": 4111111111111111}, owner="Jane Roe"
    )
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        protected = guard.protect(record, destination="openai")
    text = json.dumps(protected.payload)
    for value in [*RAW, email, "Jane Roe"]:
        assert value not in text, value
    assert TOKEN_RE.fullmatch(protected.payload["owner"])  # the tag still decides
    restored = guard.restore(protected.payload, protected)
    assert restored["ssn"] == "536228726" and restored["owner"] == "Jane Roe"
    assert restored["card_number"] == "4111111111111111"  # a number comes back as text


def test_json_too_deep_to_parse_inside_a_string_is_refused_typed() -> None:
    """A tool result holding JSON nested past the parser's limit raised a bare
    RecursionError (the gateway answered 500); it is a `MalformedPayload`, not sent."""
    guard, _sink = new_guard()
    fake = FakeModel(reply="ok")
    deep = "[" * 100_000 + "]" * 100_000
    with (
        guard.context(subject="cust-1", tenant="acme", purpose="inference"),
        pytest.raises(aiguard.MalformedPayload, match="nested too deeply"),
    ):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "tool", "tool_call_id": "call_1", "content": deep}],
        )
    assert fake.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_too_deep_to_parse_is_a_typed_error(stream: bool) -> None:
    """A model answering JSON nested past the parser's limit (a plain answer's content,
    or one SSE event) raised a bare RecursionError; it fails typed and is recorded."""
    deep = "[" * 100_000 + "]" * 100_000

    def answer(request: httpx.Request) -> httpx.Response:
        if not stream:
            body = {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": deep},
                        "finish_reason": "stop",
                    }
                ],
            }
            return httpx.Response(200, json=body)
        frame = '{"id":"c","object":"chat.completion.chunk","created":0,"model":"m","x":'
        content = f"data: {frame}{deep}}}\n\ndata: [DONE]\n\n".encode()
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    guard, sink = new_guard()
    import openai as sdk

    client = sdk.OpenAI(
        http_client=guard.http_client(transport=httpx.MockTransport(answer)),
        base_url="https://api.openai.com/v1",
        api_key="k",
        max_retries=0,
    )
    with (
        guard.context(subject="cust-1", tenant="acme", purpose="inference"),
        pytest.raises(aiguard.MalformedPayload, match="nested too deeply"),
    ):
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        if stream:
            list(reply)  # type: ignore[call-overload]
    assert sink.calls()[-1]["status"] == "error"


def test_the_direct_door_reads_every_key_of_a_dict(leak_values: Any) -> None:
    """`guard.protect(dict)` skipped values under provider-structural keys (`id`, `type`,
    `role`, `name`): the caller's own records went out raw there."""
    email = "jane.doe@example.com"
    card = "4111 1111 1111 1111"
    leak_values([email, card])
    guard, _sink = new_guard()
    record = {"id": email, "type": card, "role": email, "items": [{"name": email}]}
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        protected = guard.protect(record, destination="openai")
    text = json.dumps(protected.payload)
    assert email not in text and card not in text
    assert guard.restore(protected.payload, protected) == record


# A FHIR Patient as a tool returns it: identifiers and contact points name their kind in
# a sibling ("type", "system"), not in their key, which is always "value".
PATIENT = {
    "resourceType": "Patient",
    "identifier": [
        {
            "type": {"coding": [{"code": "MR", "display": "Medical Record Number"}]},
            "value": "b7e1c2d4-0f3a-4e59-8d21-6c9a7f0e5b13",
        },
        {"type": {"text": "Driver's License"}, "value": "S12345678"},
        {"type": {"coding": [{"code": "PPN"}]}, "value": "X12345678X"},
    ],
    "telecom": [{"system": "phone", "value": "5552017788"}],
}
PATIENT_RAW = ["b7e1c2d4-0f3a-4e59-8d21-6c9a7f0e5b13", "S12345678", "X12345678X", "5552017788"]


def test_a_fhir_patient_keeps_its_identifiers_kinds_through_the_openai_sdk(
    leak_values: Any,
) -> None:
    leak_values(PATIENT_RAW)
    _fake, sink = _tool_result_through_openai(PATIENT, PATIENT_RAW)
    findings = sink.calls()[0]["findings"]
    assert findings["medical_record_number"] == 1
    assert findings["driver_license"] == 1
    assert findings["passport"] == 1


def test_a_fhir_patient_handed_to_protect_comes_back_tokenized_and_restores() -> None:
    guard, _sink = new_guard()
    context = aiguard.CallContext(
        subject="cust-1", tenant="acme", purpose="inference", destination="openai"
    )
    protected = guard.protect(PATIENT, context)
    text = json.dumps(protected.payload)
    for value in PATIENT_RAW:
        assert value not in text, value
    assert protected.payload["identifier"][1]["type"] == {"text": "Driver's License"}
    assert guard.restore(protected.payload, protected) == PATIENT
