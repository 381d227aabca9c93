"""Joins AudioSocket connections from Asterisk with Skype calls.

A connection names its call by the UUID that `call-start` (or the originate of an
incoming call) gave the dialplan as `SKYPE_CALL_UUID`. Once attached it becomes the
call's local voice: what the Asterisk caller says is what the account says, and what
the account hears is sent to Asterisk. DTMF from Asterisk goes to the remote user; the
remote user's DTMF is played on the channel that placed or answered the call (``PlayDTMF``),
received on it when that channel is the call's own AudioSocket channel. The call ending
closes the connection, and the connection closing ends the call, except an incoming call
the dialplan sent to voicemail, which goes on without Asterisk.
"""

from __future__ import annotations

import logging
import uuid
from typing import Callable

from .background import Background
from .manager.calls import Calls
from .media.callmedia import CallMedia
from .model.calls import ENDED, VM_ACTIVE, Call, CallStatus
from .model.events import CallChanged, DtmfReceived, Event, EventBus

log = logging.getLogger("fastagi.bridge")

PlayDtmf = Callable[[str, str, bool], None]  # (Asterisk channel, digit, received on it)


def carries_call(channel: str, call: Call) -> bool:
    """Whether `channel` is the AudioSocket channel of `call` itself (``AudioSocket/HOST:PORT-UUID``):
    the Skype side's own channel, where its digits must be received, not sent back out."""
    return channel.startswith("AudioSocket/") and channel.endswith(f"-{call.uuid}")


class CallBridge:
    """Implements the AudioSocket server's `CallMediaBinder` over the account manager."""

    def __init__(self, calls: Calls, media: CallMedia, bus: EventBus, play_dtmf: PlayDtmf | None = None) -> None:
        self.calls = calls
        self.media = media
        self.play_dtmf = play_dtmf  # None without AMI
        self._connections: dict[int, object] = {}  # call id → AudioSocketConnection
        self._background = Background(log)
        bus.subscribe(self._on_event)

    def _call(self, call_uuid: uuid.UUID) -> Call | None:
        return self.calls.by_uuid(str(call_uuid))

    def attach(self, call_uuid: uuid.UUID, conn) -> bool:  # type: ignore[no-untyped-def]
        call = self._call(call_uuid)
        if call is None:
            return False
        if call.id in self._connections:
            log.warning("call %d already has an AudioSocket connection; refusing another", call.id)
            return False
        port = self.media.port(call.account, call.id)
        port.set_source(conn)
        port.add_sink(conn)
        self._connections[call.id] = conn
        log.info("AudioSocket %s bridged to call %d of %s", call_uuid, call.id, call.account)
        return True

    def dtmf(self, call_uuid: uuid.UUID, digit: str) -> None:
        call = self._call(call_uuid)
        if call is not None and call.status is CallStatus.INPROGRESS:
            self._background.spawn(self.calls.send_dtmf(call.account, call.id, digit))

    def detached(self, call_uuid: uuid.UUID) -> None:
        call = self._call(call_uuid)
        if call is None:
            return
        self._release(call.id)
        if call.direction == "incoming" and call.status in VM_ACTIVE:
            # The dialplan handed the call to voicemail (call-vm) and then hung up its channel.
            log.info("Asterisk side of call %d hung up: the call stays in voicemail (%s)", call.id, call.status.value)
            return
        log.info("Asterisk side of call %d hung up: ending the Skype call", call.id)
        self._background.spawn(self.calls.hangup(call.account, call.id))

    def _release(self, call_id: int) -> None:
        """Asterisk's side went away: the call's voice is silence again until another attaches."""
        conn = self._connections.pop(call_id, None)
        call = self.calls.live.get(call_id)
        if conn is not None and call is not None:
            port = self.media.port(call.account, call.id)
            if port.source is conn:
                port.set_source(None)
            if conn in port.sinks:
                port.remove_sink(conn)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, CallChanged) and event.status in ENDED:
            conn = self._connections.pop(event.call_id, None)
            if conn is not None:
                conn.close()  # type: ignore[attr-defined]
        elif isinstance(event, DtmfReceived) and self.play_dtmf is not None:
            call = self.calls.live.get(event.call_id)
            if call is not None and call.id in self._connections and call.asterisk_channel:
                self.play_dtmf(call.asterisk_channel, event.digit, carries_call(call.asterisk_channel, call))
