"""Skip2PBX's event scripts: the events that also run an extension of ``events_context``.

Each such event runs the extension named here with its fields as channel variables, named
like the seed's result variables, so the dialplan there can answer with actions.
"""

from __future__ import annotations

from typing import NamedTuple

from ..model.events import AuthRequest, BalanceChanged, BuddyChanged, ChatMessage, Event, FileTransferChanged, SmsChanged


class Script(NamedTuple):
    extension: str
    """``{Direction}`` stands for the event's Direction."""
    variables: dict[str, str]
    """Field (as in `userevents`) -> channel variable (after the prefix); other fields keep
    their own name, upper-cased with ``_`` between words (``FromName`` -> ``FROM_NAME``)."""


_USER = {"From": "USER_NAME", "FromName": "USER_DISPNAME"}
EVENT_SCRIPTS: dict[type[Event], Script] = {
    ChatMessage: Script("chatmessage-{Direction}-received", {
        **_USER, "ChatName": "CHAT_NAME", "MessageID": "MESSAGE_ID", "Body": "MESSAGE_BODY"}),
    AuthRequest: Script("authrequest-incoming-received", _USER),
    BuddyChanged: Script("user-status-updated", {
        "User": "USER_NAME", "UserName": "USER_DISPNAME", "OnlineStatus": "USER_STATUS",
        "BuddyStatus": "USER_BUDDYSTATUS", "IsAuthorized": "USER_ISAUTHORIZED", "IsBlocked": "USER_ISBLOCKED"}),
    BalanceChanged: Script("profile-currency-update", {"Balance": "BALANCE", "Currency": "BALANCE_CURRENCY"}),
    SmsChanged: Script("sms-status-updated", {
        "SMSID": "SMS_ID", "Number": "SMS_NUMBER", "Status": "SMS_STATUS", "Price": "SMS_PRICE",
        "Currency": "SMS_CURRENCY"}),
    FileTransferChanged: Script("filetransfer-status-updated", {
        "TransferID": "FILE_TRANSFER_ID", "Partner": "USER_NAME", "FileName": "FILE_NAME", "Status": "FILE_STATUS",
        "Direction": "FILE_DIRECTION", "Path": "FILE_PATH"}),
}
