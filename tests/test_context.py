"""guard.context: what a block's calls carry, alone or inside another block."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aiguard
from aiguard.classify.detectors import KnownValue
from aiguard.classify.levels import Level
from aiguard.context import CallContext, ContextScope, current_context

_TEXT = st.text(min_size=1, max_size=8)
_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "subject": st.none() | _TEXT,
        "tenant": _TEXT,
        "purpose": st.none() | _TEXT,
        "conversation": st.none() | _TEXT,
        "principal": st.none() | _TEXT,
        "use_for_training": st.booleans(),
        "destination": st.none() | _TEXT,
        "dataset_version": st.none() | _TEXT,
        "model_version": st.none() | _TEXT,
        "explanation_ref": st.none() | _TEXT,
    },
)


@given(outer=_CHANGES, inner=_CHANGES)
def test_a_block_sets_its_fields_and_inherits_the_rest(
    outer: dict[str, Any], inner: dict[str, Any]
) -> None:
    assert current_context() is None
    with ContextScope(**outer) as outer_ctx:
        assert outer_ctx == replace(CallContext(), **outer)
        with ContextScope(**inner) as inner_ctx:
            assert inner_ctx == replace(outer_ctx, **inner)
            assert current_context() == inner_ctx
        assert current_context() == outer_ctx
    assert current_context() is None


def test_an_empty_tenant_is_refused_alone_and_nested() -> None:
    guard = aiguard.Guard()
    with pytest.raises(ValueError, match="tenant must be a non-empty string"):
        guard.context(tenant="").__enter__()
    with (
        guard.context(tenant="acme"),
        pytest.raises(ValueError, match="tenant must be a non-empty string"),
    ):
        guard.context(tenant="").__enter__()
    assert current_context() is None


def test_known_values_add_up_across_blocks() -> None:
    guard = aiguard.Guard()
    jane = KnownValue("Jane Roe", "person", Level.SENSITIVE)
    card = KnownValue("4111111111111111", "credit_card", Level.REGULATED)
    with guard.context(known=[jane]) as outer:
        assert outer.known == (jane,)
        with guard.context(known=[card]) as inner:
            assert inner.known == (jane, card)
