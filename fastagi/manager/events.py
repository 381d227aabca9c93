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

    CALL_STATUS = "CallStatus"
    CHAT_MESSAGE = "ChatMessage"
    AUTH_REQUEST = "AuthRequest"
    BUDDY_STATUS = "BuddyStatus"
    SMS_STATUS = "SMSStatus"
    FILE_TRANSFER = "FileTransfer"
    VOICEMAIL = "Voicemail"
    DTMF = "DTMF"
    BALANCE = "Balance"
    ACCOUNT_STATUS = "AccountStatus"

    @property
    def user_event(self) -> str:
        """The AMI `UserEvent:` name of this kind."""
        return "Skype" + self.value


# The fields of each kind, in the order they are sent; an event carries no others.
EVENT_FIELDS: dict[EventKind, tuple[str, ...]] = {
    EventKind.CALL_STATUS: ("CallID", "Partner", "PartnerName", "Status", "Direction", "FailureReason", "ConferenceID", "UUID"),
    EventKind.CHAT_MESSAGE: ("ChatName", "From", "FromName", "To", "Body", "MessageID", "Direction"),
    EventKind.AUTH_REQUEST: ("From", "FromName", "Text"),
    EventKind.BUDDY_STATUS: ("User", "UserName", "OnlineStatus", "BuddyStatus", "IsAuthorized", "IsBlocked"),
    EventKind.SMS_STATUS: ("SMSID", "Number", "Status", "Price", "Currency"),
    EventKind.FILE_TRANSFER: ("TransferID", "Partner", "FileName", "Status", "Direction", "Path"),
    EventKind.VOICEMAIL: ("VoicemailID", "CallID", "Partner", "Status", "Duration"),
    EventKind.DTMF: ("CallID", "Partner", "Digit"),
    EventKind.BALANCE: ("Balance", "Currency"),
    EventKind.ACCOUNT_STATUS: ("Status",),
}


@dataclass(frozen=True)
class Event:
    kind: EventKind
    account: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.fields) - set(EVENT_FIELDS[self.kind])
        if unknown:
            raise ValueError(f"{self.kind.value} has no field {sorted(unknown)}")


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
