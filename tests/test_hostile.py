"""Hostile input: hypothesis strategies for SSE streams, provider payloads, policies and
tokens, driving the fuzz targets in fuzz/targets.py (atheris runs them longer; see
docs/fuzzing.md). Short in CI: ``max_examples`` is kept small."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

import targets

CI = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies --------------------------------------------------------------------

line_end = st.sampled_from([b"\n", b"\r\n", b"\r"])
field = st.sampled_from([b"data", b"event", b"id", b"retry", b"", b":", b"dat"])
value = st.binary(max_size=40) | st.sampled_from(
    [b" [EMAIL_7Q2K]", b' {"choices":[{"delta":{"content":"x"}}]}', b" [DONE]"]
)
sse_line = st.builds(lambda f, v, e: f + b":" + v + e, field, value, line_end) | line_end
sse_stream = st.lists(sse_line, max_size=30).map(b"".join) | st.binary(max_size=200)

token_text = st.from_regex(r"\[[A-Z][A-Z0-9_]{0,8}_[0-9A-HJKMNP-TV-Z]{4,6}\]", fullmatch=True)
forged_tokens = st.lists(token_text | st.text(max_size=10), max_size=12).map(" ".join)

json_scalar = st.none() | st.booleans() | st.integers() | st.text(max_size=30) | token_text
json_value = st.recursive(
    json_scalar,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["model", "role", "content", "arguments", "input", "user", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)
chat_payload = st.builds(
    lambda content, extra: {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "metadata": extra,
    },
    st.text(max_size=60) | json_value,
    json_value,
)

policy_key = st.sampled_from(
    ["base_url", "approved", "purposes", "max_raw_level", "fail_open", "models", "mode"]
)
policy_value = st.sampled_from(
    [
        '"https://api.openai.com/v1"',
        "true",
        '["inference"]',
        '"internal"',
        '"bogus"',
        "3",
        "[",
        '"\\u0000"',
        "{}",
        '["*"]',
    ]
)
policy_text = st.lists(
    st.tuples(
        st.sampled_from(["[destinations.openai]", "[actions]", "[[patterns]]", ""]),
        policy_key,
        policy_value,
    ),
    max_size=8,
).map(lambda rows: "\n".join(f"{h}\n{k} = {v}" for h, k, v in rows)) | st.text(max_size=120)


# -- the targets ---------------------------------------------------------------------


@CI
@given(sse_stream)
def test_sse_decoder_is_cut_invariant_and_lossless(data: bytes) -> None:
    targets.sse(data)


@CI
@given(chat_payload)
def test_json_walk_keeps_documents_and_protects_planted_values(payload: object) -> None:
    targets.json_walk(json.dumps(payload).encode())


@CI
@given(forged_tokens)
def test_forged_and_foreign_tokens_never_restore(text: str) -> None:
    targets.token_scanner(text.encode())


@CI
@given(policy_text)
def test_policy_loader_raises_only_policy_errors(text: str) -> None:
    targets.policy_loader(text.encode())


@CI
@given(st.binary(max_size=300))
def test_targets_on_raw_bytes(data: bytes) -> None:
    for target in targets.TARGETS.values():
        target(data)


def test_fuzz_seeds_pass() -> None:
    corpus = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
    for name, target in targets.TARGETS.items():
        for seed in (corpus / name).iterdir():
            target(seed.read_bytes())
