"""The `skype-fastagi` command as an administrator runs it: serve, check-config, signals, restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ACCOUNTS, USERS, run, write_config
from doubles.asterisk_agi import FakeAsterisk
from fastagi import __version__
from fastagi.config import ENVIRONMENT

COMMAND = [sys.executable, "-m", "fastagi"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), **(env or {})}
    return subprocess.Popen([*COMMAND, "serve", *args], cwd=cwd, env=env, stderr=subprocess.PIPE)


def served_config(tmp_path: Path, general: str = "") -> tuple[Path, int]:
    """A configuration of its own for `serve`: a free FastAGI port, AudioSocket on any free port, state in `tmp_path`."""
    port = free_port()
    return write_config(tmp_path, ACCOUNTS + USERS + "[audiosocket]\nport = 0\n", f"port = {port}\n{general}"), port


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


def agi(port: int, script: str, *args: str):  # type: ignore[no-untyped-def]
    return run(FakeAsterisk(port).agi(script, *args))


def test_serve_without_arguments_answers_for_demo(tmp_path: Path) -> None:
    """`serve` alone, as the README's first command, its ports moved by the file the environment names
    (a gateway may run on the default ports of this machine)."""
    port = free_port()
    ports = tmp_path / "ports.conf"
    ports.write_text(f"[general]\nport = {port}\n[audiosocket]\nport = 0\n")
    process = start_server(tmp_path, env={ENVIRONMENT: str(ports)})
    try:
        wait_for_port(port, process)
        result = agi(port, "get-profile-balance")
        assert result.skype()["SKYPE_STATUS"] == "SUCCESS"
        assert (result.skype()["SKYPE_BALANCE"], result.skype()["SKYPE_BALANCE_CURRENCY"]) == ("1000", "EUR")
        listed = agi(port, "list-registered")
        assert listed.skype()["SKYPE_REGISTERED_1"] == "demo"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    assert (tmp_path / "skype-fastagi.db").exists()
    lines = [line.split(" ", 1)[1] for line in process.stderr.read().decode().splitlines()] if process.stderr else []
    assert lines[:2] == [
        f"INFO fastagi: skype-fastagi {__version__}, configuration: {ports}",
        "INFO fastagi: demo on the embedded network: a simulation inside this gateway, for development, tests, "
        "demonstrations and training a dialplan; no call or message reaches a real person",
    ]
    assert ("INFO fastagi: try: skype-fastagi call start --account demo --user-name echo123 (a call to the echo test); "
            "skype-fastagi show calls; skype-fastagi network call echo123 demo (an incoming call)") in lines


def test_serve_under_journald_logs_priorities_without_times(tmp_path: Path) -> None:
    config, port = served_config(tmp_path)
    with open(tmp_path / "journal", "wb") as journal:
        info = os.fstat(journal.fileno())
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        process = subprocess.Popen([*COMMAND, "serve", "--config", str(config)], cwd=tmp_path, env=env, stderr=journal)
        try:
            wait_for_port(port, process)
            assert agi(port, "call-start?account=alice&user-name=erin").skype()["SKYPE_STATUS"] == "SUCCESS"
            deadline = time.monotonic() + 5
            while "status=FAILED" not in (tmp_path / "journal").read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
    lines = (tmp_path / "journal").read_text().splitlines()
    assert lines[:2] == [
        f"<6>fastagi: skype-fastagi {__version__}, configuration: {config}",
        "<6>fastagi: alice, bob on the embedded network: a simulation inside this gateway, for development, tests, "
        "demonstrations and training a dialplan; no call or message reaches a real person",
    ]
    assert (f"<6>fastagi: try: skype-fastagi call start --config {config} --account alice --user-name echo123 "
            f"(a call to the echo test); skype-fastagi show calls --config {config}; "
            f"skype-fastagi network call --config {config} echo123 alice (an incoming call)") in lines
    assert "<6>fastagi.events: call account=alice call=1 partner=erin direction=outgoing status=FAILED reason='user is offline'" in lines
    assert all(re.match(r"<[2-7]>fastagi[.\w]*: ", line) for line in lines), lines


def test_sigint_with_a_session_running_exits_cleanly(tmp_path: Path) -> None:
    config, port = served_config(tmp_path, "shutdown_grace = 1")
    process = start_server(tmp_path, "--config", str(config))
    wait_for_port(port, process)
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"agi_network: yes\n")
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert "stopped" in stderr
    half.close()


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_state_survives_a_kill_and_restart(tmp_path: Path, event_loop: str) -> None:
    config, port = served_config(tmp_path, f"sms_price = 10\nevent_loop = {event_loop}")
    process = start_server(tmp_path, "--config", str(config))
    wait_for_port(port, process)
    chat = agi(port, "chatmessage-send?account=alice&user-name=bob&message-body=remember%20me").skype()["SKYPE_CHAT_NAME"]
    assert agi(port, "user-set-block?account=alice&user-name=carol&status=True").skype()["SKYPE_STATUS"] == "SUCCESS"
    assert agi(port, "user-set-buddy?account=bob&user-name=alice&status=True").skype()["SKYPE_STATUS"] == "SUCCESS"
    assert agi(port, "sms-send?account=alice&sms-number=%2B4915112345678&sms-body=hi").skype()["SKYPE_STATUS"] == "SUCCESS"
    process.kill()  # no clean shutdown: what was replied must already be on disk
    process.wait(10)
    process = start_server(tmp_path, "--config", str(config))
    try:
        wait_for_port(port, process)
        assert agi(port, "get-profile-balance?account=alice").skype()["SKYPE_BALANCE"] == "1040"
        assert agi(port, "get-user?account=alice&user-name=carol").skype()["SKYPE_USER_ISBLOCKED"] == "True"
        assert agi(port, "get-user?account=bob&user-name=alice").skype()["SKYPE_USER_BUDDYSTATUS"] == "1"
        again = agi(port, "chatmessage-send?account=alice&user-name=bob&message-body=still%20here")
        assert again.skype()["SKYPE_CHAT_NAME"] == chat  # the chat history is there and reused
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "state.db") as db:
        bodies = [r[0] for r in db.execute("SELECT body FROM messages WHERE account = 'bob' ORDER BY id")]
    assert bodies == ["remember me", "still here"]


def test_check_config_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("[general]\nport = 0\nbind = \nfoo = 1\n[alice]\ntype = account\nauth_policy = maybe\n[alice]\ntype = account\n[ami]\nenabled = yes\n")
    result = subprocess.run([*COMMAND, "check-config", str(bad)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert f"{bad}:2: port: 0 is outside 1..65535" in lines
    assert f"{bad}:3: bind: '' is not a host name or address" in lines
    assert f"{bad}:4: unknown key 'foo' in [general]" in lines
    assert f"{bad}:7: auth_policy: 'maybe' is not one of ask, allow, deny" in lines
    assert f"{bad}:8: duplicate section [alice] (first at line 5)" in lines
    assert f"{bad}:10: [ami] enabled = yes needs a username" in lines
    good = write_config(tmp_path, ACCOUNTS + USERS)
    ok = subprocess.run([*COMMAND, "check-config", str(good)], capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert ok.returncode == 0, ok.stderr
    assert "2 account(s)" in ok.stdout


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, "check-config", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), **(env or {})})


def test_check_config_takes_config_like_every_command_and_answers_scripts_in_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("[genral]\nport = 4999\n[bob]\ntype = acount\n")
    done = check("--config", str(bad), "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"file": str(bad), "ok": False, "problems": [
        {"line": 1, "reason": "unknown section [genral]: did you mean [general]? "
                              "(an account or a user needs type = account or type = user)"},
        {"line": 4, "reason": "type: 'acount' is not one of account, user: did you mean account?"},
    ]}
    good = write_config(tmp_path, ACCOUNTS + USERS)
    done = check("--json", env={ENVIRONMENT: str(good)})  # the file the environment names, as serve reads it
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"file": str(good), "ok": True, "problems": [],
                                       "accounts": ["alice", "bob"], "users": ["carol", "dave", "erin", "echo123"]}
    missing = check("--json", str(tmp_path / "none.conf"))
    assert json.loads(missing.stdout)["problems"] == [{"line": None, "reason": "cannot read: No such file or directory"}]
    nothing = check()  # the tests' environment names no file: nothing to check
    assert nothing.returncode == 2 and f"no file to check: give FILE, set {ENVIRONMENT}" in nothing.stderr


def test_serve_refuses_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("[alice]\ntype = account\nbalance = lots\n")
    process = start_server(tmp_path, "--config", str(bad))
    assert process.wait(10) == 2
    assert f"{bad}:3: balance: 'lots' is not a whole number" in (process.stderr.read().decode() if process.stderr else "")




def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, "check-config", str(path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})


@pytest.mark.parametrize("database, reason", [
    ("{tmp}/no/such/dir/x.db", "folder {tmp}/no/such/dir does not exist"),
    ("{tmp}", "{tmp} is a folder, not a database file"),
    ("{tmp}/notes.txt", "{tmp}/notes.txt: file is not a database"),
])
def test_a_database_the_gateway_cannot_use_is_a_config_problem(tmp_path: Path, database: str, reason: str) -> None:
    (tmp_path / "notes.txt").write_text("not SQLite, but long enough to have a header " * 4)
    config = write_config(tmp_path, ACCOUNTS)
    setting = f"database = {database.format(tmp=tmp_path)}"
    config.write_text(config.read_text().replace(f"database = {tmp_path / 'state.db'}", setting))
    line = config.read_text().splitlines().index(setting) + 1
    expected = f"{config}:{line}: database: {reason.format(tmp=tmp_path)}"
    checked = check_config(config)
    assert (checked.returncode, checked.stderr.splitlines()) == (2, [expected, f"{config}: 1 problem(s)"])
    process = start_server(tmp_path, "--config", str(config))
    assert process.wait(10) == 2
    assert (process.stderr.read().decode() if process.stderr else "").splitlines() == [expected]


def test_a_second_server_on_the_same_database_refuses_to_start_naming_the_first(tmp_path: Path) -> None:
    first_port, second_port = free_port(), free_port()
    body = ACCOUNTS + "[audiosocket]\nport = 0\n"
    first = start_server(tmp_path, "--config", str(write_config(tmp_path, body, f"port = {first_port}")))
    try:
        wait_for_port(first_port, first)
        other = tmp_path / "other"
        other.mkdir()
        config = write_config(other, body, f"port = {second_port}")
        config.write_text(config.read_text().replace(str(other / "state.db"), str(tmp_path / "state.db")))
        second = start_server(other, "--config", str(config))
        try:
            assert second.wait(10) == 1
        finally:
            second.kill()
        stderr = second.stderr.read().decode() if second.stderr else ""
        assert f"database {tmp_path / 'state.db'} is in use by another skype-fastagi (pid {first.pid})" in stderr
        assert agi(first_port, "sms-send?account=alice&sms-number=%2B4915112345678&sms-body=hi").skype()["SKYPE_STATUS"] == "SUCCESS"
        assert agi(first_port, "get-profile-balance?account=alice").skype()["SKYPE_BALANCE"] == "1040"
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(10) == 0
    third = start_server(tmp_path, "--config", str(write_config(tmp_path, body, f"port = {first_port}")))
    try:
        wait_for_port(first_port, third)  # the lock went with the first server
    finally:
        third.send_signal(signal.SIGTERM)
        assert third.wait(10) == 0
