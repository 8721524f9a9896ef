"""Issue #19 item 4: raw values in aiguard's own records (events, errors, logs)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from _adv import new_guard, openai_client, sent

import aiguard
from aiguard.testing import FakeModel

openai = pytest.importorskip("openai")

EMAIL = "jane.doe@example.com"


def _records(sink: Any) -> str:
    return json.dumps(sink.events, default=str)


def test_an_idempotency_key_is_digested_in_events(leak_values: Any) -> None:
    leak_values([EMAIL])
    guard, sink = new_guard()
    fake = FakeModel(reply="ok")
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        client = openai_client(guard, fake)
        for _ in range(2):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"Idempotency-Key": EMAIL},
            )
    calls = sink.calls()
    assert EMAIL not in _records(sink)
    assert calls[0]["request_id"].startswith("idem_")
    assert calls[0]["request_id"] == calls[1]["request_id"]  # equal keys, equal ids
    assert EMAIL not in sent(fake)  # the header itself is inspected on the way out


def test_an_unreadable_path_is_not_quoted(leak_values: Any) -> None:
    leak_values([EMAIL])
    guard, sink = new_guard()
    fake = FakeModel(reply="ok")
    with (
        guard.context(subject="cust-1", tenant="acme", purpose="inference"),
        pytest.raises(aiguard.MalformedPayload) as caught,
    ):
        openai_client(guard, fake).post(
            f"/users/{EMAIL}/notes", body={"note": "hello"}, cast_to=httpx.Response
        )
    assert EMAIL not in str(caught.value) and "no payload adapter" in str(caught.value)
    assert EMAIL not in _records(sink)
    assert fake.requests == []


def test_a_content_type_holding_data_is_not_quoted(leak_values: Any) -> None:
    leak_values([EMAIL])
    guard, sink = new_guard()
    fake = FakeModel(reply="ok")
    with (
        guard.context(subject="cust-1", tenant="acme", purpose="inference"),
        pytest.raises(aiguard.MalformedPayload) as caught,
    ):
        openai_client(guard, fake).post(
            "/chat/completions",
            body={"model": "gpt-4o-mini", "messages": []},
            cast_to=httpx.Response,
            options={"headers": {"Content-Type": f"text/{EMAIL}"}},
        )
    assert EMAIL not in str(caught.value)
    assert EMAIL not in _records(sink)


def test_a_model_name_holding_data_is_not_recorded(leak_values: Any) -> None:
    leak_values([EMAIL])
    guard, sink = new_guard()
    fake = FakeModel(reply="ok")
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        try:
            openai_client(guard, fake).chat.completions.create(
                model=EMAIL, messages=[{"role": "user", "content": "hi"}]
            )
        except aiguard.AIGuardError as exc:
            assert EMAIL not in str(exc)
    assert EMAIL not in _records(sink)


@pytest.mark.parametrize("keys", [False, True])
def test_a_purpose_the_gateway_caller_names_is_not_recorded_or_quoted(
    leak_values: Any, keys: bool
) -> None:
    """X-AIGuard-Purpose is the gateway caller's text: an unknown one reached the
    refusal event and both error messages raw."""
    pytest.importorskip("uvicorn")
    from _adv import gateway

    from aiguard.doors.gateway import ApiKey, hash_key

    leak_values([EMAIL])
    config: dict[str, Any] = {}
    if keys:  # a key limited to some purposes: the other refusal
        config["keys"] = [ApiKey(sha256=hash_key("gw-1"), principal="svc", tenant="acme")]
    model = FakeModel(reply="ok")
    with model.serve() as base, gateway(base + "/v1", config=config) as (url, _guard, sink):
        answer = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-aiguard-purpose": EMAIL, "authorization": "Bearer gw-1"},
        )
        plain = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-aiguard-purpose": "marketing", "authorization": "Bearer gw-1"},
        )
    assert answer.status_code == 403
    assert EMAIL not in answer.text and "digest" in answer.text
    assert "'marketing'" in plain.text  # a plain name is still quoted
    assert EMAIL not in _records(sink)
    assert model.requests == []
