"""The README's generated sections and its two opening commands."""

from __future__ import annotations

import asyncio
import io
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from conftest import run, running_gateway
from doubles.asterisk_agi import FakeAsterisk
from fastagi.cli import main
from fastagi.docs import render

README = Path(__file__).parents[1] / "README.md"


def test_generated_sections_are_current() -> None:
    text = README.read_text()
    assert render(text) == text, "README is stale: run `python -m fastagi.docs README.md`"


def test_readme_opens_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    block = lines[lines.index("```") + 1: lines.index("```", lines.index("```") + 1)]
    assert block == ["pip install . && skype-fastagi serve", "pip install '.[test]' && python -m pytest"]


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _example(pattern: str) -> str:
    """The first README text matching `pattern` (its group 1)."""
    found = re.search(pattern, README.read_text())
    assert found, pattern
    return found[1]


def test_the_examples_run_on_the_quick_start_defaults(tmp_path: Path) -> None:
    """A file that only moves the paths serves `demo` and `echo123`, as `serve` alone does: the examples work there."""
    dialplan = _example(r"exten => 100,1,AGI\(agi://127\.0\.0\.1/([^)]+)\)")
    administration = _example(r"`skype-fastagi (call start [^`]+)`").split()
    incoming = _example(r"`skype-fastagi (network call [^`]+)`").split()

    async def body() -> None:
        async with running_gateway(tmp_path, body="") as gateway:
            assert gateway.manager.accounts.names() == ["demo"]
            result = await FakeAsterisk(gateway.agi.port).agi(dialplan)
            assert (result.agistatus, result.skype()["SKYPE_STATUS"]) == ("SUCCESS", "SUCCESS")
            for argv in (administration, incoming):
                code, out, err = await asyncio.to_thread(_cli, [*argv, "--socket", str(gateway.control.path)])
                assert (code, err) == (0, ""), argv
                assert re.search(r"^SKYPE_CALL_ID=\d+$", out, re.MULTILINE), argv
    run(body())
