"""Property: whatever field of a chat delta a new value streams in, and wherever the
upstream cuts it into events, the caller reads the same redacted text and never a
part of the value (the stream core the transports and the gateway run)."""

from __future__ import annotations

import base64
import itertools
import json
import urllib.parse
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.context import CallContext
from aiguard.doors.streaming import StreamRestorer, TokenRestorer
from aiguard.pipeline.call import Call

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
ENCODED = [CARD, urllib.parse.quote(EMAIL, safe=""), base64.b64encode(CARD.encode()).decode()]
ANSWER = f"Card {ENCODED[0]} mail {ENCODED[1]} b {ENCODED[2]} bye."
FIELDS = ["content", "refusal", "reasoning_content", "x_vendor_note", "content_part", "tool"]


def _call() -> Call:
    policy = aiguard.Policy(
        destinations={
            "openai": aiguard.DestinationPolicy(
                base_url="https://api.openai.com/v1",
                approved=True,
                purposes=["inference"],
                output_rule_level=aiguard.Level.SENSITIVE,
            )
        }
    )
    return Call(aiguard.Guard(policy, sinks=[aiguard.InMemorySink()]), CallContext(), "openai")


def _delta(name: str, piece: str) -> dict[str, Any]:
    if name == "content_part":
        return {"content": [{"type": "text", "text": piece}]}
    if name == "tool":
        return {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
    return {name: piece}


def _read(name: str, doc: dict[str, Any]) -> str:
    out = ""
    for choice in doc.get("choices", []):
        delta = choice.get("delta") or {}
        if name == "content_part":
            out += "".join(p.get("text", "") for p in delta.get("content") or [])
        elif name == "tool":
            out += "".join(
                c["function"].get("arguments", "") for c in delta.get("tool_calls") or []
            )
        else:
            out += delta.get(name) or ""
    return out


def stream(name: str, text: str, cuts: list[int]) -> tuple[str, bytes, Call]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    frames = [
        b"data: "
        + json.dumps(
            {"id": "c", "choices": [{"index": 0, "delta": _delta(name, text[a:b])}]}
        ).encode()
        + b"\n\n"
        for a, b in itertools.pairwise(bounds)
    ]
    frames.append(b"data: [DONE]\n\n")
    call = _call()
    core = StreamRestorer(TokenRestorer(call.lookup, call))
    out = b"".join(core.feed(f) for f in frames) + core.close()
    docs = [
        json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: {")
    ]
    return "".join(_read(name, d) for d in docs), out, call


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(FIELDS), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_any_field_any_cuts_same_redacted_text(name: str, cuts: list[int]) -> None:
    text = json.dumps({"note": ANSWER}) if name == "tool" else ANSWER
    whole, _, _ = stream(name, text, [])
    got, raw, call = stream(name, text, cuts)
    assert got == whole
    shown = json.loads(got)["note"] if name == "tool" else got
    assert shown.count("[REDACTED:") == 3, shown
    decoded = raw.decode()
    for value in ENCODED:
        for i in range(len(value) - 5):
            assert value[i : i + 6] not in decoded
    assert sum(call.leaks.values()) >= 2
    assert all(p.startswith("$.choices[0].delta.") for p in call.leak_paths), call.leak_paths
