"""The gateway with AMI on, against an AMI double that speaks like Asterisk 22."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import quote

from conftest import Recorder, running_gateway, run
from doubles.ami_server import AmiServer, Channel
from doubles.audiosocket_client import SLIN16, AsteriskAudioSocket
from doubles.asterisk_agi import FakeAsterisk
from fastagi.app import Gateway

ACCOUNTS = """
[alice]
type = account
fullname = Alice "Al" Example
[bob]
type = account
fullname = Bob Builder
"""


def ami_section(port: int) -> str:
    return f"""
[ami]
enabled = yes
host = 127.0.0.1
port = {port}
username = skype
secret = skypesecret
ping_interval = 0.2
ping_timeout = 0.5
originate_timeout = 5
"""


async def eventually(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def gateway_and_ami(tmp_path: Path, accounts: str = ACCOUNTS, **double: str) -> AsyncIterator[tuple[Gateway, AmiServer]]:
    """A gateway logged in to an AMI double."""
    ami = AmiServer(**double)
    await ami.start()
    try:
        async with running_gateway(tmp_path, accounts + ami_section(ami.port)) as gw:
            await eventually(lambda: gw.ami is not None and gw.ami.connected)
            yield gw, ami
    finally:
        await ami.stop()


async def dial(port: int, script: str) -> dict[str, str]:
    return (await FakeAsterisk(port).agi(script)).skype()


def user_events(ami: AmiServer, name: str) -> list:  # type: ignore[type-arg]
    return [a for a in ami.actions("UserEvent") if a.get("UserEvent") == name]


def test_full_loop_bob_calls_alice_through_the_dialplan(tmp_path: Path) -> None:
    async def body() -> None:
        async with gateway_and_ami(tmp_path) as (gw, ami):
            started = await dial(gw.agi.port, "call-start?account=bob&user-name=alice")
            assert started["SKYPE_STATUS"] == "SUCCESS"
            await eventually(lambda: ami.actions("Originate"))
            originate = ami.actions("Originate")[0]
            assert originate.get("Channel") == "Local/alice@skype-incoming/n"
            assert originate.get("CallerID") == '"Bob Builder" <bob>'
            variables = dict(originate.variables())
            assert variables["SKYPE_ACCOUNT"] == "alice" and variables["SKYPE_CALLER"] == "bob"
            assert variables["SKYPE_CALLER_NAME"] == "Bob Builder"
            incoming = variables["SKYPE_CALL_ID"]
            assert variables["SKYPE_CALL_UUID"] == gw.manager.calls.live[int(incoming)].uuid
            # the dialplan in skype-incoming answers the Skype call
            answered = await dial(gw.agi.port, f"call-answer?account={variables['SKYPE_ACCOUNT']}&call-id={incoming}")
            assert answered["SKYPE_STATUS"] == "SUCCESS"

            def in_progress(account: str, call_id: str) -> bool:
                return any(e.get("Account") == account and e.get("CallID") == call_id and e.get("Status") == "INPROGRESS"
                           and e.get("Direction") == ("incoming" if account == "alice" else "outgoing")
                           for e in user_events(ami, "SkypeCallStatus"))

            await eventually(lambda: in_progress("alice", incoming) and in_progress("bob", started["SKYPE_CALL_ID"]))
    run(body())


def test_chat_injection_arrives_as_one_harmless_header(tmp_path: Path) -> None:
    async def body() -> None:
        async with gateway_and_ami(tmp_path) as (gw, ami):
            body_text = "hi\r\nEvent: Fake\r\nAccount: mallory"
            sent = await dial(gw.agi.port, f"chatmessage-send?account=alice&user-name=bob&message-body={quote(body_text, safe='')}")
            assert sent["SKYPE_STATUS"] == "SUCCESS"
            await eventually(lambda: len(user_events(ami, "SkypeChatMessage")) == 2)
            for event in user_events(ami, "SkypeChatMessage"):
                assert [k for k, _ in event.headers].count("Event") == 0
                assert [v for k, v in event.headers if k == "Account"] in (["alice"], ["bob"])
                assert event.get("Body") == "hi\\r\\nEvent: Fake\\r\\nAccount: mallory"
    run(body())


def test_fastagi_serves_while_ami_is_down_and_events_go_out_in_order_later(tmp_path: Path) -> None:
    async def body() -> None:
        ami = AmiServer()
        await ami.start()
        port = ami.port
        await ami.stop()  # Asterisk is down
        async with running_gateway(tmp_path, ACCOUNTS + ami_section(port)) as gw:
            for n in range(5):
                result = await dial(gw.agi.port, f"chatmessage-send?account=alice&user-name=bob&message-body=m{n}")
                assert result["SKYPE_STATUS"] == "SUCCESS"
            assert gw.ami is not None and not gw.ami.connected and gw.ami.queued == 2 + 10  # two accounts ONLINE, then chats
            ami = AmiServer(port=port)
            await ami.start()  # Asterisk is back
            await eventually(lambda: gw.ami.queued == 0, timeout=10)
            names = [e.get("UserEvent") for e in ami.actions("UserEvent")]
            assert names == ["SkypeAccountStatus"] * 2 + ["SkypeChatMessage"] * 10
            bodies = [(e.get("Account"), e.get("Body")) for e in user_events(ami, "SkypeChatMessage")]
            assert bodies == [(account, f"m{n}") for n in range(5) for account in ("bob", "alice")]  # delivery, then the sent copy
        await ami.stop()
    run(body())


def test_failed_originate_applies_the_unanswered_policy(tmp_path: Path) -> None:
    async def body() -> None:
        voicemail_bob = ACCOUNTS.replace("[bob]\ntype = account", "[bob]\ntype = account\nunanswered = voicemail")
        async with gateway_and_ami(tmp_path, voicemail_bob, originate_response="Failure") as (gw, _):
            rec = Recorder(gw.bus)
            await dial(gw.agi.port, "call-start?account=alice&user-name=bob")
            ringing = await rec.wait(lambda e: e.account == "bob" and e.fields.get("Status") == "RINGING")
            await rec.status("bob", ringing.fields["CallID"], "VM_BUFFERING_GREETING", timeout=3)
    run(body())


def test_remote_dtmf_is_played_on_the_bridged_channel(tmp_path: Path) -> None:
    async def body() -> None:
        async with gateway_and_ami(tmp_path) as (gw, ami):
            assert gw.ami is not None
            gw.ami.play_dtmf("PJSIP/100-00000001", "5")
            await eventually(lambda: ami.actions("PlayDTMF"))
            action = ami.actions("PlayDTMF")[0]
            assert (action.get("Channel"), action.get("Digit")) == ("PJSIP/100-00000001", "5")
    run(body())


def test_a_skype_callers_keys_are_received_on_its_audiosocket_channel(tmp_path: Path) -> None:
    """bob calls alice, whose dialplan answers on the AudioSocket channel (the IVR): bob's keys
    must reach that channel's WaitExten(), not go out of it, back to the gateway and to bob."""
    async def body() -> None:
        async with gateway_and_ami(tmp_path) as (gw, ami):
            rec = Recorder(gw.bus)
            bob = FakeAsterisk(gw.agi.port)
            started = await bob.agi("call-start?account=bob&user-name=alice")
            ringing = await rec.wait(lambda e: e.account == "alice" and e.fields.get("Status") == "RINGING")
            call, call_uuid = ringing.fields["CallID"], ringing.fields["UUID"]
            channel_name = f"AudioSocket/127.0.0.1:{gw.audiosocket.port}-{call_uuid}"  # chan_audiosocket's name
            client = await AsteriskAudioSocket.connect(gw.audiosocket.port, uuid.UUID(call_uuid), SLIN16)
            ami.channels[channel_name] = channel = Channel(send_dtmf=client.send_dtmf)
            ivr = FakeAsterisk(gw.agi.port)
            ivr.variables["CHANNEL"] = channel_name
            assert (await ivr.agi(f"call-answer?account=alice&call-id={call}")).skype()["SKYPE_STATUS"] == "SUCCESS"
            await rec.status("bob", started.skype()["SKYPE_CALL_ID"], "INPROGRESS")
            await bob.agi(f"call-dtmf?account=bob&call-id={started.skype()['SKYPE_CALL_ID']}&code=2%23")
            await eventually(lambda: len(channel.received_dtmf) == 2)
            assert [(a.get("Channel"), a.get("Digit"), a.get("Receive")) for a in ami.actions("PlayDTMF")] == [
                (channel_name, "2", "yes"), (channel_name, "#", "yes")]
            assert channel.received_dtmf == ["2", "#"]
            await client.send_audio(bytes(640 * 10))  # 200 ms for a bounced digit to come back
            assert [e.account for e in rec.events if e.kind == "DTMF"] == ["alice", "alice"]  # nothing went back to bob
            await client.hang_up()
    run(body())


def test_shutdown_delivers_the_last_events(tmp_path: Path) -> None:
    async def body() -> None:
        async with gateway_and_ami(tmp_path) as (gw, ami):
            await dial(gw.agi.port, "call-start?account=alice&user-name=bob")
        statuses = [(e.get("Account"), e.get("Status")) for e in user_events(ami, "SkypeAccountStatus")]
        assert statuses == [("alice", "ONLINE"), ("bob", "ONLINE"), ("alice", "OFFLINE"), ("bob", "OFFLINE")]
        ended = [e.get("Status") for e in user_events(ami, "SkypeCallStatus") if e.get("Account") == "alice"]
        assert ended[-1] == "CANCELLED"  # the call still ringing at shutdown was ended, and Asterisk heard it
    run(body())


def test_user_event_seq_only_grows_across_a_restart(tmp_path: Path) -> None:
    async def body() -> None:
        ami = AmiServer()
        await ami.start()
        try:
            for n in range(2):  # the same state database both times
                async with running_gateway(tmp_path, ACCOUNTS + ami_section(ami.port)) as gw:
                    await eventually(lambda: gw.ami is not None and gw.ami.connected)
                    await dial(gw.agi.port, f"chatmessage-send?account=alice&user-name=bob&message-body=m{n}")
                    await eventually(lambda: gw.ami.queued == 0 and len(user_events(ami, "SkypeChatMessage")) == 2 * (n + 1))
        finally:
            await ami.stop()
        seqs = [int(event.get("Seq")) for event in ami.actions("UserEvent")]
        assert seqs[0] == 1 and seqs == sorted(set(seqs))  # the restarted gateway goes on above the last
        assert len(user_events(ami, "SkypeChatMessage")) == 4
    run(body())
