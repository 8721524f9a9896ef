"""The package's layout is its architecture: imports run one way, and there are no circles.

The layers are declared once, in pyproject.toml ([tool.importlinter]); `lint-imports`
enforces them in `.ci/run`, and this test runs the same contract plus a cycle check over
every module (type-checking imports included), so a new circle fails here by name.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")

ROOT = Path(__file__).resolve().parents[1]


def _cycles() -> list[list[str]]:
    graph = grimp.build_graph("aiguard", include_external_packages=False, cache_dir=None)
    adjacency = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    # Tarjan's strongly connected components, iteratively (no recursion limit to hit).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(adjacency):
        if start in index:
            continue
        work = [(start, iter(adjacency[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(adjacency[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


class TestLayers:
    def test_no_module_imports_another_that_imports_it_back(self) -> None:
        """No import circle anywhere in the package, type-checking imports included."""
        assert _cycles() == []

    def test_the_layer_contract_in_pyproject_is_kept(self) -> None:
        """`lint-imports` (import-linter) passes on the layers declared in pyproject."""
        exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
        if not Path(exe).exists():
            pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
        done = subprocess.run(
            [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 broken" in done.stdout


OLD_PATHS = {
    "aiguard.transport": "aiguard.doors.transport",
    "aiguard.streaming": "aiguard.doors.streaming",
    "aiguard.endpoint": "aiguard.doors.endpoint",
    "aiguard.dataset": "aiguard.doors.dataset",
    "aiguard.gateway": "aiguard.doors.gateway",
    "aiguard.gateway.app": "aiguard.doors.gateway.app",
    "aiguard.gateway.cli": "aiguard.cli.gateway",
    "aiguard.check": "aiguard.compliance.check",
    "aiguard.inventory": "aiguard.compliance.inventory",
    "aiguard.report": "aiguard.compliance.report",
    "aiguard.alerts": "aiguard.compliance.alerts",
    "aiguard.dsr": "aiguard.compliance.dsr",
    "aiguard.demo": "aiguard.cli.demo",
    "aiguard.keys": "aiguard.vault.keys",
}


class TestOldPaths:
    @pytest.mark.parametrize(("old", "new"), sorted(OLD_PATHS.items()))
    def test_an_old_path_gives_the_same_module_with_a_deprecation_warning(
        self, old: str, new: str
    ) -> None:
        """0.1's module paths still import, warn once, and are the very same module."""
        if "gateway" in old:
            pytest.importorskip("starlette")
        for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
            del sys.modules[name]
        with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new)
        assert module.__spec__ is not None and module.__spec__.name == new

    def test_the_package_itself_imports_no_old_path(self) -> None:
        """Importing every new module never goes through a deprecated path."""
        code = (
            "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "import aiguard, aiguard.cli, aiguard.testing, aiguard.sinks\n"
            "import aiguard.compliance.check, aiguard.compliance.report\n"
            "import aiguard.doors.dataset, aiguard.doors.endpoint\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr

    def test_a_name_that_never_existed_still_fails_to_import(self) -> None:
        """The finder answers for moved modules only."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with pytest.raises(ModuleNotFoundError):
                importlib.import_module("aiguard.gateway.nothing_here")
            with pytest.raises(ModuleNotFoundError):
                importlib.import_module("aiguard.no_such_module")
