"""The Python examples of README.md and clients/python/README.md, run as
printed against a real server: each ``python`` block is a script of its
own, run with this interpreter in a fresh process whose
``$VARWATCH_SERVER`` names the test server (the examples give the client
no address, so they use it, as the README says).

A block that cannot run as printed (it needs TLS files, say) is marked on
the line before its fence with ``<!-- example: not run (why) -->``; the
Go tests in internal/cli run the tour and build the Go snippets by the
same convention.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
from typing import Any, List, NamedTuple

import pytest

from conftest import REPO

READMES = [REPO / "README.md", REPO / "clients" / "python" / "README.md"]
NOT_RUN = "<!-- example: not run"
RUN_TIMEOUT = 60.0


class Block(NamedTuple):
    path: pathlib.Path
    line: int  # of the opening fence, 1-based
    info: str
    text: str
    not_run: bool

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks(path: pathlib.Path) -> List[Block]:
    """The fenced code blocks of a markdown file."""
    out: List[Block] = []
    lines = path.read_text().split("\n")
    prev = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("```"):
            if line.strip():
                prev = line
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path}:{start + 1}: the block never closes")
        out.append(Block(path, start + 1, line[3:], "\n".join(body) + "\n", prev.startswith(NOT_RUN)))
        prev = ""
        i += 1
    return out


PYTHON_BLOCKS = [b for p in READMES for b in blocks(p) if b.info == "python"]


def test_the_examples_are_found() -> None:
    run = [b for b in PYTHON_BLOCKS if not b.not_run]
    skipped = [str(b) for b in PYTHON_BLOCKS if b.not_run]
    assert len(run) >= 2, f"found {len(run)} Python examples to run in {READMES}"
    assert len(skipped) <= 1, f"keep the examples not run few: {skipped}"


@pytest.mark.parametrize("block", [b for b in PYTHON_BLOCKS if not b.not_run], ids=str)
def test_readme_example_runs(server: Any, block: Block, tmp_path: pathlib.Path) -> None:
    env = dict(os.environ)
    env["VARWATCH_SERVER"] = server.target
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "clients" / "python")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    script = tmp_path / "example.py"
    script.write_text(block.text)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, f"{block} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stdout.strip(), f"{block} printed nothing"


def test_a_client_without_target_uses_varwatch_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import varwatch

    monkeypatch.setenv("VARWATCH_SERVER", "127.0.0.1:1")
    with varwatch.Client() as c:
        assert c.target == "127.0.0.1:1"
    with varwatch.Client("127.0.0.1:2") as c:
        assert c.target == "127.0.0.1:2"

    async def aio() -> str:
        async with varwatch.AsyncClient() as c:
            return c.target

    assert asyncio.run(aio()) == "127.0.0.1:1"
    monkeypatch.delenv("VARWATCH_SERVER")
    with varwatch.Client() as c:
        assert c.target == varwatch.DEFAULT_TARGET == "127.0.0.1:50051"
