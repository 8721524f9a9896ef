"""The context matrix as property tests: every kind, every written form, any surroundings.

The generator (tests/_matrix.py) writes valid values of every built-in kind in their
written forms and puts them in surroundings drawn independently of the engine's
patterns: brackets and quotes of every script, Unicode punctuation drawn from its
categories, key=value, JSON, Markdown, CSV, line breaks, other values next to them.
Hypothesis draws the generator's seed (not its individual choices: shrinking those
would turn random keys into "aaaa" and PANs into "AAAAA0000A", values that are
rightly not keys), so a new class of miss shows up as a seed that replays it,
without anyone listing the class first.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _matrix import KINDS, lookalike_case, matches, value_case
from aiguard import detect
from aiguard.classify.kinds import DEFAULT_LEVELS

_SEEDS = st.integers(min_value=0, max_value=2**64 - 1)
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _describe(text: str, spans: list[tuple[int, int, str]], found: list) -> str:  # type: ignore[type-arg]
    return (
        f"text={text!r}\nwanted={[(text[s:e], k) for s, e, k in spans]}\n"
        f"found={[(text[f.start : f.end], f.kind) for f in found]}"
    )


def test_the_matrix_covers_every_builtin_kind() -> None:
    """A kind added to the engine without a generator here fails this test."""
    assert set(KINDS) == set(DEFAULT_LEVELS)


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=40, deadline=None)
@given(seed=_SEEDS)
def test_each_kind_in_any_surrounding_is_found_exactly(kind: str, seed: int) -> None:
    """One value of ``kind`` in a drawn surrounding: exactly that span, with that kind."""
    case = value_case(random.Random(seed), kinds=[kind], count=1)
    found = detect(case.text)
    missing, extra = matches(case, found)
    assert not missing and not extra, _describe(case.text, case.spans, found)


@_SETTINGS
@given(seed=_SEEDS)
def test_values_next_to_values_of_other_kinds_are_each_found(seed: int) -> None:
    """Two or three values of any kinds, each in its own surrounding, in one text."""
    rng = random.Random(seed)
    case = value_case(rng, count=rng.choice([2, 3]))
    found = detect(case.text)
    missing, extra = matches(case, found)
    assert not missing and not extra, _describe(case.text, case.spans, found)


@_SETTINGS
@given(seed=_SEEDS)
def test_lookalikes_in_the_same_surroundings_find_nothing(seed: int) -> None:
    """Order, ticket and tracking numbers, versions, times, hashes, UUIDs, amounts."""
    case = lookalike_case(random.Random(seed))
    found = detect(case.text)
    assert found == [], _describe(case.text, [], found)
