"""Fuzz targets shared by atheris (fuzz/run.py) and the hypothesis tests in CI
(tests/test_hostile.py). Each takes bytes and raises only on a real bug: an exception
type the component does not document, or a broken invariant (AssertionError).
"""

from __future__ import annotations

import json
import random
from typing import Any

import aiguard
from aiguard.context import CallContext
from aiguard.errors import AIGuardError
from aiguard.policy import parse_policy
from aiguard.policy.model import DestinationPolicy, Policy
from aiguard.providers.walk import map_all_strings, map_strings
from aiguard.doors.streaming import SSEDecoder
from aiguard.vault.tokens import TOKEN_RE, Scope

__all__ = ["TARGETS", "json_walk", "policy_loader", "sse", "token_scanner"]

_SECRET_VALUES = ("owner.a@example.org", "4111 1111 1111 1111", "123-45-6780")


def _frames(decoder: SSEDecoder, pieces: list[bytes]) -> tuple[Any, ...]:
    """(events with data, all raw bytes). Data-less frames (comments, a stray line end
    left by a CR/LF cut) are passed through untouched, so only their bytes matter."""
    out = []
    for piece in pieces:
        out += decoder.feed(piece)
    out += decoder.close()
    events = [(f.data, f.event, f.id) for f in out if f.data is not None]
    return events, b"".join(f.raw for f in out)


def sse(data: bytes) -> None:
    """The SSE decoder: never raises, and the events do not depend on how bytes are cut."""
    whole = _frames(SSEDecoder(), [data])
    assert whole[1] == data, "the decoder must pass every byte through"
    rng = random.Random(len(data))
    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, 6)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert _frames(SSEDecoder(), pieces) == whole, "events depend on chunk boundaries"
    one_by_one = _frames(SSEDecoder(), [data[i : i + 1] for i in range(len(data))])
    assert one_by_one == whole, "events depend on chunk boundaries (1-byte chunks)"


def json_walk(data: bytes) -> None:
    """The JSON walk: identity keeps the document; every string is visited once."""
    try:
        doc = json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        return
    if _depth(doc) > 200:
        return
    assert map_strings(doc, lambda _p, s: s) == doc
    assert map_all_strings(doc, lambda _p, s: s) == doc
    seen: list[str] = []
    map_all_strings(doc, lambda _p, s: seen.append(s) or s)
    assert len(seen) == _count_strings(doc)
    # Protecting it never lets a planted value through.
    guard = _guard()
    call = guard.begin(CallContext(purpose="inference", subject="s"), "openai")
    planted = {"payload": doc, "note": f"contact {_SECRET_VALUES[0]}"}
    out = json.dumps(call.protect_json(planted), ensure_ascii=False)
    assert _SECRET_VALUES[0] not in out


def token_scanner(data: bytes) -> None:
    """Restoring arbitrary text (forged tokens included) never yields a value issued in
    another scope, and text with no token of the caller's scope comes back unchanged
    apart from output-rule redactions."""
    text = data.decode("utf-8", "replace")
    guard = _guard()
    owner = guard.begin(CallContext(purpose="inference", tenant="victim"), "openai")
    issued = [guard.vault.tokenize(owner.scope, "email", _SECRET_VALUES[0])]
    attacker = guard.begin(CallContext(purpose="inference", tenant="attacker"), "openai")
    forged = text + " " + " ".join(issued) + " " + text.replace("[", "[EMAIL_")
    out = attacker.restore_text("$", forged)
    assert _SECRET_VALUES[0] not in out or _SECRET_VALUES[0] in forged
    for token in TOKEN_RE.finditer(out):
        assert guard.vault.detokenize(Scope("attacker"), token.group(0)) is None


def policy_loader(data: bytes) -> None:
    """The policy loader raises `PolicyError` (an `AIGuardError`) or returns a `Policy`."""
    text = data.decode("utf-8", "replace")
    try:
        policy = parse_policy(text)
    except AIGuardError:
        return
    assert isinstance(policy, Policy)


def _depth(node: Any, level: int = 0) -> int:
    if isinstance(node, dict):
        return max((_depth(v, level + 1) for v in node.values()), default=level + 1)
    if isinstance(node, list):
        return max((_depth(v, level + 1) for v in node), default=level + 1)
    return level


def _count_strings(node: Any) -> int:
    if isinstance(node, str):
        return 1
    if isinstance(node, dict):
        return sum(_count_strings(v) for v in node.values())
    if isinstance(node, list):
        return sum(_count_strings(v) for v in node)
    return 0


_GUARD: list[aiguard.Guard] = []


def _guard() -> aiguard.Guard:
    if not _GUARD:
        policy = Policy(
            destinations={
                "openai": DestinationPolicy(
                    base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
                )
            }
        )
        _GUARD.append(aiguard.Guard(policy, secret=b"f" * 32))
    return _GUARD[0]


TARGETS = {
    "sse": sse,
    "json_walk": json_walk,
    "token_scanner": token_scanner,
    "policy_loader": policy_loader,
}
