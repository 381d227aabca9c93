"""Accounts on XMPP against a real Prosody: each action and what the other side received, and each event
from a real XMPP user reaching the dialplan's side (FastAGI results, the AMI double's UserEvents)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import aiohttp

from conftest import Dialplan, Recorder, run, running_gateway, unique, xmpp_account
from fastagi.app import Gateway
from xmpp.peers import Got, Peer, peer
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
        async with gateway_on(tmp_path, prosody, "alice", alice) as (gw, dial, _):
            sent = await dial("alice", "chatmessage-send", user_name=bob.boundjid.bare,
                              message_body="h%C3%A9llo%2C%20bob%20%26%20co")
            assert (sent["SKYPE_STATUS"], sent["SKYPE_ERROR"]) == ("SUCCESS", "")
            assert sent["SKYPE_CHAT_NAME"] == f"#alice/${bob.boundjid.bare}"
            got = await bob.next(lambda g: g.kind == "message")
            assert (got.sender, got.body) == (alice, "héllo, bob & co")
            again = await dial("alice", "chatmessage-send", user_name=bob.boundjid.bare, message_body="again")
            assert again["SKYPE_CHAT_NAME"] == sent["SKYPE_CHAT_NAME"]  # one chat per contact
            assert [m["body"] for m in gw.store.messages("alice")] == ["héllo, bob & co", "again"]
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
