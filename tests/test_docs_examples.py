"""Every ```python block of README.md and docs/*.md runs offline, as written.

Each page runs in its own subprocess, in an empty temporary directory, with a proxy
that refuses every connection (so an example that needs the network or an API key
fails here instead of on a newcomer's machine). A page's blocks share one namespace, in
order, like a notebook. An HTML comment on the line just before a fence says more:

* ``<!-- file: PATH -->`` (any language): the block is written to PATH first, e.g. the
  ``aiguard.toml`` a Python example loads;
* ``<!-- pytest: PATH -->`` (python): the block is a test module written to PATH and
  run with pytest, which must pass;
* ``<!-- not-run: REASON -->`` (python): the block is not run; the reason is required.
  Use it sparingly: for fragments that need a real service (a cloud KMS, a real API).

docs/testing.md describes the markers for contributors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*(file|pytest|not-run):\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: str | None = None
    argument: str = ""


def blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        found.append(
            Block(
                page,
                start + 1,
                match.group(1),
                "\n".join(body) + "\n",
                marker.group(1) if marker else None,
                marker.group(2) if marker else "",
            )
        )
    return found


def _runnable(page: Path) -> bool:
    return any(b.language == "python" and b.marker != "not-run" for b in blocks(page))


# Each block runs under its page and fence line, so a traceback names where it is; then
# the page's test modules run with pytest in the same interpreter (one start per page).
RUNNER = textwrap.dedent(
    """
    import json, sys
    job = json.load(sys.stdin)
    namespace = {"__name__": "__main__"}
    for name, source in job["scripts"]:
        exec(compile(source, name, "exec"), namespace)
    if job["tests"]:
        import pytest
        sys.exit(int(pytest.main(["-q", "-p", "no:cacheprovider", *job["tests"]])))
    """
)


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    # Port 9 (discard) on loopback: any request an example makes to a real API fails;
    # loopback itself (FakeModel.serve()) stays reachable.
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        env[name] = "http://127.0.0.1:9"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@pytest.mark.parametrize(
    "page", [p for p in PAGES if _runnable(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_examples_run_offline(page: Path, tmp_path: Path) -> None:
    import json

    env = _offline_env()
    scripts: list[tuple[str, str]] = []
    tests: list[str] = []
    for block in blocks(page):
        where = f"{page.relative_to(ROOT)}:{block.line}"
        if block.marker in {"file", "pytest"}:
            target = tmp_path / block.argument
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
            if block.marker == "pytest":
                tests.append(block.argument)
        elif block.language == "python" and block.marker != "not-run":
            # Padded so that line numbers in a traceback are the page's own.
            scripts.append((where, "\n" * block.line + block.text))
    done = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps({"scripts": scripts, "tests": tests}),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{page.name}:\n{done.stdout}\n{done.stderr}"
    if tests:
        passed = re.search(r"(\d+) passed", done.stdout)
        assert passed and int(passed.group(1)) >= len(tests), done.stdout  # none is empty


def test_markers_name_what_they_need() -> None:
    """A marker is attached to a fence, a file has a path, a skipped block has a reason."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8").splitlines()
        attached = {b.line - 1 for b in blocks(page) if b.marker}
        for number, line in enumerate(text, start=1):
            if MARKER.match(line):
                assert number in attached, f"{page.name}:{number}: marker not before a fence"
        for block in blocks(page):
            where = f"{page.name}:{block.line}"
            if block.marker == "not-run":
                assert len(block.argument) >= 10, f"{where}: say why it is not run"
                assert block.language == "python", where
            if block.marker in {"file", "pytest"}:
                assert block.argument and not Path(block.argument).is_absolute(), where
                assert ".." not in Path(block.argument).parts, where
            if block.marker == "pytest":
                assert block.language == "python", where


def test_the_extractor_sees_every_python_block() -> None:
    """Guards the extractor itself: it finds the blocks a reader sees."""
    total = sum(p.read_text(encoding="utf-8").count("\n```python\n") for p in PAGES)
    found = sum(1 for p in PAGES for b in blocks(p) if b.language == "python")
    assert found == total > 0


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_scripts_run_offline(script: Path, tmp_path: Path) -> None:
    """The scripts the README points to run the same way: offline, from any directory."""
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_offline_env(),
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{script.name}:\n{done.stdout}\n{done.stderr}"
