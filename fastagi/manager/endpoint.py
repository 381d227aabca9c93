"""The network's view of one local account: what arrives for it goes to the manager's parts."""

from __future__ import annotations

from typing import BinaryIO

from ..model.calls import CallEvent
from .calls import Calls
from .contacts import Contacts
from .deliveries import Deliveries
from .registry import Accounts


class AccountEndpoint:
    """Implements `network.driver.Endpoint` for the account `account`."""

    def __init__(self, account: str, accounts: Accounts, contacts: Contacts, deliveries: Deliveries, calls: Calls) -> None:
        self.account = account
        self._accounts = accounts
        self._contacts = contacts
        self._deliveries = deliveries
        self._calls = calls

    def is_blocked(self, handle: str) -> bool:
        return self._contacts.is_blocked(self.account, handle)

    def connection_changed(self, status: str) -> None:
        self._accounts.set_status(self.account, status)

    def presence_changed(self, handle: str) -> None:
        self._contacts.publish_buddy(self.account, handle)

    def chat_message(self, sender: str, chat_name: str, body: str, message_id: str = "") -> None:
        self._contacts.chat_message_received(self.account, sender, chat_name, body, message_id)

    def auth_request(self, sender: str, text: str) -> None:
        self._contacts.auth_request_received(self.account, sender, text)

    def auth_reply(self, sender: str, accepted: bool) -> None:
        self._contacts.auth_reply_received(self.account, sender, accepted)

    def contact_changed(self, handle: str, *, buddy: int | None = None, authorized: bool | None = None,
                        blocked: bool | None = None) -> None:
        self._contacts.contact_changed(self.account, handle, buddy=buddy, authorized=authorized, blocked=blocked)

    async def file(self, sender: str, file_name: str, source: BinaryIO) -> None:
        await self._deliveries.file_received(self.account, sender, file_name, source)

    def incoming_call(self, caller: str) -> int:
        return self._calls.incoming(self.account, caller)

    def call_event(self, call_id: int, event: CallEvent, **details: str) -> None:
        self._calls.remote_event(call_id, event, **details)

    def dtmf(self, call_id: int, digits: str) -> None:
        self._calls.dtmf_received(self.account, call_id, digits)

    def transferred(self, call_id: int, target: str) -> None:
        self._calls.transferred(self.account, call_id, target)
