"""The output rule reads JSON a model writes as the request side does: a value whose key
(or the sibling naming an object's ``value``) names a kind is that kind whole, even when
the value has no shape of its own (a FHIR medical record number that is a UUID)."""

from __future__ import annotations

import json

import pytest

import aiguard
from aiguard.testing import Answer, FakeModel, ToolCall

openai = pytest.importorskip("openai")

MRN = "4f1c2a9e-77b1-4d1e-9c1a-2b3c4d5e6f70"
FHIR = {
    "resourceType": "Patient",
    "identifier": [{"type": {"text": "Medical Record Number"}, "value": MRN}],
}
WINDOWS = {MRN[i : i + 4] for i in range(len(MRN) - 3)}


def _client(fake: FakeModel, guard: aiguard.Guard) -> object:
    return openai.OpenAI(
        http_client=guard.http_client(transport=fake.transport),
        base_url="https://api.openai.com/v1",
        api_key="k",
        max_retries=0,
    )


def _guard() -> aiguard.Guard:
    return aiguard.Guard(
        aiguard.policy.parse_policy(
            '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\n'
            'approved = true\npurposes = ["inference"]\n'
        )
    )


@pytest.mark.parametrize(
    ("arguments", "stream"),
    [
        (json.dumps(FHIR), False),
        (json.dumps({"mrn": MRN}), False),
        (json.dumps({"mrn": MRN}), True),
        (json.dumps({"patient": {"medical_record_number": MRN, "note": "ok"}}), False),
        (json.dumps({"patient": {"medical_record_number": MRN, "note": "ok"}}), True),
        (json.dumps({"fields": [{"name": "MRN", "value": MRN}]}), False),
        # Streamed, a sibling names the value only within the 64 characters of released
        # text the stream keeps as context (docs/payloads.md).
        (json.dumps({"fields": [{"name": "MRN", "value": MRN}]}), True),
    ],
)
def test_a_value_named_by_its_key_is_withheld_in_tool_arguments(
    arguments: str, stream: bool
) -> None:
    fake = FakeModel(Answer(tool_calls=(ToolCall("save", arguments),)), chunk_size=3)
    guard = _guard()
    client = _client(fake, guard)
    messages = [{"role": "user", "content": "file the record"}]
    with guard.context(subject="p-1", tenant="clinic", purpose="inference"):
        if stream:
            pieces = []
            for chunk in client.chat.completions.create(  # type: ignore[attr-defined]
                model="gpt-4o", messages=messages, stream=True
            ):
                for call in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
                    pieces.append(call.function.arguments or "")
            assert not [p for p in pieces if any(w in p for w in WINDOWS)], pieces
            written = "".join(pieces)
        else:
            answer = client.chat.completions.create(  # type: ignore[attr-defined]
                model="gpt-4o", messages=messages
            )
            written = answer.choices[0].message.tool_calls[0].function.arguments
    assert MRN not in written
    assert "[REDACTED:medical_record_number]" in written
    json.loads(written)  # still JSON


def test_a_value_the_call_sent_comes_back_and_masks_are_not_leaks() -> None:
    """The caller's own record number is restored; a mask under the key is no value."""
    sent = json.dumps({"mrn": MRN})
    fake = FakeModel(
        lambda request: Answer(tool_calls=(ToolCall("save", request["messages"][0]["content"]),))
    )
    guard = _guard()
    client = _client(fake, guard)
    with guard.context(subject="p-1", tenant="clinic", purpose="inference"):
        answer = client.chat.completions.create(  # type: ignore[attr-defined]
            model="gpt-4o", messages=[{"role": "user", "content": sent}]
        )
    assert json.loads(answer.choices[0].message.tool_calls[0].function.arguments) == {"mrn": MRN}
    call = guard.begin(aiguard.CallContext(purpose="inference"), "openai")
    call.sent_text = ""
    assert call.restore_text("$", json.dumps({"password": "********"})) == json.dumps(
        {"password": "********"}
    )
    assert not call.leaks


def test_a_keyed_value_in_a_text_answer_is_withheld_whole() -> None:
    """JSON written inside prose (a fenced snippet) is read the same way."""
    call = _guard().begin(aiguard.CallContext(purpose="inference"), "openai")
    call.sent_text = ""
    text = f'Here it is:\n```json\n{{"mrn": "{MRN}", "name": "x"}}\n```'
    out = call.restore_text("$", text)
    assert MRN not in out and "[REDACTED:medical_record_number]" in out
    assert dict(call.leaks) == {"medical_record_number": 1}
