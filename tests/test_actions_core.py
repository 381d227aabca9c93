"""Account, contact and message actions, driven through the server socket as Asterisk does."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from pathlib import Path

import pytest

from conftest import Recorder, running_gateway, run
from doubles.asterisk_agi import FakeAsterisk
import fastagi.files
from fastagi.actions import ACTIONS


async def agi(gateway, script, *args, channel=None, **kw):  # type: ignore[no-untyped-def]
    asterisk = channel or FakeAsterisk(gateway.agi.port)
    return await asterisk.agi(script, *args, **kw)


def test_get_profile_balance_sets_exactly_these_variables(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            result = await agi(gw, "get-profile-balance?account=alice")
            assert result.commands == [
                'SET VARIABLE SKYPE_STATUS "SUCCESS"',
                'SET VARIABLE SKYPE_ERROR ""',
                'SET VARIABLE SKYPE_ERROR_TEXT ""',
                'SET VARIABLE SKYPE_BALANCE "1050"',
                'SET VARIABLE SKYPE_BALANCE_CURRENCY "EUR"',
            ]
            assert result.agistatus == "SUCCESS"
    run(body())


def test_account_from_channel_variable_then_only_account(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            asterisk = FakeAsterisk(gw.agi.port)
            asterisk.variables["SKYPE_ACCOUNT"] = "bob"
            result = await asterisk.agi("get-profile-balance")
            assert result.commands[0] == "GET VARIABLE SKYPE_ACCOUNT"
            assert result.skype()["SKYPE_BALANCE"] == "5"
            assert result.skype()["SKYPE_BALANCE_CURRENCY"] == "USD"
            anonymous = await agi(gw, "get-profile-balance")
            assert anonymous.skype()["SKYPE_ERROR"] == "invalid-argument"
            assert "2 are registered" in anonymous.skype()["SKYPE_ERROR_TEXT"]
            unknown = await agi(gw, "get-profile-balance?account=zed")
            assert unknown.skype()["SKYPE_ERROR"] == "unknown_account"
            assert unknown.agistatus == "SUCCESS"  # an action's failure is never an AGI failure
    run(body())


def test_single_account_server_needs_no_account(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, "[solo]\ntype = account\nbalance = 7\n") as gw:
            result = await agi(gw, "get-profile-balance")
            assert result.skype()["SKYPE_STATUS"] == "SUCCESS" and result.skype()["SKYPE_BALANCE"] == "7"
    run(body())


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_misspelled_argument_is_invalid_argument(tmp_path: Path, name: str) -> None:
    action = ACTIONS[name]

    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            asterisk = FakeAsterisk(gw.agi.port)
            for returned in action.returns:  # a stale value from an earlier call
                asterisk.variables["SKYPE_" + returned.upper().replace("-", "_")] = "stale"
            result = await asterisk.agi(f"{name}?account=alice&usr-name=bob")
            skype = result.skype()
            assert skype["SKYPE_STATUS"] == "FAILED"
            assert skype["SKYPE_ERROR"] == "invalid-argument"
            assert "'usr-name'" in skype["SKYPE_ERROR_TEXT"]
            for returned in action.returns:
                assert skype["SKYPE_" + returned.upper().replace("-", "_")] == ""
    run(body())


@pytest.mark.parametrize("name", sorted(n for n, a in ACTIONS.items() if any(x.required for x in a.arguments)))
def test_missing_required_argument_is_invalid_argument(tmp_path: Path, name: str) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            result = await agi(gw, f"{name}?account=alice")
            assert result.skype()["SKYPE_ERROR"] == "invalid-argument"
            first = next(a.name for a in ACTIONS[name].arguments if a.required)
            assert f"'{first}'" in result.skype()["SKYPE_ERROR_TEXT"]
    run(body())


def test_argument_given_twice_across_query_and_agi_args(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            result = await agi(gw, "get-user?account=alice&user-name=carol", "user-name=carol")
            assert result.skype()["SKYPE_ERROR"] == "invalid-argument"
            assert "given twice" in result.skype()["SKYPE_ERROR_TEXT"]
    run(body())


def test_unknown_action_and_no_action(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            result = await agi(gw, "call-strat?user-name=x")
            assert result.commands == [
                'SET VARIABLE SKYPE_STATUS "FAILED"',
                'SET VARIABLE SKYPE_ERROR "unknown_action"',
                "SET VARIABLE SKYPE_ERROR_TEXT \"no action named 'call-strat'\"",
            ]
            bare = await agi(gw, None)
            assert bare.skype()["SKYPE_ERROR"] == "unknown_action"
    run(body())


def test_percent_decoding_and_agi_arguments(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            text = "Hé, a&b=c 100%+1"
            from urllib.parse import quote
            result = await agi(gw, f"chatmessage-send?account=alice&message-body={quote(text, safe='')}", "user-name=bob")
            assert result.skype()["SKYPE_STATUS"] == "SUCCESS"
            assert gw.store.messages("bob")[0]["body"] == text
            bad = await agi(gw, "chatmessage-send?account=alice&user-name=bob&message-body=%ff")
            assert bad.skype()["SKYPE_ERROR"] == "invalid-argument"
    run(body())


def test_list_registered_clears_stale_entries(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            asterisk = FakeAsterisk(gw.agi.port)
            asterisk.variables.update(SKYPE_REGISTERED_COUNT="3", SKYPE_REGISTERED_3="old")
            result = await asterisk.agi("list-registered")
            assert result.commands[0] == "GET VARIABLE SKYPE_REGISTERED_COUNT"
            skype = result.skype()
            assert (skype["SKYPE_REGISTERED_COUNT"], skype["SKYPE_REGISTERED_1"], skype["SKYPE_REGISTERED_2"]) == ("2", "alice", "bob")
            assert skype["SKYPE_REGISTERED_3"] == ""
    run(body())


def test_get_user_profile_and_contact_flags(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            result = await agi(gw, "get-user?account=alice&user-name=carol")
            skype = result.skype()
            assert skype["SKYPE_USER_HANDLE"] == "carol"
            assert skype["SKYPE_USER_FULLNAME"] == "Carol Remote"
            assert skype["SKYPE_USER_DISPNAME"] == "Carol Remote"
            assert skype["SKYPE_USER_COUNTRY"] == "Italy"
            assert skype["SKYPE_USER_ONLINESTATUS"] == "ONLINE"
            assert (skype["SKYPE_USER_ISAUTHORIZED"], skype["SKYPE_USER_ISBLOCKED"], skype["SKYPE_USER_BUDDYSTATUS"]) == ("False", "False", "0")
            assert len([k for k in skype if k.startswith("SKYPE_USER_")]) == 20
            account_profile = await agi(gw, "get-user?account=bob&user-name=alice")
            assert account_profile.skype()["SKYPE_USER_CITY"] == "Lyon"
            offline = await agi(gw, "get-user?account=alice&user-name=erin")
            assert offline.skype()["SKYPE_USER_ONLINESTATUS"] == "OFFLINE"
            missing = await agi(gw, "get-user?account=alice&user-name=nobody1")
            assert missing.skype()["SKYPE_ERROR"] == "unknown_user"
            assert missing.skype()["SKYPE_USER_HANDLE"] == ""
    run(body())


def test_buddy_requests_between_accounts_and_remote_users(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            events = Recorder(gw.bus).events
            # bob asks alice (auth_policy = ask): alice gets a pending request
            assert (await agi(gw, "user-set-buddy?account=bob&user-name=alice&status=True")).skype()["SKYPE_STATUS"] == "SUCCESS"
            request = [e for e in events if e.kind == "AuthRequest"]
            assert request and request[0].account == "alice" and request[0].fields["From"] == "bob"
            assert gw.store.contact("bob", "alice").buddy == 1
            # alice accepts: bob's side sees alice added
            assert (await agi(gw, "user-set-auth?account=alice&user-name=bob&status=TRUE")).skype()["SKYPE_STATUS"] == "SUCCESS"
            assert gw.store.contact("bob", "alice").buddy == 2
            assert gw.store.contact("alice", "bob").authorized
            # carol allows, dave denies
            await agi(gw, "user-set-buddy?account=alice&user-name=carol&status=true")
            await agi(gw, "user-set-buddy?account=alice&user-name=dave&status=true")
            await __import__("asyncio").sleep(0.05)
            assert gw.store.contact("alice", "carol").buddy == 2
            assert gw.store.contact("alice", "dave").buddy == 0
            removed = await agi(gw, "user-set-buddy?account=alice&user-name=carol&status=False")
            assert removed.skype()["SKYPE_STATUS"] == "SUCCESS" and gw.store.contact("alice", "carol").buddy == 0
            bad = await agi(gw, "user-set-buddy?account=alice&user-name=carol&status=maybe")
            assert bad.skype()["SKYPE_ERROR"] == "invalid-argument"
            unknown = await agi(gw, "user-set-auth?account=alice&user-name=nobody1&status=true")
            assert unknown.skype()["SKYPE_ERROR"] == "unknown_user"
    run(body())


def test_block_refuses_messages_and_shows_in_get_user(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            assert (await agi(gw, "user-set-block?account=bob&user-name=alice&status=True")).skype()["SKYPE_STATUS"] == "SUCCESS"
            refused = await agi(gw, "chatmessage-send?account=alice&user-name=bob&message-body=hi")
            assert refused.skype()["SKYPE_ERROR"] == "not_authorized"
            assert refused.skype()["SKYPE_CHAT_NAME"] == ""
            assert gw.store.messages("bob") == []
            shown = await agi(gw, "get-user?account=bob&user-name=alice")
            assert shown.skype()["SKYPE_USER_ISBLOCKED"] == "True"
            await agi(gw, "user-set-block?account=bob&user-name=alice&status=false")
            assert (await agi(gw, "chatmessage-send?account=alice&user-name=bob&message-body=hi")).skype()["SKYPE_STATUS"] == "SUCCESS"
    run(body())


def test_chat_between_two_accounts(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            events = Recorder(gw.bus).events
            first = await agi(gw, "chatmessage-send?account=alice&user-name=bob&message-body=hello%20bob")
            chat = first.skype()["SKYPE_CHAT_NAME"]
            assert re.fullmatch(r"#alice/\$bob;[0-9a-f]{16}", chat)
            second = await agi(gw, "chatmessage-send?account=alice&user-name=bob&message-body=again")
            assert second.skype()["SKYPE_CHAT_NAME"] == chat  # the open dialog chat is reused
            assert [m["body"] for m in gw.store.messages("bob", chat)] == ["hello bob", "again"]
            incoming = [e for e in events if e.kind == "ChatMessage" and e.account == "bob"]
            assert incoming[0].fields["From"] == "alice" and incoming[0].fields["Direction"] == "incoming"
            assert incoming[0].fields["Body"] == "hello bob" and incoming[0].fields["ChatName"] == chat
            outgoing = [e for e in events if e.kind == "ChatMessage" and e.account == "alice"]
            assert outgoing[0].fields["Direction"] == "outgoing"
            left = await agi(gw, "chat-leave", f"chat-name={chat}", "account=alice")
            assert left.skype()["SKYPE_STATUS"] == "SUCCESS"
            again = await agi(gw, "chat-leave", f"chat-name={chat}", "account=alice")
            assert again.skype()["SKYPE_ERROR"] == "unknown_chat"
            unknown = await agi(gw, "chat-leave?account=alice&chat-name=%23nope")
            assert unknown.skype()["SKYPE_ERROR"] == "unknown_chat"
            new_chat = await agi(gw, "chatmessage-send?account=alice&user-name=bob&message-body=new")
            assert new_chat.skype()["SKYPE_CHAT_NAME"] != chat  # a left chat is not reused
            to_nobody = await agi(gw, "chatmessage-send?account=alice&user-name=nobody1&message-body=x")
            assert to_nobody.skype()["SKYPE_ERROR"] == "unknown_user"
    run(body())


def test_sms_costs_credit_and_fails_when_short(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, general="sms_price = 12") as gw:
            events = Recorder(gw.bus).events
            sent = await agi(gw, "sms-send?account=alice&sms-number=%2B393331234567&sms-body=" + "x" * 200)
            assert sent.skype()["SKYPE_STATUS"] == "SUCCESS"
            balance = await agi(gw, "get-profile-balance?account=alice")
            assert balance.skype()["SKYPE_BALANCE"] == str(1050 - 24)  # two parts
            assert [e.fields["Status"] for e in events if e.kind == "SMSStatus"] == ["SENDING_TO_SERVER", "DELIVERED"]
            short = await agi(gw, "sms-send?account=bob&sms-number=%2B393331234567&sms-body=hi")
            assert short.skype()["SKYPE_ERROR"] == "cannot_send"
            assert "credit" in short.skype()["SKYPE_ERROR_TEXT"]
            assert gw.store.sms("bob") == []
            national = await agi(gw, "sms-send?account=alice&sms-number=0612345678&sms-body=hi")
            assert national.skype()["SKYPE_ERROR"] == "cannot_send"
            letters = await agi(gw, "sms-send?account=alice&sms-number=call-me&sms-body=hi")
            assert letters.skype()["SKYPE_ERROR"] == "invalid-argument"
    run(body())


def test_file_send_copies_into_receiver_folder(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            (tmp_path / "media" / "report.txt").write_text("quarterly")
            sent = await agi(gw, "file-send?account=alice&user-name=bob&file=report.txt")
            assert sent.skype()["SKYPE_STATUS"] == "SUCCESS"
            assert (tmp_path / "incoming" / "bob" / "report.txt").read_text() == "quarterly"
            await agi(gw, "file-send?account=alice&user-name=bob&file=report.txt")
            assert (tmp_path / "incoming" / "bob" / "report (2).txt").read_text() == "quarterly"  # never overwritten
            to_remote = await agi(gw, f"file-send?account=alice&user-name=carol&file={tmp_path / 'media' / 'report.txt'}")
            assert to_remote.skype()["SKYPE_STATUS"] == "SUCCESS"
            missing = await agi(gw, "file-send?account=alice&user-name=bob&file=nothing.txt")
            assert missing.skype()["SKYPE_ERROR"] == "file_missing"
            (tmp_path / "secret.txt").write_text("no")
            outside = await agi(gw, f"file-send?account=alice&user-name=bob&file={tmp_path / 'secret.txt'}")
            assert outside.skype()["SKYPE_ERROR"] == "invalid-argument"
            climbing = await agi(gw, "file-send?account=alice&user-name=bob&file=../secret.txt")
            assert climbing.skype()["SKYPE_ERROR"] == "invalid-argument"
            assert sorted(p.name for p in (tmp_path / "incoming" / "bob").iterdir()) == ["report (2).txt", "report.txt"]
    run(body())


def test_other_sessions_are_answered_while_file_send_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copying, release, copied = threading.Event(), threading.Event(), threading.Event()
    copy = shutil.copyfileobj

    def slow_copy(source, target, *args):  # type: ignore[no-untyped-def]  # a large file on a slow disk
        copying.set()
        release.wait(5)
        copy(source, target, *args)
        copied.set()

    monkeypatch.setattr(fastagi.files.shutil, "copyfileobj", slow_copy)

    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            (tmp_path / "media" / "big.bin").write_bytes(b"x" * 100_000)
            sending = asyncio.ensure_future(agi(gw, "file-send?account=alice&user-name=bob&file=big.bin"))
            while not copying.is_set():
                await asyncio.sleep(0.01)
            balance = await agi(gw, "get-profile-balance?account=alice")
            assert balance.skype()["SKYPE_BALANCE"] == "1050"
            assert not copied.is_set()  # answered while the copy was still running
            release.set()
            assert (await sending).skype()["SKYPE_STATUS"] == "SUCCESS"
            assert (tmp_path / "incoming" / "bob" / "big.bin").read_bytes() == b"x" * 100_000
    try:
        run(body())
    finally:
        release.set()


def test_file_send_refuses_a_file_over_max_file_size(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, general="max_file_size = 1") as gw:
            (tmp_path / "media" / "limit.bin").write_bytes(b"x" * 1024 * 1024)
            (tmp_path / "media" / "over.bin").write_bytes(b"x" * (1024 * 1024 + 1))
            over = await agi(gw, "file-send?account=alice&user-name=bob&file=over.bin")
            assert (over.skype()["SKYPE_ERROR"], over.skype()["SKYPE_ERROR_TEXT"]) == (
                "invalid-argument", "over.bin is 1048577 bytes, over max_file_size (1 MiB)")
            limit = await agi(gw, "file-send?account=alice&user-name=bob&file=limit.bin")
            assert limit.skype()["SKYPE_STATUS"] == "SUCCESS"
            assert sorted(p.name for p in (tmp_path / "incoming" / "bob").iterdir()) == ["limit.bin"]
    run(body())


def test_hangup_before_reply_still_sets_variables(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            asterisk = FakeAsterisk(gw.agi.port)
            asterisk.variables["SKYPE_ACCOUNT"] = "alice"
            result = await asterisk.agi("get-profile-balance", hangup_before_reply=1)
            assert result.agistatus == "HANGUP"
            assert result.skype()["SKYPE_BALANCE"] == "1050"
            assert "511" not in " ".join(result.replies)
    run(body())


def test_file_send_to_unknown_or_blocking_user(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            (tmp_path / "media" / "a.txt").write_text("x")
            unknown = await agi(gw, "file-send?account=alice&user-name=nobody1&file=a.txt")
            assert unknown.skype()["SKYPE_ERROR"] == "unknown_user"
            await agi(gw, "user-set-block?account=bob&user-name=alice&status=True")
            refused = await agi(gw, "file-send?account=alice&user-name=bob&file=a.txt")
            assert refused.skype()["SKYPE_ERROR"] == "not_authorized"
            assert not (tmp_path / "incoming" / "bob").exists()
    run(body())


def test_a_bug_in_a_handler_is_internal_error_not_a_dead_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            monkeypatch.setattr(gw.manager.deliveries, "balance", broken)
            result = await agi(gw, "get-profile-balance?account=alice")
            assert result.commands == [
                'SET VARIABLE SKYPE_STATUS "FAILED"',
                'SET VARIABLE SKYPE_ERROR "internal_error"',
                'SET VARIABLE SKYPE_ERROR_TEXT "internal error: RuntimeError"',
                'SET VARIABLE SKYPE_BALANCE ""',
                'SET VARIABLE SKYPE_BALANCE_CURRENCY ""',
            ]
            assert result.agistatus == "SUCCESS"
            assert (await agi(gw, "list-registered")).skype()["SKYPE_STATUS"] == "SUCCESS"  # still serving
    run(body())


def test_buddy_requests_pile_up_only_to_a_bound_and_a_repeat_asks_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from fastagi.manager import contacts

    monkeypatch.setattr(contacts, "MAX_PENDING_REQUESTS", 2)

    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            events = Recorder(gw.bus).events
            for sender in ("carol", "carol", "dave", "erin", "bob"):
                gw.manager.contacts.auth_request_received("alice", sender, f"from {sender}")
            assert [e.fields["From"] for e in events if e.kind == "AuthRequest"] == ["carol", "dave"]
            assert caplog.text.count("alice has 2 buddy requests waiting for an answer") == 1
            await gw.manager.contacts.set_auth("alice", "carol", True)  # one answered: room for one more
            gw.manager.contacts.auth_request_received("alice", "erin", "again")
            assert [e.fields["From"] for e in events if e.kind == "AuthRequest"][-1] == "erin"
    run(body())
