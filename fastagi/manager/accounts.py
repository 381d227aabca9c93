"""The shared account manager: one object owning every registered account and its state.

Actions (FastAGI), the AMI listener and the media layer all go through it. Each state
change is written to SQLite first and then published on the event bus.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import errors
from ..background import Background
from ..errors import SkypeError
from ..network.driver import NetworkDriver, Profile
from .calling import CallControl
from .calls import Call, hangup_event
from .endpoint import AccountEndpoint
from .events import Event, EventBus, EventKind
from .store import BUDDY_ADDED, BUDDY_NONE, BUDDY_PENDING, Store

log = logging.getLogger("fastagi.manager")


@dataclass
class Account:
    name: str
    profile: Profile
    currency: str
    auth_policy: str = "ask"
    voicemail: bool = True
    unanswered: str = "missed"
    status: str = "ONLINE"


class AccountManager(CallControl):
    def __init__(
        self,
        accounts: list[Account],
        store: Store,
        network: NetworkDriver,
        bus: EventBus,
        incoming_dir: Path,
        ring_timeout: float = 30.0,
    ) -> None:
        self.accounts = {a.name: a for a in accounts}
        self.store = store
        self.network = network
        self.bus = bus
        self.incoming_dir = incoming_dir
        self.ring_timeout = ring_timeout
        self.calls: dict[int, Call] = {}
        self._ring_timers: dict[int, asyncio.TimerHandle] = {}
        self.background = Background(log)
        for account in accounts:
            network.register(account.name, AccountEndpoint(self, account.name))

    def seed_balances(self, initial: dict[str, tuple[int, str]]) -> None:
        for name, (balance, currency) in initial.items():
            _, stored_currency = self.store.ensure_account(name, balance, currency)
            self.accounts[name].currency = stored_currency

    # -- lookups ---------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.accounts)

    def account(self, name: str) -> Account:
        try:
            return self.accounts[name]
        except KeyError:
            raise SkypeError(errors.UNKNOWN_ACCOUNT, f"no account {name!r} is registered here") from None

    def _profile(self, handle: str) -> Profile:
        profile = self.network.profile(handle)
        if profile is None:
            raise SkypeError(errors.UNKNOWN_USER, f"no Skype user named {handle!r}")
        return profile

    def display_name(self, handle: str) -> str:
        """What events show as a user's name ("" for a handle the network does not know)."""
        profile = self.network.profile(handle)
        return profile.shown_name if profile else ""

    def publish(self, kind: EventKind, account: str, **fields: Any) -> None:
        self.bus.publish(Event(kind, account, {k: "" if v is None else str(v) for k, v in fields.items()}))

    def set_presence(self, status: str) -> None:
        """Every account goes ONLINE when the gateway starts and OFFLINE when it stops."""
        for account in self.accounts.values():
            account.status = status
            self.publish(EventKind.ACCOUNT_STATUS, account.name, Status=status)

    # -- profile, balance ------------------------------------------------------
    def balance(self, account: str) -> tuple[int, str]:
        self.account(account)
        balance = self.store.balance(account)
        assert balance is not None  # `seed_balances` stores every account's balance before the gateway serves
        return balance

    def user(self, account: str, handle: str) -> tuple[Profile, dict[str, int]]:
        self.account(account)
        return self._profile(handle), self.store.contact(account, handle)

    # -- contacts ----------------------------------------------------------------
    async def set_auth(self, account: str, handle: str, allow: bool) -> None:
        """Answer `handle`'s buddy request (or revoke/grant authorisation)."""
        self.account(account)
        self._profile(handle)
        self.store.set_contact(account, handle, authorized=int(allow))
        had_request = self.store.pop_auth_request(account, handle)
        if had_request or allow:
            await self.network.send_auth_reply(account, handle, allow)
        self._publish_buddy(account, handle)

    async def set_block(self, account: str, handle: str, block: bool) -> None:
        self.account(account)
        self._profile(handle)
        self.store.set_contact(account, handle, blocked=int(block))
        self._publish_buddy(account, handle)

    async def set_buddy(self, account: str, handle: str, add: bool) -> None:
        self.account(account)
        self._profile(handle)
        if not add:
            self.store.set_contact(account, handle, buddy=BUDDY_NONE)
            self._publish_buddy(account, handle)
            return
        contact = self.store.contact(account, handle)
        if contact["buddy"] == BUDDY_ADDED:
            return
        self.store.set_contact(account, handle, buddy=BUDDY_PENDING, authorized=1)
        self._publish_buddy(account, handle)
        await self.network.send_auth_request(account, handle, f"Please add me to your contacts ({account})")

    def is_blocked(self, account: str, handle: str) -> bool:
        return bool(self.store.contact(account, handle)["blocked"])

    def _publish_buddy(self, account: str, handle: str) -> None:
        profile = self.network.profile(handle)
        contact = self.store.contact(account, handle)
        self.publish(
            EventKind.BUDDY_STATUS, account, User=handle,
            UserName=self.display_name(handle),
            OnlineStatus=profile.online_status if profile else "UNKNOWN",
            BuddyStatus=contact["buddy"], IsAuthorized=_tf(contact["authorized"]), IsBlocked=_tf(contact["blocked"]),
        )

    # -- chats -----------------------------------------------------------------
    async def send_chat_message(self, account: str, handle: str, body: str) -> str:
        """Send `body` to `handle` in the open dialog chat (or a new one); returns its name."""
        self.account(account)
        self._profile(handle)
        if self.is_blocked(account, handle):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{handle} is blocked by {account}; unblock with user-set-block")
        chat = self.store.open_chat(account, handle) or f"#{account}/${handle};{secrets.token_hex(8)}"
        await self.network.send_chat_message(account, handle, chat, body)
        message_id = self.store.add_message(account, chat, handle, account, body, "outgoing")
        self.publish(EventKind.CHAT_MESSAGE, account, ChatName=chat, From=account,
                     FromName=self.display_name(account), To=handle, Body=body,
                     MessageID=message_id, Direction="outgoing")
        return chat

    def leave_chat(self, account: str, chat: str) -> None:
        self.account(account)
        if self.store.chat(account, chat) is None:
            raise SkypeError(errors.UNKNOWN_CHAT, f"{account} has no chat named {chat!r}")
        if not self.store.leave_chat(account, chat):
            raise SkypeError(errors.UNKNOWN_CHAT, f"{account} already left chat {chat!r}")

    # -- SMS -------------------------------------------------------------------
    async def send_sms(self, account: str, number: str, body: str) -> int:
        self.account(account)
        price = self.network.sms_price(number, body)
        await self.network.send_sms(account, number, body)
        balance = self.store.charge(account, price)
        currency = self.accounts[account].currency
        if balance is None:
            have, _ = self.balance(account)
            raise SkypeError(errors.CANNOT_SEND, f"SkypeOut credit too low: the SMS costs {price}, balance is {have} {currency}")
        sms_id = self.store.add_sms(account, number, body, "DELIVERED", price)
        self.publish(EventKind.BALANCE, account, Balance=balance, Currency=currency)
        for status in ("SENDING_TO_SERVER", "DELIVERED"):
            self.publish(EventKind.SMS_STATUS, account, SMSID=sms_id, Number=number, Status=status, Price=price, Currency=currency)
        return sms_id

    # -- file transfer ---------------------------------------------------------
    async def send_file(self, account: str, handle: str, source: Path) -> int:
        self.account(account)
        self._profile(handle)
        if self.is_blocked(account, handle):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{handle} is blocked by {account}")
        await self.network.send_file(account, handle, source.name, source)
        transfer_id = self.store.add_transfer(account, handle, source.name, str(source), "COMPLETED", "outgoing")
        self.publish(EventKind.FILE_TRANSFER, account, TransferID=transfer_id, Partner=handle, FileName=source.name,
                     Status="COMPLETED", Direction="outgoing", Path=str(source))
        return transfer_id

    async def close(self) -> None:
        for timer in self._ring_timers.values():
            timer.cancel()
        for call in list(self.calls.values()):
            event = hangup_event(call.status, call.direction)
            if call.can(event):
                self._transition(call, event)
            self.network.forget(call)
        await self.background.close()


def _tf(flag: int) -> str:
    return "True" if flag else "False"
