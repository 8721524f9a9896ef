"""`Classified(..., kind)` warns on a near miss of a built-in kind, and only then."""

from __future__ import annotations

import warnings

import pytest

from aiguard import Classified, Level
from aiguard.classify.levels import UnknownKindWarning


@pytest.mark.parametrize(
    ("typo", "meant"), [("emial", "email"), ("phnoe", "phone"), ("us_snn", "us_ssn")]
)
def test_a_misspelt_builtin_kind_warns_naming_the_likely_kind(typo: str, meant: str) -> None:
    with pytest.warns(UnknownKindWarning, match=f"did you mean '{meant}'") as caught:
        Classified(Level.SENSITIVE, typo)
    assert caught[0].filename == __file__  # points at the tag, not at aiguard


@pytest.mark.parametrize("kind", ["email", "person", "diagnosis", "account", "ssn", "data"])
def test_builtin_and_custom_kinds_do_not_warn(kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Classified(Level.SENSITIVE, kind)
