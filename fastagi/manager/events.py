"""Events the account manager publishes on its bus.

One `Event` per state change on the Skype side. Its `fields` are named exactly as the
AMI `UserEvent` headers (`CallID`, `Partner`, ...); `Account` is not among them, it is
`event.account`. The AMI listener sends `UserEvent: Skype<kind>`.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping

log = logging.getLogger(__name__)


class EventKind(str, enum.Enum):
    """Every kind of event, with the fields each one carries (in this order)."""

    CALL_STATUS = "CallStatus"  # CallID, Partner, PartnerName, Status, Direction, FailureReason, ConferenceID, UUID
    CHAT_MESSAGE = "ChatMessage"  # ChatName, From, FromName, To, Body, MessageID, Direction
    AUTH_REQUEST = "AuthRequest"  # From, FromName, Text
    BUDDY_STATUS = "BuddyStatus"  # User, UserName, OnlineStatus, BuddyStatus, IsAuthorized, IsBlocked
    SMS_STATUS = "SMSStatus"  # SMSID, Number, Status, Price, Currency
    FILE_TRANSFER = "FileTransfer"  # TransferID, Partner, FileName, Status, Direction, Path
    VOICEMAIL = "Voicemail"  # VoicemailID, CallID, Partner, Status, Duration
    DTMF = "DTMF"  # CallID, Partner, Digit
    BALANCE = "Balance"  # Balance, Currency
    ACCOUNT_STATUS = "AccountStatus"  # Status

    @property
    def user_event(self) -> str:
        """The AMI `UserEvent:` name of this kind."""
        return "Skype" + self.value


@dataclass(frozen=True)
class Event:
    kind: EventKind
    account: str
    fields: Mapping[str, str] = field(default_factory=dict)


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
                log.exception("event handler %r failed on %s", handler, event.kind.value)
