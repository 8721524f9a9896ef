"""Issue #19 item 3: query strings, headers and URL paths were never inspected, and the
gateway's access log printed the query string."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import pytest
from _adv import gateway, new_guard, openai_client, sent

import aiguard
from aiguard.testing import FakeModel
from aiguard.vault.tokens import TOKEN_RE

openai = pytest.importorskip("openai")

EMAIL = "jane.doe@example.com"
SSN = "536-22-8726"


def _all_encodings(value: str) -> list[str]:
    return [
        value,
        urllib.parse.quote(value),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
    ]


def test_extra_query_values_are_tokenized(leak_values: Any) -> None:
    leak_values([EMAIL, SSN])
    guard, _sink = new_guard()
    fake = FakeModel(reply="ok")
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_query={"email": EMAIL, "note": f"ssn {SSN}", "plain": "kept"},
        )
    upstream = sent(fake)
    for value in (EMAIL, SSN):
        assert not any(e in upstream for e in _all_encodings(value))
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(fake.requests[0].url).query))
    assert TOKEN_RE.fullmatch(query["email"]) and query["plain"] == "kept"


def test_extra_headers_are_inspected_credentials_are_not(leak_values: Any) -> None:
    leak_values([EMAIL])
    guard, _sink = new_guard()
    fake = FakeModel(reply="ok")
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Customer": f"mail {EMAIL}"},
        )
    headers = fake.requests[0].headers
    assert EMAIL not in sent(fake)
    assert TOKEN_RE.search(headers["x-customer"])
    assert headers["authorization"] == "Bearer k"  # the destination's credential passes


def test_path_segments_are_tokenized(leak_values: Any) -> None:
    leak_values([EMAIL])
    guard, _sink = new_guard()
    fake = FakeModel(reply="ok")
    with guard.context(subject="cust-1", tenant="acme", purpose="inference"):
        openai_client(guard, fake).files.delete(EMAIL)
    assert fake.requests, "the request went out"
    assert not any(e in sent(fake) for e in _all_encodings(EMAIL))
    assert "%5BEMAIL_" in fake.requests[0].url


def test_a_blocked_kind_in_a_header_refuses_the_call() -> None:
    policy = aiguard.Policy(
        destinations={
            "openai": aiguard.DestinationPolicy(
                base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
            )
        },
        actions={"kinds": {"email": "block"}},
    )
    guard, sink = new_guard(policy)
    fake = FakeModel(reply="ok")
    with (
        guard.context(subject="cust-1", tenant="acme", purpose="inference"),
        pytest.raises(aiguard.PolicyDenied, match="headers"),
    ):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Customer": EMAIL},
        )
    assert fake.requests == []
    assert sink.events[-1]["type"] == "refusal"


def test_the_gateway_forwards_no_raw_query_and_logs_none(
    leak_values: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("uvicorn")
    from aiguard.cli.gateway import install_access_log_filter

    leak_values([EMAIL])
    install_access_log_filter()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    access = logging.getLogger("uvicorn.access")
    handler = Collect()
    model = FakeModel(reply="ok")
    with model.serve() as base, gateway(base + "/v1") as (url, _guard, _sink):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        access.addHandler(handler)  # after uvicorn configured its loggers
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                extra_query={"user": EMAIL},
            )
            record = logging.LogRecord(
                "uvicorn.access",
                logging.INFO,
                __file__,
                1,
                '%s - "%s %s HTTP/%s" %d',
                ("127.0.0.1:1", "POST", f"/v1/chat/completions?user={EMAIL}", "1.1", 200),
                None,
            )
            access.handle(record)
    access.removeHandler(handler)
    assert not any(e in sent(model) for e in _all_encodings(EMAIL))
    logged = "\n".join(lines)
    assert "/v1/chat/completions" in logged
    assert not any(e in logged for e in _all_encodings(EMAIL))
