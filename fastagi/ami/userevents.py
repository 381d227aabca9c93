"""Events as Asterisk sees them: `UserEvent: Skype<Kind>` and its fields, in one table.

The AMI listener sends these; the admin views (`show events`) and the README's events
table read the same table, so an event has one wire form everywhere.
"""

from __future__ import annotations

import enum
from typing import Any

from ..model.events import (
    AccountChanged,
    AuthRequest,
    BalanceChanged,
    BuddyChanged,
    CallChanged,
    ChatMessage,
    DtmfReceived,
    Event,
    FileTransferChanged,
    SmsChanged,
    VoicemailReceived,
)

Fields = tuple[tuple[str, str], ...]  # (header, attribute of the event), in the order sent

USER_EVENTS: dict[type[Event], tuple[str, Fields]] = {
    CallChanged: ("CallStatus", (
        ("CallID", "call_id"), ("Partner", "partner"), ("PartnerName", "partner_name"), ("Status", "status"),
        ("Direction", "direction"), ("FailureReason", "failure_reason"), ("ConferenceID", "conference_id"),
        ("UUID", "uuid"))),
    ChatMessage: ("ChatMessage", (
        ("ChatName", "chat_name"), ("From", "sender"), ("FromName", "sender_name"), ("To", "recipient"),
        ("Body", "body"), ("MessageID", "message_id"), ("Direction", "direction"))),
    AuthRequest: ("AuthRequest", (("From", "sender"), ("FromName", "sender_name"), ("Text", "text"))),
    BuddyChanged: ("BuddyStatus", (
        ("User", "user"), ("UserName", "user_name"), ("OnlineStatus", "online_status"),
        ("BuddyStatus", "buddy_status"), ("IsAuthorized", "authorized"), ("IsBlocked", "blocked"))),
    SmsChanged: ("SMSStatus", (
        ("SMSID", "sms_id"), ("Number", "number"), ("Status", "status"), ("Price", "price"), ("Currency", "currency"))),
    FileTransferChanged: ("FileTransfer", (
        ("TransferID", "transfer_id"), ("Partner", "partner"), ("FileName", "file_name"), ("Status", "status"),
        ("Direction", "direction"), ("Path", "path"))),
    VoicemailReceived: ("Voicemail", (
        ("VoicemailID", "voicemail_id"), ("CallID", "call_id"), ("Partner", "partner"), ("Status", "status"),
        ("Duration", "duration"), ("FileName", "file_name"), ("Path", "path"))),
    DtmfReceived: ("DTMF", (("CallID", "call_id"), ("Partner", "partner"), ("Digit", "digit"))),
    BalanceChanged: ("Balance", (("Balance", "balance"), ("Currency", "currency"))),
    AccountChanged: ("AccountStatus", (("Status", "status"),)),
}


def kind(event: Event) -> str:
    """The event's kind: `CallStatus`, `ChatMessage`, … (the UserEvent is `Skype` + kind)."""
    return USER_EVENTS[type(event)][0]


def user_event(event: Event) -> str:
    """The AMI `UserEvent:` name: `SkypeCallStatus`, …"""
    return "Skype" + kind(event)


def fields(event: Event) -> dict[str, str]:
    """The event's fields after `Account`, by header name, as text."""
    return {header: _text(getattr(event, attribute)) for header, attribute in USER_EVENTS[type(event)][1]}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)
