"""`aiguard.providers.walk.scalar_spans`: JSON written as ``json.dumps`` writes it, with
where each string and number value is, so a finding in the whole text can be traced to
the value that holds it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aiguard.providers.walk import scalar_spans

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
_documents = st.one_of(
    st.lists(_json, max_size=4), st.dictionaries(st.text(max_size=6), _json, max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(_documents)
def test_the_text_is_json_dumps_and_each_span_holds_its_value(doc: Any) -> None:
    text, scalars = scalar_spans(doc)
    assert text == json.dumps(doc, ensure_ascii=False)
    for start, end, _path, container, key in scalars:
        value = container[key]
        assert isinstance(value, (str, int, float)) and not isinstance(value, bool)
        assert text[start:end] == json.dumps(value, ensure_ascii=False)
    # Every string and number is listed once, in text order; nothing else is.
    starts = [s for s, *_ in scalars]
    assert starts == sorted(set(starts))
    assert len(scalars) == _count(doc)


def _count(node: Any) -> int:
    if isinstance(node, dict):
        return sum(_count(v) for v in node.values())
    if isinstance(node, list):
        return sum(_count(v) for v in node)
    return int(isinstance(node, (str, int, float)) and not isinstance(node, bool))


def test_paths_name_each_value() -> None:
    _text, scalars = scalar_spans({"a": [1, {"b": "x"}], "c": None}, "$.args")
    assert [path for _s, _e, path, _c, _k in scalars] == ["$.args.a[0]", "$.args.a[1].b"]
