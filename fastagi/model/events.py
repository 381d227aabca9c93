"""What happens on a network side, as typed events, and the in-process bus that carries them.

One event per state change. The AMI listener and the admin views turn them into wire
fields at the edge (`fastagi.ami.userevents`); nothing inside the gateway parses text
back out of an event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Union

from .calls import CallStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallChanged:
    """A call of the account changed status (or its conference)."""

    account: str
    call_id: int
    partner: str
    partner_name: str
    status: CallStatus
    direction: str
    failure_reason: str = ""
    conference_id: int | None = None
    uuid: str = ""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A chat message the account sent or received."""

    account: str
    chat_name: str
    sender: str
    sender_name: str
    recipient: str
    body: str
    message_id: int
    direction: str


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """A user asks to add the account to their contacts; the account must answer."""

    account: str
    sender: str
    sender_name: str
    text: str


@dataclass(frozen=True, slots=True)
class BuddyChanged:
    """How a user stands with the account changed: contact list, authorisation, block, presence."""

    account: str
    user: str
    user_name: str
    online_status: str
    buddy_status: int
    authorized: bool
    blocked: bool


@dataclass(frozen=True, slots=True)
class SmsChanged:
    account: str
    sms_id: int
    number: str
    status: str
    price: int
    currency: str


@dataclass(frozen=True, slots=True)
class FileTransferChanged:
    account: str
    transfer_id: int
    partner: str
    file_name: str
    status: str
    direction: str
    path: str


@dataclass(frozen=True, slots=True)
class VoicemailReceived:
    account: str
    voicemail_id: int
    call_id: int
    partner: str
    status: str
    duration: int
    """Seconds of the message."""
    file_name: str = ""
    path: str = ""
    """Where the gateway kept the message (its own voicemail); empty when the network keeps it."""


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """The far party of a call pressed a key."""

    account: str
    call_id: int
    partner: str
    digit: str


@dataclass(frozen=True, slots=True)
class BalanceChanged:
    account: str
    balance: int
    currency: str


@dataclass(frozen=True, slots=True)
class AccountChanged:
    """The account's connection to its network: ONLINE, OFFLINE, CONNECTING, LOGIN_REFUSED."""

    account: str
    status: str


Event = Union[
    CallChanged, ChatMessage, AuthRequest, BuddyChanged, SmsChanged, FileTransferChanged,
    VoicemailReceived, DtmfReceived, BalanceChanged, AccountChanged,
]
EVENT_TYPES: tuple[type[Event], ...] = Event.__args__  # type: ignore[attr-defined]
Handler = Callable[[Event], None]


class EventBus:
    """In-process publish/subscribe. Handlers run synchronously, in subscription order.

    A handler that raises is logged and skipped: one broken subscriber never stops the
    others or the state change that published the event.
    """

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler) if handler in self._handlers else None

    def publish(self, event: Event) -> None:
        for handler in list(self._handlers):
            try:
                handler(event)
            except Exception:  # noqa: BLE001 - a subscriber's bug must not break publishing
                log.exception("event handler %r failed on %s", handler, type(event).__name__)
