"""The network's view of one local account: what arrives for it is stored and published."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .. import errors
from ..errors import SkypeError
from ..files import store_incoming
from .calls import CallEvent
from .events import EventKind
from .store import BUDDY_ADDED, BUDDY_NONE, BUDDY_PENDING

if TYPE_CHECKING:
    from .accounts import AccountManager

E = CallEvent


class AccountEndpoint:
    """The network's view of one local account (implements `Endpoint`)."""

    def __init__(self, manager: AccountManager, account: str) -> None:
        self.manager = manager
        self.account = account

    def is_blocked(self, handle: str) -> bool:
        return self.manager.is_blocked(self.account, handle)

    def deliver_chat_message(self, sender: str, chat_name: str, body: str) -> None:
        m = self.manager
        if m.is_blocked(self.account, sender):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{self.account} does not accept messages from {sender}")
        message_id = m.store.add_message(self.account, chat_name, sender, sender, body, "incoming")
        m.publish(EventKind.CHAT_MESSAGE, self.account, ChatName=chat_name, From=sender,
                  FromName=m.display_name(sender), To=self.account,
                  Body=body, MessageID=message_id, Direction="incoming")

    def deliver_auth_request(self, sender: str, text: str) -> None:
        m = self.manager
        if m.is_blocked(self.account, sender):
            return  # a blocked user's requests are dropped silently, as Skype does
        policy = m.accounts[self.account].auth_policy
        if policy == "ask":
            m.store.add_auth_request(self.account, sender, text)
            m.publish(EventKind.AUTH_REQUEST, self.account, From=sender, FromName=m.display_name(sender), Text=text)
            return
        allowed = policy == "allow"
        m.store.set_contact(self.account, sender, authorized=int(allowed))
        m.background.spawn(m.network.send_auth_reply(self.account, sender, allowed))
        m._publish_buddy(self.account, sender)

    def deliver_auth_reply(self, sender: str, accepted: bool) -> None:
        m = self.manager
        contact = m.store.contact(self.account, sender)
        if contact["buddy"] == BUDDY_PENDING:
            m.store.set_contact(self.account, sender, buddy=BUDDY_ADDED if accepted else BUDDY_NONE)
            m._publish_buddy(self.account, sender)

    def deliver_file(self, sender: str, file_name: str, source: Path) -> None:
        m = self.manager
        if m.is_blocked(self.account, sender):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{self.account} does not accept files from {sender}")
        stored = store_incoming(m.incoming_dir / self.account, file_name, source)
        transfer_id = m.store.add_transfer(self.account, sender, stored.name, str(stored), "COMPLETED", "incoming")
        m.publish(EventKind.FILE_TRANSFER, self.account, TransferID=transfer_id, Partner=sender,
                  FileName=stored.name, Status="COMPLETED", Direction="incoming", Path=str(stored))

    def deliver_call_event(self, call_id: int, event: CallEvent, **details: str) -> None:
        self.manager.remote_call_event(call_id, event, **details)

    def deliver_incoming_call(self, caller: str, link: object) -> int:
        return self.manager.incoming_call(self.account, caller, link)

    def deliver_transfer(self, call_id: int, target: str) -> None:
        m = self.manager
        call = m.calls.get(call_id)
        if call is None or not call.can(E.TRANSFER):
            return
        m._transferred(call)
        m.network.forget(call)
        m.background.spawn(m.start_call(self.account, target))

    def deliver_dtmf(self, call_id: int, digits: str) -> None:
        call = self.manager.calls.get(call_id)
        if call is not None:
            self.manager.publish(EventKind.DTMF, self.account, CallID=call_id, Partner=call.partner, Digit=digits)
