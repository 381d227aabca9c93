"""The AMI listener against an AMI double on a real socket: what Asterisk receives, and
that every event gets there once and in order through drops, dead connections and bad
credentials."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import AsyncIterator, Callable

import pytest

from doubles.ami_server import AmiServer, parse_caller_id
from fastagi.ami.listener import AmiListener
from fastagi.ami.protocol import MAX_LINE, unescape_value
from fastagi.ami.settings import AmiSettings
from fastagi.ami.userevents import USER_EVENTS, kind
from fastagi.model.calls import CallStatus
from fastagi.model.events import (
    EVENT_TYPES, AccountChanged, AuthRequest, BalanceChanged, BuddyChanged, CallChanged, ChatMessage, DtmfReceived,
    Event, EventBus, FileTransferChanged, SmsChanged, VoicemailReceived,
)

FAST = dict(ping_interval=0.05, ping_timeout=0.2, reconnect_min=0.01, reconnect_max=0.05, auth_retry=0.1)


def async_test(test: Callable) -> Callable:
    @functools.wraps(test)
    def run(*args, **kwargs) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 15))
    return run


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@dataclass
class Rig:
    server: AmiServer
    bus: EventBus
    listener: AmiListener
    unhandled: list[tuple[str, int]] = field(default_factory=list)

    def publish(self, event: Event) -> None:
        self.bus.publish(event)

    def chat(self, seq: int) -> None:
        self.publish(chat_message(body=f"message {seq}", message_id=seq))

    def chats(self) -> list[str]:
        return [action.get("MessageID") for action in self.server.actions("UserEvent")]

    def logins(self) -> int:
        return len(self.server.actions("Login"))


@asynccontextmanager
async def rig(server: AmiServer | None = None, **overrides) -> AsyncIterator[Rig]:
    server = server or AmiServer()
    await server.start()
    bus = EventBus()
    unhandled: list[tuple[str, int]] = []
    settings = AmiSettings("127.0.0.1", server.port, "skype", "skypesecret", **{**FAST, **overrides})
    listener = AmiListener(settings, bus, lambda account, call_id: unhandled.append((account, call_id)),
                           audiosocket_address=lambda: "127.0.0.1:4575")
    await listener.start()
    try:
        yield Rig(server, bus, listener, unhandled)
    finally:
        await listener.stop()
        await server.stop()


async def connected(r: Rig) -> None:
    await eventually(lambda: r.listener.connected)


def chat_message(**given: object) -> ChatMessage:
    """An incoming chat message of alice's from bob, with `given` fields changed."""
    defaults = dict(account="alice", chat_name="#bob/$alice;1", sender="bob", sender_name="", recipient="alice",
                    body="", message_id=1, direction="incoming")
    return ChatMessage(**{**defaults, **given})  # type: ignore[arg-type]


# -- what goes on the wire --------------------------------------------------------------

FRAMES = [
    (
        CallChanged("alice", 12, "bob", "Bob Builder", CallStatus.INPROGRESS, "outgoing", "", None,
                    "4a1f6c2e-0d5b-4c8e-9a57-3f0e6b2d9c11"),
        b"UserEvent: SkypeCallStatus\r\nAccount: alice\r\nCallID: 12\r\nPartner: bob\r\nPartnerName: Bob Builder\r\n"
        b"Status: INPROGRESS\r\nDirection: outgoing\r\nFailureReason: \r\nConferenceID: \r\n"
        b"UUID: 4a1f6c2e-0d5b-4c8e-9a57-3f0e6b2d9c11\r\n"),
    (
        chat_message(sender_name="Zo\u00eb", body="tab\there", message_id=7),
        b"UserEvent: SkypeChatMessage\r\nAccount: alice\r\nChatName: #bob/$alice;1\r\nFrom: bob\r\n"
        b"FromName: Zo\xc3\xab\r\nTo: alice\r\nBody: tab\\there\r\nMessageID: 7\r\nDirection: incoming\r\n"),
    (
        AuthRequest("alice", "carol", "Carol", "Please add me"),
        b"UserEvent: SkypeAuthRequest\r\nAccount: alice\r\nFrom: carol\r\nFromName: Carol\r\nText: Please add me\r\n"),
    (
        BuddyChanged("alice", "bob", "Bob", "ONLINE", 3, True, False),
        b"UserEvent: SkypeBuddyStatus\r\nAccount: alice\r\nUser: bob\r\nUserName: Bob\r\nOnlineStatus: ONLINE\r\n"
        b"BuddyStatus: 3\r\nIsAuthorized: True\r\nIsBlocked: False\r\n"),
    (
        SmsChanged("alice", 3, "+15551234", "DELIVERED", 10, "EUR"),
        b"UserEvent: SkypeSMSStatus\r\nAccount: alice\r\nSMSID: 3\r\nNumber: +15551234\r\nStatus: DELIVERED\r\n"
        b"Price: 10\r\nCurrency: EUR\r\n"),
    (
        FileTransferChanged("alice", 5, "bob", "a b.txt", "COMPLETED", "incoming", "/var/media/a b.txt"),
        b"UserEvent: SkypeFileTransfer\r\nAccount: alice\r\nTransferID: 5\r\nPartner: bob\r\nFileName: a b.txt\r\n"
        b"Status: COMPLETED\r\nDirection: incoming\r\nPath: /var/media/a b.txt\r\n"),
    (
        VoicemailReceived("alice", 9, 9, "bob", "RECEIVED", 12, "20261203-101500-call9.wav",
                          "/var/media/voicemail/alice/20261203-101500-call9.wav"),
        b"UserEvent: SkypeVoicemail\r\nAccount: alice\r\nVoicemailID: 9\r\nCallID: 9\r\nPartner: bob\r\n"
        b"Status: RECEIVED\r\nDuration: 12\r\nFileName: 20261203-101500-call9.wav\r\n"
        b"Path: /var/media/voicemail/alice/20261203-101500-call9.wav\r\n"),
    (
        DtmfReceived("alice", 12, "bob", "#"),
        b"UserEvent: SkypeDTMF\r\nAccount: alice\r\nCallID: 12\r\nPartner: bob\r\nDigit: #\r\n"),
    (
        BalanceChanged("alice", 1050, "EUR"),
        b"UserEvent: SkypeBalance\r\nAccount: alice\r\nBalance: 1050\r\nCurrency: EUR\r\n"),
    (
        AccountChanged("alice", "LOGGEDIN"),
        b"UserEvent: SkypeAccountStatus\r\nAccount: alice\r\nStatus: LOGGEDIN\r\n"),
]


def test_every_kind_has_a_frame_here() -> None:
    assert {type(event) for event, _ in FRAMES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event, body", FRAMES, ids=lambda value: kind(value) if not isinstance(value, bytes) else "")
@async_test
async def test_event_frame_on_the_wire(event: Event, body: bytes) -> None:
    async with rig() as r:
        r.publish(event)
        await eventually(lambda: r.listener.delivered == 1)
        [action] = r.server.actions("UserEvent")
        action_id = action.get("ActionID").encode()
        assert action.raw == b"Action: UserEvent\r\n" + body + b"Seq: 1\r\nActionID: " + action_id + b"\r\n\r\n"
        assert r.server.actions("Originate") == []


@async_test
async def test_login_asks_for_call_events_only() -> None:
    async with rig() as r:
        await connected(r)
        [login] = r.server.actions("Login")
        assert (login.get("Username"), login.get("Secret"), login.get("Events")) == ("skype", "skypesecret", "call")


@async_test
async def test_injected_lines_stay_one_header_value() -> None:
    body = "hi\r\nEvent: Fake\r\n"
    async with rig() as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.server.port)
        await reader.readline()
        writer.write(b"Action: Login\r\nUsername: skype\r\nSecret: skypesecret\r\nEvents: user\r\n\r\n")
        assert b"Authentication accepted" in await reader.readuntil(b"\r\n\r\n")

        r.publish(chat_message(body=body))
        await eventually(lambda: r.listener.delivered == 1)
        [action] = r.server.actions("UserEvent")
        assert b"\r\nBody: hi\\r\\nEvent: Fake\\r\\n\r\n" in action.raw
        assert "Event" not in [name for name, _ in action.headers]

        # What every AMI client with the user class receives from Asterisk:
        lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[:-2]
        assert [line for line in lines if line.startswith(b"Event:")] == [b"Event: UserEvent"]
        [sent_body] = [line[len(b"Body: "):] for line in lines if line.startswith(b"Body:")]
        assert unescape_value(sent_body.decode()) == body
        writer.close()


@async_test
async def test_long_text_is_cut_to_a_line_asterisk_reads() -> None:
    text = "\u00e9" * 3000
    async with rig() as r:
        r.publish(chat_message(body=text))
        await eventually(lambda: r.listener.delivered == 1)
        [action] = r.server.actions("UserEvent")
        [line] = [line for line in action.lines if line.startswith(b"Body:")]
        assert MAX_LINE - 3 <= len(line) + 2 <= MAX_LINE
        sent = action.get("Body")
        assert sent.endswith("...") and text.startswith(unescape_value(sent[:-3]))


def test_no_event_field_can_take_a_header_of_the_action() -> None:
    reserved = {"action", "actionid", "userevent", "account", "event", "privilege"}
    assert not any(name.lower() in reserved for _, fields in USER_EVENTS.values() for name, _ in fields)


# -- incoming calls -----------------------------------------------------------------------

RINGING = CallChanged("alice", 42, "bob", 'Bob "The" <Builder>', CallStatus.RINGING, "incoming", "", None,
                      "0b6e2f7a-8c1d-4e3f-9a2b-5d6c7e8f9a0b")


@async_test
async def test_incoming_call_is_originated_once_into_the_dialplan() -> None:
    async with rig() as r:
        r.publish(RINGING)
        r.publish(RINGING)  # the same call again: no second Originate
        r.publish(replace(RINGING, call_id=43, direction="outgoing"))
        r.publish(replace(RINGING, call_id=44, status=CallStatus.INPROGRESS))
        await eventually(lambda: r.listener.delivered == 5)
        assert [action.action for action in r.server.received if action.action in ("UserEvent", "Originate")] == [
            "UserEvent", "Originate", "UserEvent", "UserEvent", "UserEvent"]
        [originate] = r.server.actions("Originate")
        assert originate.headers[:-1] == [
            ("Action", "Originate"),
            ("Channel", "Local/alice@skype-incoming/n"),
            ("Application", "Wait"),
            ("Data", "86400"),
            ("Async", "true"),
            ("Timeout", "30000"),
            ("CallerID", '"Bob \\"The\\" <Builder>" <bob>'),
            ("Variable", "SKYPE_CALL_ID=42"),
            ("Variable", "SKYPE_ACCOUNT=alice"),
            ("Variable", "SKYPE_CALLER=bob"),
            ("Variable", 'SKYPE_CALLER_NAME=Bob \\"The\\" <Builder>'),
            ("Variable", "SKYPE_CALL_UUID=0b6e2f7a-8c1d-4e3f-9a2b-5d6c7e8f9a0b"),
        ]
        assert originate.variables() == [
            ("SKYPE_CALL_ID", "42"), ("SKYPE_ACCOUNT", "alice"), ("SKYPE_CALLER", "bob"),
            ("SKYPE_CALLER_NAME", 'Bob "The" <Builder>'), ("SKYPE_CALL_UUID", "0b6e2f7a-8c1d-4e3f-9a2b-5d6c7e8f9a0b")]
        assert parse_caller_id(originate.get("CallerID")) == ('Bob "The" <Builder>', "bob")
        assert r.unhandled == []


@async_test
async def test_incoming_call_settings_and_an_account_that_is_no_extension() -> None:
    async with rig(incoming_context="from-skype", variable_prefix="SK_", originate_timeout=45.0) as r:
        r.publish(replace(RINGING, account="live:carol", partner_name="Bob,\nB"))
        await eventually(lambda: r.listener.delivered == 2)
        [originate] = r.server.actions("Originate")
        assert originate.get("Channel") == "Local/s@from-skype/n"
        assert originate.get("Timeout") == "45000"
        assert originate.get("CallerID") == '"Bob,\\\\nB" <bob>'
        assert parse_caller_id(originate.get("CallerID")) == ("Bob,\\nB", "bob")
        assert dict(originate.variables())["SK_ACCOUNT"] == "live:carol"
        assert dict(originate.variables())["SK_CALLER_NAME"] == "Bob,\\nB"


@async_test
async def test_incoming_call_on_an_audiosocket_channel() -> None:
    async with rig(incoming_media="audiosocket") as r:
        r.publish(RINGING)
        r.publish(replace(RINGING, call_id=43, uuid=""))
        await eventually(lambda: r.listener.delivered == 3)
        [originate] = r.server.actions("Originate")
        assert originate.headers[:8] == [
            ("Action", "Originate"),
            ("Channel", "AudioSocket/127.0.0.1:4575/0b6e2f7a-8c1d-4e3f-9a2b-5d6c7e8f9a0b/c(slin16)"),
            ("Context", "skype-incoming"),
            ("Exten", "alice"),
            ("Priority", "1"),
            ("Async", "true"),
            ("Timeout", "30000"),
            ("CallerID", '"Bob \\"The\\" <Builder>" <bob>'),
        ]
        assert dict(originate.variables())["SKYPE_CALL_UUID"] == "0b6e2f7a-8c1d-4e3f-9a2b-5d6c7e8f9a0b"
        assert r.unhandled == [("alice", 43)]  # no UUID, no AudioSocket channel


@async_test
async def test_originate_failure_reports_the_call_unhandled() -> None:
    async with rig(AmiServer(originate_response="Failure")) as r:
        r.publish(RINGING)
        await eventually(lambda: r.unhandled == [("alice", 42)])
        assert r.listener.delivered == 2


@async_test
async def test_refused_originate_reports_the_call_unhandled_and_delivery_goes_on() -> None:
    async with rig(AmiServer(denied={"Originate"})) as r:
        r.publish(RINGING)
        r.chat(1)
        await eventually(lambda: r.listener.delivered == 2)
        assert r.unhandled == [("alice", 42)]
        assert r.listener.rejected == 1
        assert r.chats() == ["", "1"]


@async_test
async def test_answered_originate_is_not_reported() -> None:
    async with rig() as r:
        r.publish(RINGING)
        await eventually(lambda: r.listener.delivered == 2)
        r.chat(1)  # answered after the OriginateResponse, which comes first on the same connection
        await eventually(lambda: r.listener.delivered == 3)
        assert r.unhandled == []


# -- events_context -------------------------------------------------------------------------

SCRIPTS = [
    (chat_message(sender_name="Bob", body='hi, "you" (x)\r\n', message_id=7),
     "chatmessage-incoming-received",
     [("SKYPE_CHAT_NAME", "#bob/$alice;1"), ("SKYPE_USER_NAME", "bob"), ("SKYPE_USER_DISPNAME", "Bob"),
      ("SKYPE_TO", "alice"), ("SKYPE_MESSAGE_BODY", 'hi, "you" (x)\\r\\n'), ("SKYPE_MESSAGE_ID", "7"),
      ("SKYPE_DIRECTION", "incoming")]),
    (chat_message(chat_name="#alice/$bob;1", sender="alice", sender_name="Alice", recipient="bob", body="hello",
                  message_id=8, direction="outgoing"),
     "chatmessage-outgoing-received",
     [("SKYPE_CHAT_NAME", "#alice/$bob;1"), ("SKYPE_USER_NAME", "alice"), ("SKYPE_USER_DISPNAME", "Alice"),
      ("SKYPE_TO", "bob"), ("SKYPE_MESSAGE_BODY", "hello"), ("SKYPE_MESSAGE_ID", "8"), ("SKYPE_DIRECTION", "outgoing")]),
    (AuthRequest("alice", "carol", "Carol", "add me"),
     "authrequest-incoming-received",
     [("SKYPE_USER_NAME", "carol"), ("SKYPE_USER_DISPNAME", "Carol"), ("SKYPE_TEXT", "add me")]),
    (BuddyChanged("alice", "bob", "Bob", "AWAY", 3, True, False),
     "user-status-updated",
     [("SKYPE_USER_NAME", "bob"), ("SKYPE_USER_DISPNAME", "Bob"), ("SKYPE_USER_STATUS", "AWAY"),
      ("SKYPE_USER_BUDDYSTATUS", "3"), ("SKYPE_USER_ISAUTHORIZED", "True"), ("SKYPE_USER_ISBLOCKED", "False")]),
    (BalanceChanged("alice", 1050, "EUR"), "profile-currency-update",
     [("SKYPE_BALANCE", "1050"), ("SKYPE_BALANCE_CURRENCY", "EUR")]),
    (SmsChanged("alice", 3, "+15551234", "DELIVERED", 10, "EUR"),
     "sms-status-updated",
     [("SKYPE_SMS_ID", "3"), ("SKYPE_SMS_NUMBER", "+15551234"), ("SKYPE_SMS_STATUS", "DELIVERED"),
      ("SKYPE_SMS_PRICE", "10"), ("SKYPE_SMS_CURRENCY", "EUR")]),
    (FileTransferChanged("alice", 5, "bob", "a,b.txt", "COMPLETED", "incoming", "/m/a,b.txt"),
     "filetransfer-status-updated",
     [("SKYPE_FILE_TRANSFER_ID", "5"), ("SKYPE_USER_NAME", "bob"), ("SKYPE_FILE_NAME", "a,b.txt"),
      ("SKYPE_FILE_STATUS", "COMPLETED"), ("SKYPE_FILE_DIRECTION", "incoming"), ("SKYPE_FILE_PATH", "/m/a,b.txt")]),
]


@pytest.mark.parametrize("event, extension, variables", SCRIPTS, ids=[script[1] for script in SCRIPTS])
@async_test
async def test_events_context_runs_the_event_extension(event, extension, variables) -> None:
    async with rig(events_context="skype-events") as r:
        r.publish(event)
        await eventually(lambda: r.listener.delivered == 2)
        assert [action.action for action in r.server.received if action.action in ("UserEvent", "Originate")] == [
            "UserEvent", "Originate"]
        [originate] = r.server.actions("Originate")
        assert [name for name, _ in originate.headers][:6] == [
            "Action", "Channel", "Application", "Data", "Async", "Timeout"]
        assert originate.get("Channel") == f"Local/{extension}@skype-events/n"
        assert originate.variables() == [("SKYPE_ACCOUNT", "alice"), *variables]


@async_test
async def test_events_without_a_script_or_context_originate_nothing() -> None:
    async with rig(events_context="skype-events") as r:
        r.publish(DtmfReceived("alice", 1, "bob", "5"))
        r.publish(AccountChanged("alice", "LOGGEDIN"))
        r.publish(chat_message(body="no direction", direction=""))
        await eventually(lambda: r.listener.delivered == 3)
        assert r.server.actions("Originate") == []
    async with rig() as r:
        r.chat(1)
        await eventually(lambda: r.listener.delivered == 1)
        assert r.server.actions("Originate") == []


# -- delivery through trouble ---------------------------------------------------------------


@async_test
async def test_dropped_connection_loses_nothing() -> None:
    async with rig() as r:
        for seq in range(3):
            r.chat(seq)
        await eventually(lambda: r.listener.delivered == 3)
        r.server.drop()
        for seq in range(3, 8):
            r.chat(seq)
        await eventually(lambda: r.listener.delivered == 8)
        assert r.chats() == [str(seq) for seq in range(8)]
        assert r.logins() == 2


@async_test
async def test_asterisk_restart_loses_nothing() -> None:
    async with rig() as r:
        await connected(r)
        await r.server.stop()
        await eventually(lambda: not r.listener.connected)
        for seq in range(5):
            r.chat(seq)
        await asyncio.sleep(0.1)  # a few refused reconnects
        assert (r.listener.queued, r.listener.delivered) == (5, 0)
        await r.server.start()
        await eventually(lambda: r.listener.delivered == 5)
        assert r.chats() == [str(seq) for seq in range(5)]
        assert r.listener.queued == 0


@async_test
async def test_half_open_connection_is_detected_and_nothing_lost(caplog: pytest.LogCaptureFixture) -> None:
    async with rig() as r:
        r.chat(0)
        await eventually(lambda: r.listener.delivered == 1)
        r.server.go_half_open()
        for seq in range(1, 4):
            r.chat(seq)
        await eventually(lambda: r.listener.delivered == 4)
        assert r.chats() == ["0", "1", "2", "3"]
        assert r.logins() == 2
        assert "no answer to Ping within 0.2 s" in caplog.text


@async_test
async def test_wrong_credentials_retry_slowly_until_fixed(caplog: pytest.LogCaptureFixture) -> None:
    async with rig(AmiServer(secret="changed")) as r:
        r.chat(0)
        r.chat(1)
        await asyncio.sleep(0.35)
        assert not r.listener.connected and r.listener.queued == 2
        errors = [record for record in caplog.records if record.levelno == logging.ERROR]
        assert all("refused (Authentication failed)" in record.getMessage() for record in errors)
        assert 2 <= len(errors) <= r.logins() <= 6  # one try per auth_retry (0.1 s), not a tight loop
        r.server.secret = "skypesecret"
        await eventually(lambda: r.listener.delivered == 2)
        assert r.chats() == ["0", "1"]


@async_test
async def test_full_queue_drops_the_newest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    async with rig(queue_size=3) as r:
        await connected(r)
        await r.server.stop()
        await eventually(lambda: not r.listener.connected)
        for seq in range(5):
            r.chat(seq)
        r.publish(RINGING)
        assert (r.listener.queued, r.listener.dropped) == (3, 4)  # 2 chats, the call's UserEvent and Originate
        assert r.unhandled == [("alice", 42)]
        assert caplog.text.count("AMI queue full") == 1
        await r.server.start()
        await eventually(lambda: r.listener.delivered == 3)
        assert r.chats() == ["0", "1", "2"]
        r.chat(5)
        assert "after dropping 4 action(s)" in caplog.text


@async_test
async def test_repeated_header_frame_does_not_break_the_connection() -> None:
    async with rig() as r:
        await connected(r)
        r.server.send_raw(b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: SkypeChatMessage\r\n"
                          b"Account: bob\r\nBody: line1\r\nEvent: Injected\r\n\r\n")
        r.chat(1)
        await eventually(lambda: r.listener.delivered == 1)
        await asyncio.sleep(0.1)  # two pings more on the same connection
        assert r.logins() == 1 and r.listener.connected


def test_stop_is_clean() -> None:
    async def scenario() -> None:
        before = asyncio.all_tasks()
        async with rig() as r:
            r.chat(1)
            await eventually(lambda: r.listener.delivered == 1)
            await r.listener.stop()
            assert not r.listener.connected
            await eventually(lambda: r.server.connections == 0)
        assert asyncio.all_tasks() == before

        async with rig() as r:  # stopped while Asterisk is unreachable
            await r.server.stop()
            r.chat(1)
            await r.listener.stop()
            await r.server.start()
        assert asyncio.all_tasks() == before

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(asyncio.wait_for(scenario(), 10), debug=True)
        gc.collect()
    assert [str(warning.message) for warning in caught] == []


def test_stop_ends_the_listener_even_when_a_cancel_is_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.11's wait_for may turn a cancel into the error of the connect it wraps."""

    async def swallowing_session(self: AmiListener) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise OSError("connection refused") from None  # the cancel is lost here

    async def scenario() -> None:
        monkeypatch.setattr(AmiListener, "_session", swallowing_session)
        listener = AmiListener(AmiSettings("127.0.0.1", 9, "u", "s", reconnect_min=30.0, reconnect_max=30.0),
                               EventBus(), lambda account, call_id: None)
        await listener.start()
        await asyncio.sleep(0.01)
        stopping = asyncio.create_task(listener.stop())
        done, _ = await asyncio.wait([stopping], timeout=2)
        assert done, "stop() waited for the 30 s reconnect delay"

    asyncio.run(scenario())


def without_repeats(seqs: list[int]) -> list[int]:
    """What a consumer keeps of the UserEvents it sees: each Seq above the last it kept."""
    kept: list[int] = []
    for seq in seqs:
        if not kept or seq > kept[-1]:
            kept.append(seq)
    return kept


@async_test
async def test_frozen_asterisk_repeat_carries_its_seq_and_the_dead_link_is_reset() -> None:
    async with rig() as r:
        r.chat(0)
        await eventually(lambda: r.listener.delivered == 1)
        r.server.freeze()  # as under SIGSTOP: the kernel still takes what the gateway sends
        for seq in range(1, 4):
            r.chat(seq)
        await eventually(lambda: r.server.connections >= 2)  # declared dead, a new connection waits
        r.server.resume()
        await eventually(lambda: r.listener.delivered == 4)
        events = r.server.actions("UserEvent")
        seqs = [int(action.get("Seq")) for action in events]
        assert sorted(r.chats()) == ["0", "1", "1", "2", "3"]  # the copy waiting in the dead link's socket ran too
        assert dict(zip(seqs, r.chats())) == {1: "0", 2: "1", 3: "2", 4: "3"}  # a copy keeps its Seq
        assert without_repeats(seqs) == [1, 2, 3, 4]
        assert r.server.resets >= 1  # aborted with a reset, not closed
