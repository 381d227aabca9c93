"""The admin control socket and the `show` / `call` / `action` commands, against a running gateway."""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import json
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import time
from contextlib import asynccontextmanager, redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from conftest import ACCOUNTS, USERS, Dialplan, Recorder, run, running_gateway, write_config
from fastagi.actions import ACTIONS
from fastagi.app import Gateway, with_ports
from fastagi.cli import build_parser, main
from fastagi.config import ENVIRONMENT, load_config
from fastagi.control.server import ControlServer, ControlSocketInUse
from fastagi.control.history import EVENT_HISTORY
from fastagi.control.server import FOLLOW_BACKLOG
from fastagi.model.events import BalanceChanged
from fastagi.control import views
from fastagi.control.protocol import MAX_FILE, LineDecoder, ProtocolError, RemoteSend, encode, parse_request

ROOT = Path(__file__).parents[1]
COMMAND = [sys.executable, "-m", "fastagi"]
NORA = "\n[nora]\ntype = user\nfullname = Nora Noanswer\nbehaviour = noanswer\nring_delay = 0.01\n"


@asynccontextmanager
async def controlled(tmp_path: Path, body: str = ACCOUNTS + USERS) -> AsyncIterator[tuple[Gateway, ControlServer]]:
    async with running_gateway(tmp_path, body) as gateway:
        yield gateway, gateway.control


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


async def cli(server: ControlServer, *args: str) -> tuple[int, str, str]:
    """The command as a user types it, run beside the server's event loop."""
    return await asyncio.to_thread(_cli, [*args, "--socket", str(server.path)])


def variables(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines())


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


# -- show and call ----------------------------------------------------------------------
def test_show_accounts_table_and_json(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (_, server):
            code, out, err = await cli(server, "show", "accounts")
            assert (code, err) == (0, "")
            assert out == (
                "Account  Network   Status  Fullname       Balance  Currency  Calls  Auth policy\n"
                "alice    embedded  ONLINE  Alice Example    10.50  EUR           0  ask\n"
                "bob      embedded  ONLINE  Bob Builder       0.05  USD           0  allow\n"
                "2 accounts\n"
            )
            config = str(tmp_path / "skype-fastagi.conf")  # the socket's path read from the config file
            code, out, _ = await asyncio.to_thread(_cli, ["show", "accounts", "--json", "--config", config])
            assert code == 0
            assert json.loads(out) == [
                {"account": "alice", "network": "embedded", "status": "ONLINE", "fullname": "Alice Example", "balance": "10.50",
                 "currency": "EUR", "calls": 0, "auth_policy": "ask"},
                {"account": "bob", "network": "embedded", "status": "ONLINE", "fullname": "Bob Builder", "balance": "0.05",
                 "currency": "USD", "calls": 0, "auth_policy": "allow"},
            ]
            by_environment = await asyncio.create_subprocess_exec(  # as on a server: the file named once, in the environment
                *COMMAND, "show", "accounts", cwd="/", env={**environment(), ENVIRONMENT: config},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out_bytes, err_bytes = await by_environment.communicate()
            assert (by_environment.returncode, err_bytes) == (0, b"")
            assert out_bytes.decode().splitlines()[-1] == "2 accounts"
    run(body())


def test_call_start_through_the_cli_shows_in_show_calls_until_hung_up(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path, ACCOUNTS + USERS + NORA) as (gateway, server):
            recorder = Recorder(gateway.bus)
            code, out, err = await cli(server, "call", "start", "--account", "alice", "--user-name", "nora")
            assert (code, err) == (0, "")
            result = variables(out)
            assert list(result) == ["SKYPE_STATUS", "SKYPE_ERROR", "SKYPE_ERROR_TEXT", "SKYPE_CALL_ID", "SKYPE_CALL_UUID"]
            assert (result["SKYPE_STATUS"], result["SKYPE_CALL_ID"]) == ("SUCCESS", "1")
            uuid = result["SKYPE_CALL_UUID"]
            await recorder.status("alice", 1, "RINGING")

            code, out, _ = await cli(server, "show", "calls")
            assert out == (
                "Id  Account  Partner  Partner name   Direction  Status   Duration (s)  Conference id  Uuid\n"
                f" 1  alice    nora     Nora Noanswer  outgoing   RINGING             0                 {uuid}\n"
                "1 call\n"
            )
            code, out, _ = await cli(server, "show", "calls", "--json")
            assert json.loads(out) == [{
                "id": 1, "account": "alice", "partner": "nora", "partner_name": "Nora Noanswer", "direction": "outgoing",
                "status": "RINGING", "duration_seconds": 0, "conference_id": None, "uuid": uuid,
            }]
            code, out, _ = await cli(server, "show", "accounts", "--json")
            assert [(a["account"], a["calls"]) for a in json.loads(out)] == [("alice", 1), ("bob", 0)]

            code, out, err = await cli(server, "call", "hangup", "--account", "alice", "--call-id", "1")
            assert (code, err, variables(out)["SKYPE_STATUS"]) == (0, "", "SUCCESS")
            code, out, _ = await cli(server, "show", "calls")
            assert out.splitlines() == [
                "Id  Account  Partner  Partner name  Direction  Status  Duration (s)  Conference id  Uuid", "0 calls",
            ]
            assert recorder.statuses("alice", 1)[-1] == "CANCELLED"
    run(body())


def test_show_chats_and_events_after_a_message(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, server):
            code, out, _ = await cli(server, "action", "chatmessage-send", "account=alice", "user-name=bob", "message-body=hi bob")
            chat = variables(out)["SKYPE_CHAT_NAME"]
            code, out, _ = await cli(server, "show", "chats", "--json")
            rows = [{k: v for k, v in row.items() if k != "created"} for row in json.loads(out)]
            assert rows == [
                {"account": "alice", "chat": chat, "partner": "bob", "messages": 1, "state": "open"},
                {"account": "bob", "chat": chat, "partner": "alice", "messages": 1, "state": "open"},
            ]
            await cli(server, "action", "chat-leave", "account=alice", f"chat-name={chat}")
            code, out, _ = await cli(server, "show", "chats")
            lines = out.splitlines()
            assert lines[0].split() == ["Account", "Chat", "Partner", "Messages", "State", "Created"]
            assert lines[1].split()[:5] == ["alice", chat, "bob", "1", "left"]
            assert lines[2].split()[:5] == ["bob", chat, "alice", "1", "open"]
            assert lines[3] == "2 chats"

            code, out, _ = await cli(server, "show", "events", "--json")
            messages = [(e["account"], e["fields"]["Direction"], e["fields"]["Body"]) for e in json.loads(out) if e["kind"] == "ChatMessage"]
            assert messages == [("bob", "incoming", "hi bob"), ("alice", "outgoing", "hi bob")]
            code, out, _ = await cli(server, "show", "events")
            incoming = next(line for line in out.splitlines() if "ChatMessage" in line and "incoming" in line)
            assert incoming.split()[2] == "bob" and f"ChatName={chat} From=alice" in incoming
            assert out.splitlines()[-1] == f"{len(gateway.history)} events"
    run(body())


def test_table_cells_never_carry_terminal_control_characters(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (_, server):
            await cli(server, "action", "chatmessage-send", "account=alice", "user-name=bob", "message-body=\x1b[2Jgone\nline")
            code, out, _ = await cli(server, "show", "events")
            assert "\x1b" not in out and "Body= [2Jgone line" in out
            assert all(len(line.split()) >= 3 for line in out.splitlines()[1:-1])  # one line per event
    run(body())


# -- action: the same registry and validation as FastAGI ---------------------------------
def test_failed_action_prints_its_variables_and_exits_1(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (_, server):
            code, out, err = await cli(server, "action", "call-hangup", "account=alice", "call-id=99")
            assert code == 1
            assert out == "SKYPE_STATUS=FAILED\nSKYPE_ERROR=unknown_call_error\nSKYPE_ERROR_TEXT=alice has no call 99\n"
            assert err == "skype-fastagi: call-hangup failed: unknown_call_error: alice has no call 99\n"
            code, out, _ = await cli(server, "action", "get-profile-balance", "account=alice", "usr-name=x", "--json")
            reply = json.loads(out)
            assert (code, reply["result"]) == (1, "invalid-argument") and "'usr-name'" in reply["text"]
            assert reply["variables"] == {"SKYPE_STATUS": "FAILED", "SKYPE_ERROR": "invalid-argument",
                                          "SKYPE_ERROR_TEXT": reply["text"], "SKYPE_BALANCE": "", "SKYPE_BALANCE_CURRENCY": ""}
            code, out, _ = await cli(server, "action", "call-strat")
            assert (code, variables(out)["SKYPE_ERROR"]) == (1, "unknown_action")
            code, out, _ = await cli(server, "action", "get-profile-balance")  # two accounts, none given
            assert variables(out)["SKYPE_ERROR"] == "invalid-argument"
            code, out, _ = await cli(server, "action", "list-registered", "--json")
            assert (code, json.loads(out)["variables"]) == (0, {
                "SKYPE_STATUS": "SUCCESS", "SKYPE_ERROR": "", "SKYPE_ERROR_TEXT": "",
                "SKYPE_REGISTERED_COUNT": "2", "SKYPE_REGISTERED_1": "alice", "SKYPE_REGISTERED_2": "bob",
            })
    run(body())


def test_usage_errors_exit_2_before_connecting(tmp_path: Path) -> None:
    nowhere = str(tmp_path / "none.ctl")
    assert _cli(["action", "get-user", "user-name", "--socket", nowhere])[0] == 2
    code, _, err = _cli(["action", "get-user", "user-name=a", "user-name=b", "--socket", nowhere])
    assert code == 2 and "'user-name' given twice" in err
    code, _, err = _cli(["show", "calls", "--follow", "--socket", nowhere])
    assert code == 2 and "--follow is only for `show events`" in err
    code, _, err = _cli(["call", "dtmf", "--call-id", "1", "--socket", nowhere])
    assert code == 2 and "--code" in err


@pytest.mark.parametrize("name", sorted(n for n in ACTIONS if n.startswith("call-")))
def test_every_call_action_is_a_call_subcommand_with_its_arguments(name: str) -> None:
    action = ACTIONS[name]
    given = [x for argument in action.arguments for x in (f"--{argument.name}", f"v-{argument.name}")]
    args = build_parser().parse_args(["call", name.removeprefix("call-"), "--account", "alice", *given])
    assert args.action_name == name
    assert {a.name: getattr(args, a.name) for a in action.arguments} == {a.name: f"v-{a.name}" for a in action.arguments}


# -- the socket ------------------------------------------------------------------------
def test_socket_is_owner_only_and_removed_on_stop(tmp_path: Path) -> None:
    async def body() -> None:
        umask = os.umask(0o022)
        try:
            async with controlled(tmp_path) as (_, server):
                mode = os.stat(server.path)
                assert stat.S_ISSOCK(mode.st_mode)
                assert stat.S_IMODE(mode.st_mode) == 0o600
                assert mode.st_uid == os.getuid()
                assert os.umask(0o022) == 0o022  # the process umask is back as it was
            assert not server.path.exists()
        finally:
            os.umask(umask)
    run(body())


def test_stale_socket_is_replaced_a_live_one_is_not(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, _):
            path = tmp_path / "other.ctl"
            stale = socket.socket(socket.AF_UNIX)
            stale.bind(str(path))  # a server that died: the file stays, nothing answers
            stale.close()
            server = ControlServer(path, gateway.control.admin)
            await server.start()
            try:
                assert (await cli(server, "show", "accounts"))[0] == 0
                with pytest.raises(ControlSocketInUse, match="another server answers"):
                    await ControlServer(path, gateway.control.admin).start()
                assert (await cli(server, "show", "accounts"))[0] == 0  # the first one still has its socket
            finally:
                await server.stop()
            assert not path.exists()
    run(body())


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, _):
            path = tmp_path / "notes"
            path.write_text("notes")
            with pytest.raises(ControlSocketInUse, match="is not a socket"):
                await ControlServer(path, gateway.control.admin).start()
            assert path.read_text() == "notes"
    run(body())


def test_no_server_is_one_line_on_stderr_and_exit_1(tmp_path: Path) -> None:
    done = subprocess.run([*COMMAND, "show", "accounts"], cwd=tmp_path, env=environment(), capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "skype-fastagi: no server is running (control socket skype-fastagi.ctl not found)\n"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "skype-fastagi.ctl"))
    stale.close()
    done = subprocess.run([*COMMAND, "call", "start", "--user-name", "echo123"], cwd=tmp_path, env=environment(),
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == "skype-fastagi: no server is running (nothing answers on control socket skype-fastagi.ctl)\n"


def test_follow_streams_new_events_until_the_client_or_the_server_goes(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, server):
            await gateway.dispatcher.run("user-set-block", {"account": "alice", "user-name": "carol", "status": "true"})
            follow = [*COMMAND, "show", "events", "--follow", "--json", "--socket", str(server.path)]
            first = await asyncio.create_subprocess_exec(*follow, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            second = await asyncio.create_subprocess_exec(*follow, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for process in (first, second):  # first the events already seen, the block last
                earlier = [json.loads(await asyncio.wait_for(process.stdout.readline(), 10)) for _ in gateway.history.records()]
                assert (earlier[-1]["kind"], earlier[-1]["fields"]["IsBlocked"]) == ("BuddyStatus", "True")
            await until(lambda: server.followers == 2)
            await gateway.dispatcher.run("user-set-block", {"account": "alice", "user-name": "carol", "status": "false"})
            for process in (first, second):
                new = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
                assert (new["kind"], new["account"], new["fields"]["IsBlocked"]) == ("BuddyStatus", "alice", "False")

            first.send_signal(2)  # Ctrl-C: the client closes
            assert await asyncio.wait_for(first.wait(), 10) == 0
            await until(lambda: server.followers == 1)
            await server.stop()  # the server goes: the other client says so
            assert await asyncio.wait_for(second.wait(), 10) == 1
            assert (await second.stderr.read()).decode() == "skype-fastagi: the server closed the connection\n"
    run(body())


def test_a_follower_that_falls_too_far_behind_is_told_and_closed(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, server):
            reader, writer = await asyncio.open_unix_connection(str(server.path))
            writer.write(b'{"request": "show", "what": "events", "follow": true}\n')
            assert json.loads(await reader.readline())["ok"] is True
            await until(lambda: server.followers == 1)
            for number in range(FOLLOW_BACKLOG + 5):  # at once: the follower cannot send any before the last
                gateway.bus.publish(BalanceChanged("alice", number, "EUR"))
            lines = (await asyncio.wait_for(reader.read(), 10)).decode().splitlines()
            assert [json.loads(line)["event"]["fields"]["Balance"] for line in lines[:-1]] == [str(n) for n in range(FOLLOW_BACKLOG)]
            assert json.loads(lines[-1]) == {"ok": False, "error": f"stream ended: the client fell {FOLLOW_BACKLOG} events behind"}
            assert server.followers == 0 and len(gateway.history) == EVENT_HISTORY
            writer.close()
    run(body())


def test_bad_requests_get_an_error_line(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (_, server):
            reader, writer = await asyncio.open_unix_connection(str(server.path))
            writer.write(b'{"request": "show", "what": "contacts"}\n{"request": "show", "what": "accounts"}\n')
            refused = json.loads(await reader.readline())
            assert refused == {"ok": False, "error": "show what? one of accounts, calls, chats, events, history"}
            assert json.loads(await reader.readline())["columns"][0] == "account"  # the connection goes on
            writer.write(b"show accounts\n")
            assert json.loads(await reader.readline())["ok"] is False
            assert await reader.read() == b""  # unreadable input ends the connection
            writer.close()
    run(body())


@pytest.mark.parametrize("line, error", [
    (b"[" * 1_000_000, "not a request: JSON nested too deeply"),
    (b'{"request": "show", "what": "accounts", "n": ' + b"9" * 5000 + b"}", "not a request: a number too long"),
])
def test_hostile_json_is_answered_with_an_error_and_one_log_line(
        tmp_path: Path, line: bytes, error: str, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (_, server):
            reader, writer = await asyncio.open_unix_connection(str(server.path))
            writer.write(line + b"\n")
            assert json.loads(await reader.readline()) == {"ok": False, "error": error}
            assert await reader.read() == b""
            writer.close()
            await asyncio.sleep(0.05)  # a task exception would be reported when the task is collected
            gc.collect()
    caplog.set_level("DEBUG")
    run(body())
    gc.collect()
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname, r.getMessage(), r.exc_info) for r in records] == [
        ("fastagi.control", "WARNING", f"control connection dropped: {error}", None)]


# -- the protocol core -------------------------------------------------------------------
def test_messages_survive_any_split_into_chunks() -> None:
    data = encode({"request": "show", "what": "calls"}) + encode({"request": "action", "name": "x", "arguments": {"a": "é\n"}})
    for cut in range(len(data) + 1):
        decoder = LineDecoder()
        got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert got == [{"request": "show", "what": "calls"}, {"request": "action", "name": "x", "arguments": {"a": "é\n"}}]


def test_a_line_over_the_limit_is_refused_without_waiting_for_its_end() -> None:
    decoder = LineDecoder(limit=100)
    decoder.feed(b"x" * 100)
    with pytest.raises(ProtocolError, match="longer than 100 bytes"):
        decoder.feed(b"x")


def test_network_call_rings_the_account_from_a_scripted_user(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, server):
            recorder = Recorder(gateway.bus)
            code, out, err = await cli(server, "network", "call", "carol", "alice")
            assert (code, err) == (0, "")
            result = variables(out)  # what `call start` prints, from the called account's side
            assert list(result) == ["SKYPE_STATUS", "SKYPE_ERROR", "SKYPE_ERROR_TEXT", "SKYPE_CALL_ID", "SKYPE_CALL_UUID"]
            call_id = result["SKYPE_CALL_ID"]
            ringing = await recorder.status("alice", call_id, "RINGING")
            assert (ringing.fields["Partner"], ringing.fields["Direction"]) == ("carol", "incoming")
            assert (result["SKYPE_STATUS"], result["SKYPE_CALL_UUID"]) == ("SUCCESS", ringing.fields["UUID"])
            code, out, err = await cli(server, "network", "call", "nobody9", "alice")
            assert code == 1 and "unknown_user" in err
            assert (variables(out)["SKYPE_STATUS"], variables(out)["SKYPE_ERROR"]) == ("FAILED", "unknown_user")
            code, out, err = await cli(server, "network", "call", "carol", "zed")
            assert code == 1 and "unknown_account" in err
    run(body())


def test_network_chat_buddy_and_file_reach_the_account_as_events(tmp_path: Path) -> None:
    """Every event flow of the dialplan library by hand: a scripted user writes, asks and sends a file."""
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, server):
            recorder = Recorder(gateway.bus)
            code, out, err = await cli(server, "network", "chat", "carol", "alice", "hi alice")
            assert (code, err) == (0, "")
            chat = variables(out)["SKYPE_CHAT_NAME"]
            assert chat.startswith("#carol/$alice;")
            message = await recorder.wait(lambda e: e.kind == "ChatMessage")
            assert (message.account, message.fields["From"], message.fields["Body"], message.fields["ChatName"],
                    message.fields["Direction"]) == ("alice", "carol", "hi alice", chat, "incoming")
            code, out, _ = await cli(server, "network", "chat", "carol", "alice", "still there?")
            assert variables(out)["SKYPE_CHAT_NAME"] == chat  # the same dialog
            reply = await gateway.dispatcher.run("chatmessage-send", {"account": "bob", "user-name": "carol", "message-body": "yo"})
            code, out, _ = await cli(server, "network", "chat", "carol", "bob", "hello bob")
            assert variables(out)["SKYPE_CHAT_NAME"] == reply.values["chat-name"]  # carol answers in bob's chat

            code, out, err = await cli(server, "network", "buddy", "carol", "alice", "--text", "it's Carol")
            assert (code, err) == (0, "")
            asked = await recorder.wait(lambda e: e.kind == "AuthRequest")
            assert (asked.account, asked.fields["From"], asked.fields["Text"]) == ("alice", "carol", "it's Carol")
            await cli(server, "network", "buddy", "dave", "bob")  # bob's auth_policy = allow answers by itself
            allowed = await recorder.wait(lambda e: e.kind == "BuddyStatus" and e.account == "bob")
            assert (allowed.fields["User"], allowed.fields["IsAuthorized"]) == ("dave", "True")

            report = tmp_path / "report.pdf"
            report.write_bytes(bytes(range(256)) * 100)
            code, out, err = await cli(server, "network", "file", "carol", "alice", str(report), "--name", "q3.pdf")
            assert (code, err, variables(out)["SKYPE_STATUS"]) == (0, "", "SUCCESS")
            sent = await recorder.wait(lambda e: e.kind == "FileTransfer")
            assert (sent.account, sent.fields["Partner"], sent.fields["FileName"], sent.fields["Direction"]) == (
                "alice", "carol", "q3.pdf", "incoming")
            assert Path(sent.fields["Path"]).read_bytes() == report.read_bytes()
            assert Path(sent.fields["Path"]).parent == tmp_path / "incoming" / "alice"
    run(body())


def test_network_sends_are_refused_as_the_account_would_refuse_them(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, server):
            await gateway.dispatcher.run("user-set-block", {"account": "alice", "user-name": "carol", "status": "true"})
            code, out, err = await cli(server, "network", "chat", "carol", "alice", "hi")
            assert (code, variables(out)["SKYPE_ERROR"]) == (1, "not_authorized")
            assert err == "skype-fastagi: network chat failed: not_authorized: alice does not accept messages from carol\n"
            code, out, err = await cli(server, "network", "chat", "alice", "bob", "hi")  # an account is no scripted user
            assert (code, variables(out)["SKYPE_ERROR"]) == (1, "unknown_user")
            code, out, err = await cli(server, "network", "buddy", "carol", "zed")
            assert (code, variables(out)["SKYPE_ERROR"]) == (1, "unknown_account")
            big = tmp_path / "big.bin"
            big.write_bytes(bytes(MAX_FILE + 1))
            code, out, err = await cli(server, "network", "file", "carol", "bob", str(big))
            assert (code, out) == (2, "") and f"{MAX_FILE + 1} bytes; a file sent this way is 512 KiB at most" in err
            assert not (tmp_path / "incoming" / "bob").exists()
    run(body())


# -- history --------------------------------------------------------------------------------
def test_show_history_lists_ended_calls_with_filters(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, server):
            recorder = Recorder(gateway.bus)
            dial = Dialplan(gateway.agi.port)
            offline = (await dial("alice", "call-start", user_name="erin"))["SKYPE_CALL_ID"]
            await recorder.status("alice", offline, "FAILED")
            busy = (await dial("alice", "call-start", user_name="dave"))["SKYPE_CALL_ID"]
            await recorder.status("alice", busy, "BUSY")
            between = time.time()
            talk = (await dial("bob", "call-start", user_name="carol"))["SKYPE_CALL_ID"]
            await recorder.status("bob", talk, "INPROGRESS")
            await asyncio.sleep(0.3)
            await dial("bob", "call-hangup", call_id=talk)

            code, out, err = await cli(server, "show", "history", "--json")
            assert (code, err) == (0, "")
            calls = json.loads(out)
            assert [{k: v for k, v in c.items() if k not in ("started", "duration_seconds")} for c in calls] == [
                {"id": 1, "account": "alice", "partner": "erin", "direction": "outgoing", "status": "FAILED",
                 "reason": "user is offline"},
                {"id": 2, "account": "alice", "partner": "dave", "direction": "outgoing", "status": "BUSY", "reason": ""},
                {"id": 3, "account": "bob", "partner": "carol", "direction": "outgoing", "status": "FINISHED", "reason": ""},
            ]
            assert [c["duration_seconds"] for c in calls[:2]] == [0, 0] and 0.3 <= calls[2]["duration_seconds"] < 2
            assert calls[0]["started"] == views.timestamp(gateway.store.calls("alice")[0]["started"])

            code, out, _ = await cli(server, "show", "history")
            lines = out.splitlines()
            assert lines[0].split() == ["Id", "Account", "Partner", "Direction", "Status", "Reason", "Started", "Duration", "(s)"]
            assert lines[1].split()[:7] == ["1", "alice", "erin", "outgoing", "FAILED", "user", "is"]
            assert lines[-1] == "3 ended calls"

            async def ids(*options: str) -> list[int]:
                code, out, err = await cli(server, "show", "history", "--json", *options)
                assert (code, err) == (0, "")
                return [c["id"] for c in json.loads(out)]

            assert await ids("--account", "alice") == [1, 2]
            assert await ids("--since", datetime.fromtimestamp(between).isoformat()) == [3]
            assert await ids("--until", datetime.fromtimestamp(between).astimezone().isoformat()) == [1, 2]
            assert await ids("--since", "1h") == [1, 2, 3]
            assert await ids("--since", "2000-01-01", "--until", "2000-01-02") == []
            assert await ids("--limit", "1") == [3]  # the newest
            code, _, err = await cli(server, "show", "calls", "--account", "alice")
            assert code == 2 and "--account: only for `show history`" in err
            code, _, err = await cli(server, "show", "history", "--since", "yesterday")
            assert code == 2 and "'yesterday' is no date" in err
    run(body())


def test_recent_events_and_the_history_survive_a_restart(tmp_path: Path) -> None:
    async def first() -> None:
        async with controlled(tmp_path) as (gateway, server):
            recorder = Recorder(gateway.bus)
            await gateway.dispatcher.run("user-set-block", {"account": "alice", "user-name": "carol", "status": "true"})
            call = (await Dialplan(gateway.agi.port)("alice", "call-start", user_name="erin"))["SKYPE_CALL_ID"]
            await recorder.status("alice", call, "FAILED")

    async def second() -> None:
        async with controlled(tmp_path) as (gateway, server):
            code, out, _ = await cli(server, "show", "events", "--json")
            events = [(e["kind"], e["account"], e["fields"].get("Status") or e["fields"].get("IsBlocked")) for e in json.loads(out)]
            before_restart = [
                ("AccountStatus", "alice", "ONLINE"), ("AccountStatus", "bob", "ONLINE"),
                ("BuddyStatus", "alice", "True"),
                ("CallStatus", "alice", "ROUTING"), ("CallStatus", "alice", "FAILED"),
                ("AccountStatus", "alice", "OFFLINE"), ("AccountStatus", "bob", "OFFLINE"),  # the shutdown's too
            ]
            assert events == before_restart + [("AccountStatus", "alice", "ONLINE"), ("AccountStatus", "bob", "ONLINE")]
            code, out, _ = await cli(server, "show", "history", "--json")
            assert [(c["partner"], c["status"]) for c in json.loads(out)] == [("erin", "FAILED")]

    run(first())
    run(second())


def test_the_stored_history_stays_bounded(tmp_path: Path) -> None:
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, _):
            for number in range(3 * EVENT_HISTORY + 7):
                gateway.bus.publish(BalanceChanged("alice", number, "EUR"))
                if number % 50 == 0:
                    await asyncio.sleep(0)  # a few events per loop turn, as under load
            records = gateway.history.records()
            assert len(records) == EVENT_HISTORY and records[-1]["fields"]["Balance"] == str(3 * EVENT_HISTORY + 6)
            stored = gateway.store.recent_events(10 * EVENT_HISTORY)
            assert EVENT_HISTORY <= len(stored) < 2 * EVENT_HISTORY
            assert [json.loads(row["fields"]) for row in stored[-EVENT_HISTORY:]] == [r["fields"] for r in records]
    run(body())


def test_output_cut_short_by_its_reader_ends_quietly(tmp_path: Path) -> None:
    """`show events --json | head -1`: the rest has nowhere to go, and that is no error."""
    async def body() -> None:
        async with controlled(tmp_path) as (gateway, server):
            for number in range(EVENT_HISTORY):  # more output than a pipe holds
                gateway.bus.publish(BalanceChanged("alice", number, "EUR"))
            for follow in ([], ["--follow"]):
                reader, writer = os.pipe()
                process = await asyncio.create_subprocess_exec(
                    *COMMAND, "show", "events", "--json", *follow, "--socket", str(server.path),
                    env=environment(), stdout=writer, stderr=subprocess.PIPE)
                os.close(writer)
                with os.fdopen(reader, "rb") as pipe:
                    assert (await asyncio.to_thread(pipe.readline))[:1] in (b"[", b"{")  # head -1
                await until(lambda: bool(follow) <= (server.followers == 1))
                gateway.bus.publish(BalanceChanged("alice", 0, "EUR"))  # a follower has a new line to write
                _, err = await asyncio.wait_for(process.communicate(), 10)
                assert (process.returncode, err.decode()) == (0, ""), follow
    run(body())


def test_help_never_breaks_a_name_at_its_hyphen() -> None:
    for argv in (["action", "--help"], ["show", "--help"], ["call", "start", "--help"]):
        done = subprocess.run([*COMMAND, *argv], env={**environment(), "COLUMNS": "80"}, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0
        assert re.findall(r"[\w/]-$", done.stdout, re.MULTILINE) == [], argv  # a line ending inside call-transfer
        assert "call-transfer" in done.stdout or argv[0] != "action"
        assert "/etc/skype-fastagi/skype-fastagi.conf" in " ".join(done.stdout.split())


def test_a_start_that_fails_on_a_busy_port_leaves_no_control_socket(tmp_path: Path) -> None:
    async def body() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            config = with_ports(load_config(write_config(tmp_path, ACCOUNTS + USERS)), taken.getsockname()[1], 0)
            with pytest.raises(OSError, match="address already in use"):
                await Gateway(config).start()
        assert not (tmp_path / "skype-fastagi.ctl").exists()
        async with running_gateway(tmp_path) as gateway:  # the next start is not refused
            assert gateway.control.path.exists()
    run(body())


@pytest.mark.parametrize("message, error", [
    ({"kind": "sms"}, "network-send what? one of chat, buddy, file"),
    ({"kind": "chat", "account": 5}, "a network-send request needs user and account"),
    ({"kind": "chat", "text": 5}, "text is a string"),
    ({"kind": "file", "file_name": "a.txt", "data": "not base64!"}, "data is not base64"),
    ({"kind": "file", "data": "aGk="}, "a file needs file_name and data (base64)"),
    ({"kind": "file", "file_name": "a.txt", "data": base64.b64encode(bytes(MAX_FILE + 1)).decode()},
     "a file sent this way is 512 KiB at most"),
])
def test_a_network_send_request_the_server_cannot_carry_out_is_refused(message: dict, error: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_request({"request": "network-send", "user": "carol", "account": "alice", **message})
    assert str(refused.value) == error
    assert parse_request(RemoteSend("file", "carol", "alice", file_name="a.txt", data=b"\x00hi").to_message()) == \
        RemoteSend("file", "carol", "alice", file_name="a.txt", data=b"\x00hi")
