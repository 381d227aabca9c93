"""The README: its generated sections, its opening commands, and what it tells an administrator to run or to look for."""

from __future__ import annotations

import ast
import asyncio
import io
import re
import shlex
import shutil
import subprocess
import tomllib
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from conftest import run, running_gateway
from doubles.asterisk_agi import FakeAsterisk
from fastagi.app import Gateway
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


def _section(title: str) -> str:
    return README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_python_the_readme_asks_for_is_the_package_s() -> None:
    [needed] = re.findall(r"Python ≥ (\d+\.\d+)", README.read_text())
    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={needed}"


def _log_formats() -> list[re.Pattern[str]]:
    """Every message the gateway logs, as a pattern its lines match (`%s`, `%d`, … stand for anything)."""
    calls = re.findall(r'log\.(?:debug|info|warning|error|exception)\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)',
                       "".join(path.read_text() for path in (README.parent / "fastagi").rglob("*.py")))
    formats = ["".join(ast.literal_eval(part) for part in re.findall(r'"(?:[^"\\]|\\.)*"', call)) for call in calls]
    worded = [text for text in formats if re.search(r"[a-z]{3}", re.sub(r"%\S", "", text))]  # not "%s" alone
    return [re.compile(re.sub(r"%(?:\\\.\d+)?[sdrgf]", ".+", re.escape(text))) for text in worded]


def test_the_log_lines_troubleshooting_quotes_are_lines_the_gateway_writes() -> None:
    """Each quoted text of several words that is no command nor setting is a log line (`…` where the README leaves
    something out) and matches a message of the code."""
    commands = ("skype-fastagi", "systemctl", "journalctl", "ss ", "Dial(")
    quotes = [" ".join(quote.split()) for quote in re.findall(r"`([^`]+)`", _section("Troubleshooting"))]
    lines = [quote for quote in quotes if len(quote.split()) >= 3 and " = " not in quote and not quote.startswith(commands)]
    assert len(lines) >= 10, lines
    formats = _log_formats()
    assert [line for line in lines if not any(f.fullmatch(line) for f in formats)] == []


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 command is not installed")
def test_a_backup_taken_while_the_gateway_writes_restores_its_state(tmp_path: Path) -> None:
    """The README's backup command on a running gateway, then its restore steps with the gateway stopped."""
    section = _section("Installing on a server")
    backup = re.search(r"^sqlite3 (\S+) (\".backup \S+\")$", section, re.MULTILINE)
    assert backup and backup[1] == "/var/lib/skype-fastagi/state.db"
    assert "rm -f state.db-wal state.db-shm" in section
    database, copy = tmp_path / "state.db", tmp_path / "backup.db"

    async def send(gateway: Gateway, body: str) -> None:
        outcome = await gateway.dispatcher.run("chatmessage-send", {"account": "alice", "user-name": "bob", "message-body": body})
        assert outcome.result == "SUCCESS"

    async def before_and_after_the_backup() -> None:
        async with running_gateway(tmp_path) as gateway:
            await send(gateway, "before the backup")
            command = shlex.split(backup[0].replace(backup[1], str(database)).replace("/var/backups/skype-fastagi.db", str(copy)))
            done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=30)
            assert (done.returncode, done.stderr) == (0, "")
            await send(gateway, "after the backup")

    async def restored() -> list[str]:
        async with running_gateway(tmp_path) as gateway:
            return [row["body"] for row in gateway.store.messages("alice") if row["direction"] == "outgoing"]

    run(before_and_after_the_backup())
    for leftover in ("state.db-wal", "state.db-shm"):
        (tmp_path / leftover).unlink(missing_ok=True)
    shutil.copyfile(copy, database)
    assert run(restored()) == ["before the backup"]


def test_the_network_examples_run_on_the_quick_start_defaults(tmp_path: Path) -> None:
    """`network chat`, `network buddy` and `network file` as the README writes them, on `serve`'s own defaults."""
    examples = [shlex.split(re.sub(r" \[[^]]*\]", "", found))  # the optional parts left out
                for found in re.findall(r"`skype-fastagi (network (?:chat|buddy|file) [^`]+)`", " ".join(README.read_text().split()))]
    assert [argv[1] for argv in examples] == ["chat", "buddy", "file"]
    (tmp_path / "FILE").write_bytes(b"%PDF-1.4\n")

    async def body() -> None:
        async with running_gateway(tmp_path, body="") as gateway:
            for argv in examples:
                argv = [str(tmp_path / "FILE") if arg == "FILE" else arg for arg in argv]
                code, out, err = await asyncio.to_thread(_cli, [*argv, "--socket", str(gateway.control.path)])
                assert (code, err) == (0, ""), argv
                assert out.startswith("SKYPE_STATUS=SUCCESS\n"), argv
    run(body())
