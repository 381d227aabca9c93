"""The Skype call model: statuses, events, and the one transition table between them.

A call changes status only through `Call.apply(event)`, which looks the pair
(status, event) up in `TRANSITIONS`; a pair that is not there is an
`IllegalTransition`, never a silent change.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


class CallStatus(str, enum.Enum):
    UNPLACED = "UNPLACED"
    ROUTING = "ROUTING"
    EARLYMEDIA = "EARLYMEDIA"
    RINGING = "RINGING"
    INPROGRESS = "INPROGRESS"
    ONHOLD = "ONHOLD"  # held from both sides
    LOCALHOLD = "LOCALHOLD"
    REMOTEHOLD = "REMOTEHOLD"
    FINISHED = "FINISHED"
    MISSED = "MISSED"
    REFUSED = "REFUSED"
    BUSY = "BUSY"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    VM_BUFFERING_GREETING = "VM_BUFFERING_GREETING"
    VM_PLAYING_GREETING = "VM_PLAYING_GREETING"
    VM_RECORDING = "VM_RECORDING"
    VM_UPLOADING = "VM_UPLOADING"
    VM_SENT = "VM_SENT"
    VM_CANCELLED = "VM_CANCELLED"
    VM_FAILED = "VM_FAILED"
    TRANSFERRING = "TRANSFERRING"
    TRANSFERRED = "TRANSFERRED"


class CallEvent(str, enum.Enum):
    INCOMING = "incoming"  # a call arrives: it rings here
    ROUTE = "route"  # an outgoing call leaves
    EARLY_MEDIA = "early_media"
    RING = "ring"  # the far end rings
    ANSWER = "answer"  # answered (locally for incoming, remotely for outgoing)
    LOCAL_HOLD = "local_hold"
    LOCAL_RESUME = "local_resume"
    REMOTE_HOLD = "remote_hold"
    REMOTE_RESUME = "remote_resume"
    FINISH = "finish"  # either side hangs up a call in progress
    CANCEL = "cancel"  # the caller gives up before an answer
    REFUSE = "refuse"  # the callee declines
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAIL = "fail"
    VOICEMAIL = "voicemail"  # the call goes to voicemail
    VM_GREETING = "vm_greeting"
    VM_RECORD = "vm_record"
    VM_UPLOAD = "vm_upload"
    VM_SENT = "vm_sent"
    VM_CANCEL = "vm_cancel"
    VM_FAIL = "vm_fail"
    TRANSFER = "transfer"
    TRANSFER_DONE = "transfer_done"
    TRANSFER_FAIL = "transfer_fail"


S, E = CallStatus, CallEvent
PRE_ANSWER = (S.ROUTING, S.EARLYMEDIA, S.RINGING)
TALKING = (S.INPROGRESS, S.LOCALHOLD, S.REMOTEHOLD, S.ONHOLD)
VM_ACTIVE = (S.VM_BUFFERING_GREETING, S.VM_PLAYING_GREETING, S.VM_RECORDING, S.VM_UPLOADING)
HELD = frozenset({S.LOCALHOLD, S.REMOTEHOLD, S.ONHOLD})
"""On hold from either side: the call's audio is silence both ways."""


def _each(states: tuple[CallStatus, ...], event: CallEvent, target: CallStatus) -> dict[tuple[CallStatus, CallEvent], CallStatus]:
    return {(state, event): target for state in states}


TRANSITIONS: dict[tuple[CallStatus, CallEvent], CallStatus] = {
    (S.UNPLACED, E.INCOMING): S.RINGING,
    (S.UNPLACED, E.ROUTE): S.ROUTING,
    (S.UNPLACED, E.FAIL): S.FAILED,
    (S.ROUTING, E.EARLY_MEDIA): S.EARLYMEDIA,
    (S.ROUTING, E.RING): S.RINGING,
    (S.EARLYMEDIA, E.RING): S.RINGING,
    **_each(PRE_ANSWER, E.ANSWER, S.INPROGRESS),
    **_each(PRE_ANSWER, E.CANCEL, S.CANCELLED),
    **_each(PRE_ANSWER, E.REFUSE, S.REFUSED),
    **_each(PRE_ANSWER, E.BUSY, S.BUSY),
    **_each(PRE_ANSWER, E.NO_ANSWER, S.MISSED),
    **_each(PRE_ANSWER + TALKING, E.FAIL, S.FAILED),
    **_each(PRE_ANSWER, E.VOICEMAIL, S.VM_BUFFERING_GREETING),
    (S.INPROGRESS, E.LOCAL_HOLD): S.LOCALHOLD,
    (S.REMOTEHOLD, E.LOCAL_HOLD): S.ONHOLD,
    (S.LOCALHOLD, E.LOCAL_RESUME): S.INPROGRESS,
    (S.ONHOLD, E.LOCAL_RESUME): S.REMOTEHOLD,
    (S.INPROGRESS, E.REMOTE_HOLD): S.REMOTEHOLD,
    (S.LOCALHOLD, E.REMOTE_HOLD): S.ONHOLD,
    (S.REMOTEHOLD, E.REMOTE_RESUME): S.INPROGRESS,
    (S.ONHOLD, E.REMOTE_RESUME): S.LOCALHOLD,
    **_each(TALKING, E.FINISH, S.FINISHED),
    (S.VM_BUFFERING_GREETING, E.VM_GREETING): S.VM_PLAYING_GREETING,
    (S.VM_PLAYING_GREETING, E.VM_RECORD): S.VM_RECORDING,
    (S.VM_RECORDING, E.VM_UPLOAD): S.VM_UPLOADING,
    (S.VM_UPLOADING, E.VM_SENT): S.VM_SENT,
    **_each(VM_ACTIVE, E.VM_CANCEL, S.VM_CANCELLED),
    **_each(VM_ACTIVE, E.VM_FAIL, S.VM_FAILED),
    **_each((S.RINGING,) + TALKING, E.TRANSFER, S.TRANSFERRING),
    (S.TRANSFERRING, E.TRANSFER_DONE): S.TRANSFERRED,
    (S.TRANSFERRING, E.TRANSFER_FAIL): S.INPROGRESS,
    (S.TRANSFERRING, E.FINISH): S.FINISHED,
}

ENDED = frozenset({
    S.FINISHED, S.MISSED, S.REFUSED, S.BUSY, S.CANCELLED, S.FAILED,
    S.VM_SENT, S.VM_CANCELLED, S.VM_FAILED, S.TRANSFERRED,
})
# what a local hang-up means in each live status
HANGUP_EVENT: dict[CallStatus, CallEvent] = {
    **{s: E.FINISH for s in TALKING + (S.TRANSFERRING,)},
    S.VM_BUFFERING_GREETING: E.VM_CANCEL,
    S.VM_PLAYING_GREETING: E.VM_CANCEL,
    S.VM_RECORDING: E.VM_UPLOAD,
    S.VM_UPLOADING: E.VM_CANCEL,
}


def hangup_event(status: CallStatus, direction: str) -> CallEvent:
    """What a local hang-up means: before an answer the caller cancels, the callee refuses."""
    return HANGUP_EVENT.get(status) or (E.CANCEL if direction == "outgoing" else E.REFUSE)


class IllegalTransition(Exception):
    def __init__(self, call: "Call", event: CallEvent) -> None:
        super().__init__(f"call {call.id} in {call.status.value} cannot take {event.value}")
        self.status = call.status
        self.event = event


@dataclass
class Call:
    id: int
    account: str
    partner: str
    partner_name: str
    direction: str  # "incoming" | "outgoing"
    status: CallStatus = CallStatus.UNPLACED
    failure_reason: str = ""
    conference_id: int | None = None
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=time.time)
    answered: float | None = None
    ended: float | None = None
    recording: tuple[float, float | None] | None = None
    """When the caller's voicemail message began (VM_RECORDING) and ended (VM_UPLOADING), once it did."""
    asterisk_channel: str = ""  # the channel whose dialplan placed or answered it (for PlayDTMF)
    voicemail_path: str = ""  # the message left, when the gateway's own voicemail took it
    voicemail_seconds: float | None = None

    @property
    def is_ended(self) -> bool:
        return self.status in ENDED

    @property
    def duration(self) -> float:
        if self.answered is None:
            return 0.0
        return max(0.0, (self.ended or time.time()) - self.answered)

    @property
    def message_seconds(self) -> float:
        """How long the voicemail message is: its recording, not the ringing and greeting before it."""
        if self.recording is None:
            return 0.0
        began, ended = self.recording
        return max(0.0, (ended or self.ended or time.time()) - began)

    def can(self, event: CallEvent) -> bool:
        return (self.status, event) in TRANSITIONS

    def apply(self, event: CallEvent) -> CallStatus:
        target = TRANSITIONS.get((self.status, event))
        if target is None:
            raise IllegalTransition(self, event)
        self.status = target
        now = time.time()
        if target is S.INPROGRESS and self.answered is None:
            self.answered = now
        if target in ENDED:
            self.ended = now
        if target is S.VM_RECORDING:
            self.recording = (now, None)
        elif target is S.VM_UPLOADING and self.recording is not None:
            self.recording = (self.recording[0], now)
        return target

    def history_record(self) -> dict[str, Any]:
        return {
            "id": self.id, "account": self.account, "partner": self.partner,
            "direction": self.direction, "status": self.status.value,
            "failure_reason": self.failure_reason, "started": self.created,
            "answered": self.answered, "ended": self.ended or time.time(),
            "duration": round(self.duration, 3), "conference_id": self.conference_id,
        }
