"""Old module paths, importable for one release with a DeprecationWarning.

The 0.1 layout had the doors, the compliance tools and the CLI as top-level modules. A
finder on `sys.meta_path` answers for those names with the module at its new path, so
``aiguard.transport.GuardTransport is aiguard.doors.transport.GuardTransport``: isinstance
checks, monkeypatching and pickles keep working across both names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "install"]

#: Old dotted path -> new dotted path. A package's submodules follow it.
MOVED: dict[str, str] = {
    "aiguard.alerts": "aiguard.compliance.alerts",
    "aiguard.check": "aiguard.compliance.check",
    "aiguard.dataset": "aiguard.doors.dataset",
    "aiguard.demo": "aiguard.cli.demo",
    "aiguard.dsr": "aiguard.compliance.dsr",
    "aiguard.endpoint": "aiguard.doors.endpoint",
    "aiguard.gateway": "aiguard.doors.gateway",
    "aiguard.gateway.cli": "aiguard.cli.gateway",
    "aiguard.inventory": "aiguard.compliance.inventory",
    "aiguard.keys": "aiguard.vault.keys",
    "aiguard.report": "aiguard.compliance.report",
    "aiguard.streaming": "aiguard.doors.streaming",
    "aiguard.transport": "aiguard.doors.transport",
}


def new_path(old: str) -> str | None:
    """Where *old* lives now, or None when it did not move."""
    if old in MOVED:
        return MOVED[old]
    package = old.rpartition(".")[0]
    while package:
        if package in MOVED:
            return f"{MOVED[package]}.{old[len(package) + 1 :]}"
        package = package.rpartition(".")[0]
    return None


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = new_path(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=new)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        assert spec.origin is not None
        _warn_caller(f"{spec.name} moved to {spec.origin}; the old path goes away in 0.3")
        module = importlib.import_module(spec.origin)
        # The import system stamps the old name's spec on whatever we return; keep the
        # module's own so that it still knows where it lives.
        self._specs[id(module)] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs.pop(id(module), module.__spec__)

    def __init__(self) -> None:
        self._specs: dict[int, importlib.machinery.ModuleSpec | None] = {}


def _warn_caller(message: str) -> None:
    # Attribute the warning to the first frame outside the import machinery, so the
    # default filters show it for a user's own import like any other deprecation.
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen importlib")
        or frame.f_code.co_filename == __file__
        or "importlib" in frame.f_code.co_filename
    ):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:  # pragma: no cover - imports always have a caller
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return
    module_globals = frame.f_globals
    warnings.warn_explicit(
        message,
        DeprecationWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=module_globals.get("__name__", "<unknown>"),
        registry=module_globals.setdefault("__warningregistry__", {}),
    )


_FINDER = _MovedModules()


def install() -> None:
    """Put the finder for old paths on `sys.meta_path` (once)."""
    # First on the path: the moved packages' new directories would otherwise let the
    # ordinary finder load a second copy of a submodule under the old name.
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
