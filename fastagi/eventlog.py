"""What happens on the network side, in the log: one INFO line per event of the bus.

Call status changes (with the failure reason), chat messages, buddy requests and
contact changes, SMS, file transfers, voicemails, balances and the accounts' own
connection. Each line names the account and what the event is about (call id, user,
SMS or transfer id); message bodies, buddy-request texts and DTMF digits are left out.
DTMF key presses are DEBUG lines.
"""

from __future__ import annotations

import logging
import re
from typing import Callable

from .model.accounts import amount
from .model.events import (
    AccountChanged,
    AuthRequest,
    BalanceChanged,
    BuddyChanged,
    CallChanged,
    ChatMessage,
    DtmfReceived,
    Event,
    EventBus,
    FileTransferChanged,
    SmsChanged,
    VoicemailReceived,
)

log = logging.getLogger("fastagi.events")

PLAIN = re.compile(r"^[\w.@+:/#$;,-]+$")  # shown bare; anything else (spaces, control characters) is quoted


def subscribe(bus: EventBus) -> Callable[[], None]:
    """Log every event of `bus` from now on; returns the unsubscribe function."""
    return bus.subscribe(log_event)


def log_event(event: Event) -> None:
    level = logging.DEBUG if isinstance(event, DtmfReceived) else logging.INFO  # a line per key press
    if log.isEnabledFor(level):
        log.log(level, "%s", describe(event))


def describe(event: Event) -> str:
    """The event's log line: `key=value` pairs after the account."""
    match event:
        case CallChanged():
            pairs = [("call", event.call_id), ("partner", event.partner), ("direction", event.direction),
                     ("status", event.status.value), ("reason", event.failure_reason),
                     ("conference", event.conference_id)]
            kind = "call"
        case ChatMessage():
            partner = event.sender if event.direction == "incoming" else event.recipient
            pairs = [("message", event.message_id), ("partner", partner), ("direction", event.direction),
                     ("chat", event.chat_name), ("length", len(event.body))]
            kind = "chat"
        case AuthRequest():
            pairs, kind = [("from", event.sender)], "buddy-request"
        case BuddyChanged():
            pairs = [("user", event.user), ("buddy", event.buddy_status), ("authorized", event.authorized),
                     ("blocked", event.blocked), ("presence", event.online_status)]
            kind = "contact"
        case SmsChanged():
            pairs = [("sms", event.sms_id), ("number", event.number), ("status", event.status),
                     ("price", amount(event.price)), ("currency", event.currency)]
            kind = "sms"
        case FileTransferChanged():
            pairs = [("transfer", event.transfer_id), ("partner", event.partner), ("direction", event.direction),
                     ("file", event.file_name), ("status", event.status)]
            kind = "file"
        case VoicemailReceived():
            pairs = [("voicemail", event.voicemail_id), ("call", event.call_id), ("partner", event.partner),
                     ("status", event.status), ("seconds", event.duration)]
            kind = "voicemail"
        case DtmfReceived():
            pairs, kind = [("call", event.call_id), ("partner", event.partner)], "dtmf"
        case BalanceChanged():
            pairs, kind = [("balance", amount(event.balance)), ("currency", event.currency)], "balance"
        case AccountChanged():
            pairs, kind = [("status", event.status)], "account"
    shown = " ".join(f"{key}={_value(value)}" for key, value in pairs if value not in ("", None))
    return f"{kind} account={_value(event.account)} {shown}"


def _value(value: object) -> str:
    text = str(value)
    return text if PLAIN.match(text) else repr(text)
