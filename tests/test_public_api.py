"""The public surface: `aiguard.__all__` is exactly the public names, sorted."""

from __future__ import annotations

import aiguard
import aiguard.testing


def public_names(module: object) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not (isinstance(value, type(aiguard)) and name != "errors")
        and name != "annotations"
    }


class TestExports:
    def test_all_lists_every_public_name(self) -> None:
        assert set(aiguard.__all__) - {"__version__"} == public_names(aiguard)

    def test_all_is_sorted_and_unique(self) -> None:
        names = [n for n in aiguard.__all__ if n != "__version__"]
        assert names == sorted(names, key=str.casefold) or names == sorted(names)
        assert len(set(aiguard.__all__)) == len(aiguard.__all__)

    def test_testing_exports(self) -> None:
        for name in aiguard.testing.__all__:
            assert hasattr(aiguard.testing, name)

    def test_errors_share_a_base(self) -> None:
        for name in (
            "PolicyDenied",
            "ConsentRequired",
            "DestinationRevoked",
            "UnknownDestination",
            "MalformedPayload",
            "PolicyError",
        ):
            assert issubclass(getattr(aiguard.errors, name), aiguard.AIGuardError)

    def test_levels_are_ordered(self) -> None:
        L = aiguard.Level
        assert L.PUBLIC < L.INTERNAL < L.SENSITIVE < L.REGULATED
