"""Accounts on XMPP against a real Prosody: each action and what the other side received, and each event
from a real XMPP user reaching the dialplan's side (FastAGI results, the AMI double's UserEvents)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import quote

import aiohttp

from conftest import Dialplan, Recorder, run, running_gateway, unique, xmpp_account
from doubles.ami_server import AmiServer
from test_media_races import swapping
from fastagi.app import Gateway
from xmpp.peers import Peer, peer
from xmpp.server import Prosody


@asynccontextmanager
async def gateway_on(folder: Path, server: Prosody, account: str, jid: str, extra: str = "", general: str = "",
                     **keys: str) -> AsyncIterator[tuple[Gateway, Dialplan, Recorder]]:
    """A gateway in `folder` whose account `account` is `jid` on `server`, once it is online (plus the embedded `demo`)."""
    body = xmpp_account(server, account, jid, **keys) + "\n[demo]\ntype = account\n" + extra
    async with running_gateway(folder, body, general) as gw:
        recorder = Recorder(gw.bus)
        await wait_status(recorder, account, "ONLINE")
        yield gw, Dialplan(gw.agi.port), recorder


async def wait_status(recorder: Recorder, account: str, status: str, since: int = 0, timeout: float = 10.0) -> None:
    await recorder.wait(lambda e: e.kind == "AccountStatus" and e.account == account and e.fields["Status"] == status,
                        timeout, since)


def account_jid(server: Prosody, name: str) -> str:
    return server.register(name, "secret")


# -- actions -------------------------------------------------------------------------------------
def test_chatmessage_send_reaches_the_peer_once_the_server_has_it(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        bob = await peer(prosody, unique("bob"))
        alice = account_jid(prosody, unique("alice"))
        async with gateway_on(tmp_path, prosody, "alice", alice) as (gw, dial, rec):
            sent = await dial("alice", "chatmessage-send", user_name=bob.boundjid.bare,
                              message_body="h%C3%A9llo%2C%20bob%20%26%20co")
            assert (sent["SKYPE_STATUS"], sent["SKYPE_ERROR"]) == ("SUCCESS", "")
            assert sent["SKYPE_CHAT_NAME"] == f"#alice/${bob.boundjid.bare}"
            got = await bob.next(lambda g: g.kind == "message")
            assert (got.sender, got.body) == (alice, "héllo, bob & co")
            again = await dial("alice", "chatmessage-send", user_name=bob.boundjid.bare, message_body="again")
            assert again["SKYPE_CHAT_NAME"] == sent["SKYPE_CHAT_NAME"]  # one chat per contact
            assert [m["body"] for m in gw.store.messages("alice")] == ["héllo, bob & co", "again"]

            assert (await dial("alice", "chat-leave", chat_name=sent["SKYPE_CHAT_NAME"]))["SKYPE_STATUS"] == "SUCCESS"
            assert [chat.open for chat in gw.status.chats()] == [False]
            bob.send_message(mto=alice, mbody="still there?", mtype="chat")  # the contact's next message opens it again
            reopened = await rec.wait(lambda e: e.kind == "ChatMessage" and e.fields["Direction"] == "incoming", 10)
            assert reopened.fields["ChatName"] == sent["SKYPE_CHAT_NAME"]
            assert [(chat.open, chat.messages) for chat in gw.status.chats()] == [(True, 3)]
        await bob.close()
    run(body())


def test_an_account_whose_connection_is_down_fails_at_once_and_sends_nothing(tmp_path: Path) -> None:
    server = Prosody()
    server.start()

    async def body() -> None:
        bob = await peer(server, "bob")
        async with gateway_on(tmp_path, server, "alice", account_jid(server, "alice"), general="network_timeout = 2") as (gw, dial, rec):
            online = len(rec.events)
            server.stop()
            await wait_status(rec, "alice", "OFFLINE", online)
            loop = asyncio.get_running_loop()
            started = loop.time()
            failed = await dial("alice", "chatmessage-send", user_name="bob@localhost", message_body="lost")
            assert loop.time() - started < 0.5
            assert failed["SKYPE_STATUS"] == "FAILED" and failed["SKYPE_ERROR"] == "network_unavailable"
            assert failed["SKYPE_ERROR_TEXT"].startswith("alice is not connected to its XMPP server")
            assert gw.store.messages("alice") == []
            server.start()
            await wait_status(rec, "alice", "ONLINE", online)
            statuses = [e.fields["Status"] for e in rec.events[online:] if e.kind == "AccountStatus"]
            assert statuses[0] == "OFFLINE" and statuses[-2:] == ["CONNECTING", "ONLINE"]
            assert set(statuses[:-1]) == {"OFFLINE", "CONNECTING"}  # tries while the server was down
            again = await dial("alice", "chatmessage-send", user_name="bob@localhost", message_body="back")
            assert again["SKYPE_STATUS"] == "SUCCESS"
        await bob.close()
    try:
        run(body())
    finally:
        server.remove()


def test_sms_and_balance_are_not_supported_and_list_registered_shows_both_networks(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (_, dial, _rec):
            sms = await dial("alice", "sms-send", sms_number="+393331234567", sms_body="hi")
            assert (sms["SKYPE_ERROR"], sms["SKYPE_ERROR_TEXT"]) == (
                "not_supported", "alice is on the xmpp network, which has no SMS")
            balance = await dial("alice", "get-profile-balance")
            assert (balance["SKYPE_ERROR"], balance["SKYPE_BALANCE"]) == ("not_supported", "")
            assert balance["SKYPE_ERROR_TEXT"] == "alice is on the xmpp network, which has no prepaid balance"
            listed = await dial("alice", "list-registered")
            assert (listed["SKYPE_REGISTERED_COUNT"], listed["SKYPE_REGISTERED_1"], listed["SKYPE_REGISTERED_2"]) == (
                "2", "alice", "demo")
    run(body())


# -- events into Asterisk --------------------------------------------------------------------
def ami_config(port: int) -> str:
    return (f"\n[ami]\nenabled = yes\nport = {port}\nusername = skype\nsecret = skypesecret\n"
            "events_context = skype-events\nping_interval = 0.2\nping_timeout = 0.5\n")


async def user_event(ami: AmiServer, name: str, timeout: float = 5.0, **fields: str) -> dict[str, str]:
    """The first UserEvent `name` the AMI double received with these fields, as a dict."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for action in ami.actions("UserEvent"):
            headers = dict(action.headers)
            if headers.get("UserEvent") == name and all(headers.get(k) == v for k, v in fields.items()):
                return headers
        assert asyncio.get_running_loop().time() < deadline, f"no {name} {fields}"
        await asyncio.sleep(0.02)


def test_a_peers_message_becomes_a_user_event_and_runs_the_events_context(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        ami = AmiServer()
        await ami.start()
        bob = await peer(prosody, unique("bob"))
        try:
            async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice")),
                                  extra=ami_config(ami.port)) as (gw, _, _rec):
                alice = gw.xmpp.account("alice").jid.bare
                bob.send_message(mto=alice, mbody="line one\nEvent: forged", mtype="chat")
                event = await user_event(ami, "SkypeChatMessage", From=bob.boundjid.bare)
                assert event["Account"] == "alice" and event["Direction"] == "incoming"
                assert event["Body"] == "line one\\nEvent: forged"  # one header line, as every UserEvent value
                assert event["ChatName"] == f"#alice/${bob.boundjid.bare}"
                [script] = [o for o in ami.actions("Originate") if "chatmessage-incoming-received" in o.get("Channel")]
                assert dict(script.variables())["SKYPE_USER_NAME"] == bob.boundjid.bare
                await user_event(ami, "SkypeAccountStatus", Account="alice", Status="ONLINE")
        finally:
            await bob.close()
            await ami.stop()
    run(body())


def test_buddy_requests_both_ways_with_peers_that_accept_refuse_and_ask(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        ami = AmiServer()
        await ami.start()
        accepting = await peer(prosody, unique("carol"), on_subscribe="accept")
        refusing = await peer(prosody, unique("dave"), on_subscribe="refuse")
        asking = await peer(prosody, unique("erin"))
        try:
            async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice")),
                                  extra=ami_config(ami.port)) as (gw, dial, _rec):
                alice = gw.xmpp.account("alice").jid.bare
                for contact in (accepting, refusing):
                    added = await dial("alice", "user-set-buddy", user_name=contact.boundjid.bare, status="True")
                    assert added["SKYPE_STATUS"] == "SUCCESS"
                    assert (await contact.next(lambda g: g.kind == "subscribe")).sender == alice
                await user_event(ami, "SkypeBuddyStatus", User=accepting.boundjid.bare, BuddyStatus="2", IsAuthorized="True")
                await user_event(ami, "SkypeBuddyStatus", User=refusing.boundjid.bare, BuddyStatus="0")
                user = await dial("alice", "get-user", user_name=accepting.boundjid.bare)
                assert (user["SKYPE_USER_BUDDYSTATUS"], user["SKYPE_USER_ISAUTHORIZED"]) == ("2", "True")

                asking.send_presence(pto=alice, ptype="subscribe", pstatus="it's Erin")
                request = await user_event(ami, "SkypeAuthRequest", From=asking.boundjid.bare)
                assert request["Text"] == "it's Erin"
                answered = await dial("alice", "user-set-auth", user_name=asking.boundjid.bare, status="true")
                assert answered["SKYPE_STATUS"] == "SUCCESS"
                assert (await asking.next(lambda g: g.kind == "subscribed")).sender == alice

                removed = await dial("alice", "user-set-buddy", user_name=accepting.boundjid.bare, status="False")
                assert removed["SKYPE_STATUS"] == "SUCCESS"
                assert (await accepting.next(lambda g: g.kind == "unsubscribed")).sender == alice
                await user_event(ami, "SkypeBuddyStatus", User=accepting.boundjid.bare, BuddyStatus="0")
        finally:
            for contact in (accepting, refusing, asking):
                await contact.close()
            await ami.stop()
    run(body())


def test_auth_policy_allow_answers_a_request_by_itself(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        asking = await peer(prosody, unique("fred"))
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice")),
                              auth_policy="allow") as (gw, _, rec):
            asking.send_presence(pto=gw.xmpp.account("alice").jid.bare, ptype="subscribe")
            assert (await asking.next(lambda g: g.kind == "subscribed")).sender == gw.xmpp.account("alice").jid.bare
            assert not [e for e in rec.events if e.kind == "AuthRequest"]
        await asking.close()
    run(body())


def test_get_user_reads_the_vcard_and_the_presence(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        bob = await peer(prosody, unique("bob"), on_subscribe="accept", show="dnd", status="In a meeting")
        await bob.publish_vcard(
            "<FN>Bob Builder</FN><NICKNAME>Bobby</NICKNAME><BDAY>1985-03-21</BDAY><URL>https://example.org/bob</URL>"
            "<ADR><HOME/><LOCALITY>Lyon</LOCALITY><REGION>Rhône</REGION><CTRY>France</CTRY></ADR>"
            "<TEL><HOME/><NUMBER>+33478000000</NUMBER></TEL><TEL><WORK/><NUMBER>+33478000001</NUMBER></TEL>")
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (gw, dial, rec):
            await dial("alice", "user-set-buddy", user_name=bob.boundjid.bare, status="True")
            await rec.wait(lambda e: e.kind == "BuddyStatus" and e.fields["OnlineStatus"] == "DND")
            user = await dial("alice", "get-user", user_name=bob.boundjid.bare)
            assert {k: v for k, v in user.items() if v and k.startswith("SKYPE_USER_")} == {
                "SKYPE_USER_HANDLE": bob.boundjid.bare, "SKYPE_USER_FULLNAME": "Bob Builder",
                "SKYPE_USER_DISPNAME": "Bobby", "SKYPE_USER_BIRTHDAY": "19850321", "SKYPE_USER_SEX": "UNKNOWN",
                "SKYPE_USER_COUNTRY": "France", "SKYPE_USER_PROVINCE": "Rhône", "SKYPE_USER_CITY": "Lyon",
                "SKYPE_USER_PHONE_HOME": "+33478000000", "SKYPE_USER_PHONE_OFFICE": "+33478000001",
                "SKYPE_USER_HOMEPAGE": "https://example.org/bob",  # Prosody keeps no TZ (test_xmpp_mapping has it)
                "SKYPE_USER_ONLINESTATUS": "DND", "SKYPE_USER_MOOD_TEXT": "In a meeting",
                "SKYPE_USER_RICH_MOOD_TEXT": "In a meeting", "SKYPE_USER_ISAUTHORIZED": "True",
                "SKYPE_USER_ISBLOCKED": "False", "SKYPE_USER_BUDDYSTATUS": "2",
            }
            stranger = await dial("alice", "get-user", user_name=f"{unique('nobody')}@localhost")
            assert (stranger["SKYPE_STATUS"], stranger["SKYPE_USER_ONLINESTATUS"]) == ("SUCCESS", "UNKNOWN")
            not_a_jid = await dial("alice", "get-user", user_name="echo123")
            assert not_a_jid["SKYPE_ERROR"] == "unknown_user" and "not an XMPP address" in not_a_jid["SKYPE_ERROR_TEXT"]
        await bob.close()
    run(body())


def test_blocking_keeps_the_peer_out_and_shows_in_get_user(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        bob = await peer(prosody, unique("bob"))
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (gw, dial, rec):
            alice = gw.xmpp.account("alice").jid.bare
            blocked = await dial("alice", "user-set-block", user_name=bob.boundjid.bare, status="True")
            assert blocked["SKYPE_STATUS"] == "SUCCESS"
            bob.send_message(mto=alice, mbody="let me in", mtype="chat")
            assert (await bob.next(lambda g: g.kind == "error")).condition == "service-unavailable"
            assert (await dial("alice", "get-user", user_name=bob.boundjid.bare))["SKYPE_USER_ISBLOCKED"] == "True"
            refused = await dial("alice", "chatmessage-send", user_name=bob.boundjid.bare, message_body="hi")
            assert refused["SKYPE_ERROR"] == "not_authorized"
            assert (await dial("alice", "user-set-block", user_name=bob.boundjid.bare, status="false"))["SKYPE_STATUS"] == "SUCCESS"
            bob.send_message(mto=alice, mbody="thanks", mtype="chat")
            await rec.wait(lambda e: e.kind == "ChatMessage" and e.fields["Body"] == "thanks")
            assert not [e for e in rec.events if e.kind == "ChatMessage" and e.fields["Body"] == "let me in"]
        await bob.close()
    run(body())


def test_a_block_made_elsewhere_is_known_at_login(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        name = unique("alice")
        alice = await peer(prosody, name)  # the account's own other client blocks bob before the gateway logs in
        bob = f"{unique('bob')}@localhost"
        await alice.plugin["xep_0191"].block(bob, timeout=5)
        await alice.close()
        async with gateway_on(tmp_path, prosody, "alice", f"{name}@localhost") as (_, dial, _rec):
            assert (await dial("alice", "get-user", user_name=bob))["SKYPE_USER_ISBLOCKED"] == "True"
    run(body())


# -- files -------------------------------------------------------------------------------------
def test_file_send_uploads_and_the_peer_gets_a_link_to_the_same_bytes(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        bob = await peer(prosody, unique("bob"))
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (gw, dial, rec):
            content = bytes(range(256)) * 1000
            (tmp_path / "media" / "price list.pdf").write_bytes(content)
            sent = await dial("alice", "file-send", user_name=bob.boundjid.bare, file="price%20list.pdf")
            assert (sent["SKYPE_STATUS"], sent["SKYPE_ERROR_TEXT"]) == ("SUCCESS", "")
            got = await bob.next(lambda g: g.kind == "message" and g.url != "")
            assert got.body == got.url and got.url.startswith(f"http://127.0.0.1:{prosody.http_port}/")
            async with aiohttp.ClientSession() as session, session.get(got.url) as response:
                assert await response.read() == content
            event = await rec.wait(lambda e: e.kind == "FileTransfer")
            assert (event.fields["Direction"], event.fields["Partner"], event.fields["FileName"]) == (
                "outgoing", bob.boundjid.bare, "price list.pdf")
        await bob.close()
    run(body())


def test_file_send_never_uploads_the_outside_file_while_a_link_is_swapped_in(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        bob = await peer(prosody, unique("bob"))
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (gw, dial, rec):
            media = tmp_path / "media"
            (tmp_path / "secret.txt").write_text("outside")
            (media / "swap.txt").write_text("inside")
            (media / "other.txt").symlink_to(tmp_path / "secret.txt")
            results = []
            with swapping(media, "swap.txt", "other.txt"):
                for _ in range(100):
                    results.append((await dial("alice", "file-send", user_name=bob.boundjid.bare,
                                               file="swap.txt"))["SKYPE_ERROR"])
            uploaded = []
            async with aiohttp.ClientSession() as session:
                for _ in range(results.count("")):
                    got = await bob.next(lambda g: g.kind == "message" and g.url != "")
                    async with session.get(got.url) as response:
                        uploaded.append(await response.text())
            assert uploaded.count("outside") == 0
            assert set(results) <= {"", "invalid-argument"} and set(uploaded) == {"inside"}
        await bob.close()
    run(body())


def test_a_file_offered_as_a_link_is_downloaded_never_overwriting(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        bob = await peer(prosody, unique("bob"))
        source = tmp_path / "notes.txt"
        source.write_bytes(b"minutes of the meeting\n" * 100)
        with open(source, "rb") as data:
            url = await bob.plugin["xep_0363"].upload_file("notes.txt", input_file=data, timeout=5)
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (gw, _, rec):
            alice = gw.xmpp.account("alice").jid.bare
            (tmp_path / "incoming" / "alice").mkdir(parents=True)
            (tmp_path / "incoming" / "alice" / "notes.txt").write_text("an older file of the same name")
            offer = bob.make_message(mto=alice, mbody=url, mtype="chat")
            offer["oob"]["url"] = url
            offer.send()
            event = await rec.wait(lambda e: e.kind == "FileTransfer" and e.fields["Direction"] == "incoming")
            stored = Path(event.fields["Path"])
            assert stored == tmp_path / "incoming" / "alice" / "notes (2).txt"
            assert stored.read_bytes() == source.read_bytes()
            assert (tmp_path / "incoming" / "alice" / "notes.txt").read_text() == "an older file of the same name"
            assert event.fields["Partner"] == bob.boundjid.bare
            assert not list((tmp_path / "incoming" / "alice").glob(".partial-*"))
        await bob.close()
    run(body())


def test_a_server_without_an_upload_service_makes_file_send_not_supported(tmp_path: Path) -> None:
    server = Prosody(upload=False)
    server.start()

    async def body() -> None:
        bob = await peer(server, "bob")
        async with gateway_on(tmp_path, server, "alice", account_jid(server, "alice")) as (gw, dial, _rec):
            (tmp_path / "media" / "a.txt").write_text("a")
            await asyncio.wait_for(_discovered(gw), 5)
            sent = await dial("alice", "file-send", user_name="bob@localhost", file="a.txt")
            assert (sent["SKYPE_ERROR"], sent["SKYPE_ERROR_TEXT"]) == (
                "not_supported", "alice is on the xmpp network, which has no file transfer")
        await bob.close()
    try:
        run(body())
    finally:
        server.remove()


def test_calls_find_stun_and_turn_in_the_settings_else_with_xep_0215(tmp_path: Path) -> None:
    server = Prosody(upload=False, ice=True)
    server.start()

    async def body() -> None:
        alice, bob = account_jid(server, "alice"), account_jid(server, "bob")
        body = xmpp_account(server, "alice", alice) + xmpp_account(
            server, "bob", bob, stun_server="stun.example.org:3479", turn_server="turn.example.org:3480",
            turn_username="u", turn_password="p")
        async with running_gateway(tmp_path, body) as gw:
            await asyncio.wait_for(_discovered(gw), 5)
            while not gw.xmpp.account("bob").discovered:
                await asyncio.sleep(0.01)
            assert gw.xmpp.account("alice").ice_servers == [
                {"urls": "stun:127.0.0.1:3478"},
                {"urls": "turn:127.0.0.1:3478", "username": "pbx", "credential": "turn-secret"}]
            assert gw.xmpp.account("bob").ice_servers == [
                {"urls": "stun:stun.example.org:3479"},
                {"urls": "turn:turn.example.org:3480", "username": "u", "credential": "p"}]
    try:
        run(body())
    finally:
        server.remove()


async def _discovered(gw: Gateway) -> None:
    while not gw.xmpp.account("alice").discovered:
        await asyncio.sleep(0.01)


# -- delivery: offline, once ----------------------------------------------------------------------
def test_messages_sent_while_the_gateway_was_down_arrive_once_after_it_starts(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        name = unique("alice")
        alice = account_jid(prosody, name)
        bob = await peer(prosody, unique("bob"))
        for n in range(3):
            bob.send_message(mto=alice, mbody=f"while you were out {n}", mtype="chat")
        await bob.flushed()
        for round_ in range(2):  # the second start gets nothing again
            async with gateway_on(tmp_path, prosody, "alice", alice) as (gw, _, rec):
                await asyncio.sleep(0.5)
                bodies = [e.fields["Body"] for e in rec.events if e.kind == "ChatMessage"]
                assert bodies == ([f"while you were out {n}" for n in range(3)] if round_ == 0 else [])
                assert [m["body"] for m in gw.store.messages("alice")] == [f"while you were out {n}" for n in range(3)]
        await bob.close()
    run(body())


def test_a_message_delivered_again_with_the_same_id_is_dropped(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        bob = await peer(prosody, unique("bob"))
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (gw, _, rec):
            alice = gw.xmpp.account("alice").jid.bare
            for _ in range(2):  # as a client resending after a broken stream does
                message = bob.make_message(mto=alice, mbody="only once", mtype="chat")
                message["id"] = "resent-1"
                message.send()
            bob.send_message(mto=alice, mbody="next", mtype="chat")
            await rec.wait(lambda e: e.kind == "ChatMessage" and e.fields["Body"] == "next")
            assert [e.fields["Body"] for e in rec.events if e.kind == "ChatMessage"] == ["only once", "next"]
        await bob.close()
    run(body())


# -- connection: TLS, login, reconnect ------------------------------------------------------------
def test_direct_tls_and_a_server_certificate_not_trusted(prosody: Prosody, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    async def body() -> None:
        jid = account_jid(prosody, unique("alice"))
        async with gateway_on(tmp_path / "direct", prosody, "alice", jid, xmpp_tls="direct",
                              xmpp_port=str(prosody.direct_tls_port)) as (_, dial, _rec):
            assert (await dial("alice", "list-registered"))["SKYPE_STATUS"] == "SUCCESS"
        body = xmpp_account(prosody, "alice", jid).replace(f"xmpp_ca_file = {prosody.ca_file}\n", "")
        async with running_gateway(tmp_path / "untrusted", body) as gw:
            recorder = Recorder(gw.bus)
            await asyncio.sleep(1.0)
            assert gw.manager.accounts.get("alice").status in ("CONNECTING", "OFFLINE")
            assert not [e for e in recorder.events if e.kind == "AccountStatus" and e.fields["Status"] == "ONLINE"]
    (tmp_path / "direct").mkdir()
    (tmp_path / "untrusted").mkdir()
    run(body())
    assert any("certificate" in r.getMessage().lower() or "cannot connect" in r.getMessage() for r in caplog.records)


def test_a_refused_login_is_told_and_retried_slowly(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        jid = account_jid(prosody, unique("alice"))
        body = xmpp_account(prosody, "alice", jid, password="wrong")
        async with running_gateway(tmp_path, body) as gw:
            recorder = Recorder(gw.bus)
            await recorder.wait(lambda e: e.kind == "AccountStatus" and e.fields["Status"] == "LOGIN_REFUSED", 10)
            await asyncio.sleep(1.0)
            statuses = [e.fields["Status"] for e in recorder.events if e.kind == "AccountStatus"]
            assert statuses[-1] == "LOGIN_REFUSED" and statuses.count("LOGIN_REFUSED") == 1  # no tight retry loop
            failed = await Dialplan(gw.agi.port)("alice", "chatmessage-send", user_name="bob@localhost", message_body="x")
            assert failed["SKYPE_ERROR"] == "network_unavailable" and "login refused" in failed["SKYPE_ERROR_TEXT"]
    run(body())


def test_prosody_restarted_the_account_comes_back_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    server = Prosody()
    server.start()

    async def body() -> None:
        alice = account_jid(server, "alice")
        bob = await peer(server, "bob")
        async with gateway_on(tmp_path, server, "alice", alice) as (gw, dial, rec):
            for n in range(3):
                assert (await dial("alice", "chatmessage-send", user_name="bob@localhost", message_body=f"before%20{n}"))[
                    "SKYPE_STATUS"] == "SUCCESS"
            bob.send_message(mto=alice, mbody="from bob before", mtype="chat")
            await rec.wait(lambda e: e.kind == "ChatMessage" and e.fields["Body"] == "from bob before")
            await bob.close()
            mark = len(rec.events)
            server.stop()
            server.start()
            await wait_status(rec, "alice", "ONLINE", mark, timeout=15)
            bob = await Peer(server, "bob@localhost", "secret").online()
            for n in range(2):
                assert (await dial("alice", "chatmessage-send", user_name="bob@localhost", message_body=f"after%20{n}"))[
                    "SKYPE_STATUS"] == "SUCCESS"
            bob.send_message(mto=alice, mbody="from bob after", mtype="chat")
            await rec.wait(lambda e: e.kind == "ChatMessage" and e.fields["Body"] == "from bob after")
            await bob.next(lambda g: g.body == "after 1")
            received = [g.body for g in bob.got if g.kind == "message"]
            assert received[-2:] == ["after 0", "after 1"] and received.count("after 0") == 1
            incoming = [e.fields["Body"] for e in rec.events if e.kind == "ChatMessage" and e.fields["Direction"] == "incoming"]
            assert incoming == ["from bob before", "from bob after"]
        await bob.close()
    try:
        run(body())
    finally:
        server.remove()


# -- bad input from the other side --------------------------------------------------------------------
def test_a_long_message_is_cut_and_the_account_serves_on(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        bob = await peer(prosody, unique("bob"))
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice")),
                              extra="\n[carl]\ntype = account\n") as (gw, dial, rec):
            alice = gw.xmpp.account("alice").jid.bare
            bob.send_message(mto=alice, mbody="é" * 500_000, mtype="chat")  # 1 MB of UTF-8
            event = await rec.wait(lambda e: e.kind == "ChatMessage" and e.account == "alice")
            assert gw.store.messages("alice")[0]["body"] == "é" * 65536
            assert len(event.fields["Body"]) == 65536
            assert (await dial("demo", "chatmessage-send", user_name="carl", message_body="still here"))["SKYPE_STATUS"] == "SUCCESS"
            assert (await dial("alice", "chatmessage-send", user_name=bob.boundjid.bare, message_body="ok"))["SKYPE_STATUS"] == "SUCCESS"
        await bob.close()
    run(body())


def test_a_huge_file_link_is_refused_without_a_trace(prosody: Prosody, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    async def body() -> None:
        never_ending = await _endless_http_server()
        bob = await peer(prosody, unique("bob"))
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (gw, dial, rec):
            gw.xmpp._max_file_size = 1_000_000
            alice = gw.xmpp.account("alice").jid.bare
            url = f"http://127.0.0.1:{never_ending.sockets[0].getsockname()[1]}/forever.bin"
            offer = bob.make_message(mto=alice, mbody=url, mtype="chat")
            offer["oob"]["url"] = url
            offer.send()
            for _ in range(100):
                if any("was not received" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
            assert not [e for e in rec.events if e.kind == "FileTransfer"]
            assert not list((tmp_path / "incoming" / "alice").iterdir())
            assert (await dial("alice", "chatmessage-send", user_name=bob.boundjid.bare, message_body="ok"))["SKYPE_STATUS"] == "SUCCESS"
        never_ending.close()
        await bob.close()
    run(body())
    assert any("more than 1000000 bytes" in r.getMessage() for r in caplog.records)


async def _endless_http_server() -> asyncio.AbstractServer:
    """An HTTP server whose one answer never ends."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        try:
            while True:
                writer.write(bytes(65536))
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def test_a_flood_of_buddy_requests_asks_once_and_invalid_xml_costs_the_sender_only(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        flooder = await peer(prosody, unique("mallory"))
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (gw, dial, rec):
            alice = gw.xmpp.account("alice").jid.bare
            for n in range(300):
                flooder.send_presence(pto=alice, ptype="subscribe", pstatus=f"please {n}")
            await flooder.flushed()
            flooder.send_raw("<message to='" + alice + "'><body>unclosed</message>")
            await asyncio.sleep(0.5)
            requests = [e for e in rec.events if e.kind == "AuthRequest"]
            assert [e.fields["Text"] for e in requests] == ["please 0"]  # pending: the repeats ask nothing more
            assert gw.manager.accounts.get("alice").status == "ONLINE"
            assert (await dial("alice", "get-user", user_name=flooder.boundjid.bare))["SKYPE_STATUS"] == "SUCCESS"
        await flooder.close()
    run(body())


def test_unusual_but_valid_jids_and_show_accounts(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        zoe = await peer(prosody, unique("zoë_o-k.x"), echo=True)
        async with gateway_on(tmp_path, prosody, "alice", account_jid(prosody, unique("alice"))) as (gw, dial, rec):
            sent = await dial("alice", "chatmessage-send", user_name=quote(zoe.boundjid.bare), message_body="hej")
            assert sent["SKYPE_STATUS"] == "SUCCESS" and sent["SKYPE_CHAT_NAME"] == f"#alice/${zoe.boundjid.bare}"
            echoed = await rec.wait(lambda e: e.kind == "ChatMessage" and e.fields["Direction"] == "incoming")
            assert (echoed.fields["From"], echoed.fields["Body"]) == (zoe.boundjid.bare, "hej")
            accounts = {row.name: (row.network, row.status) for row in gw.status.accounts()}
            assert accounts == {"alice": ("xmpp", "ONLINE"), "demo": ("embedded", "ONLINE")}
        await zoe.close()
    run(body())
