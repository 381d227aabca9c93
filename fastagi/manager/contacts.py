"""Contacts and chats of the accounts: buddy requests, authorisation, blocking, profiles, messages.

Each change is written to the store first, then published on the event bus.
"""

from __future__ import annotations

import logging
import secrets

from ..background import Background
from ..model import errors
from ..model.errors import SkypeError
from ..model.events import AuthRequest, BuddyChanged, ChatMessage, EventBus
from ..model.profiles import BUDDY_ADDED, BUDDY_NONE, BUDDY_PENDING, Contact, Profile
from ..network.driver import NetworkDriver
from .registry import Accounts
from .store import Store

log = logging.getLogger("fastagi.manager")

MAX_PENDING_REQUESTS = 1000
"""Buddy requests an account keeps waiting for an answer; a flood past it is dropped (one published each)."""


class Contacts:
    def __init__(
        self, accounts: Accounts, store: Store, network: NetworkDriver, bus: EventBus, background: Background
    ) -> None:
        self._accounts = accounts
        self._store = store
        self._network = network
        self._bus = bus
        self._background = background
        self._flooded: set[str] = set()  # accounts dropping buddy requests (logged once)

    # -- lookups ---------------------------------------------------------------
    def display_name(self, account: str, handle: str) -> str:
        """What events show as a user's name ("" for a user the account's network does not know)."""
        profile = self._network.known(account, handle)
        return profile.shown_name if profile else ""

    def is_blocked(self, account: str, handle: str) -> bool:
        return self._store.contact(account, handle).blocked

    async def user(self, account: str, handle: str) -> tuple[Profile, Contact]:
        self._accounts.get(account)
        return await self._network.profile(account, handle), self._store.contact(account, handle)

    # -- the account's own requests ------------------------------------------------
    async def set_auth(self, account: str, handle: str, allow: bool) -> None:
        """Answer `handle`'s buddy request (or revoke/grant authorisation)."""
        await self._check(account, handle)
        self._store.set_contact(account, handle, authorized=allow)
        had_request = self._store.pop_auth_request(account, handle)
        if had_request or allow:
            await self._network.send_auth_reply(account, handle, allow)
        self.publish_buddy(account, handle)

    async def set_block(self, account: str, handle: str, block: bool) -> None:
        await self._check(account, handle)
        await self._network.set_blocked(account, handle, block)
        self._store.set_contact(account, handle, blocked=block)
        self.publish_buddy(account, handle)

    async def set_buddy(self, account: str, handle: str, add: bool) -> None:
        await self._check(account, handle)
        if not add:
            await self._network.remove_contact(account, handle)
            self._store.set_contact(account, handle, buddy=BUDDY_NONE)
            self.publish_buddy(account, handle)
            return
        if self._store.contact(account, handle).buddy == BUDDY_ADDED:
            return
        self._store.set_contact(account, handle, buddy=BUDDY_PENDING, authorized=True)
        self.publish_buddy(account, handle)
        await self._network.send_auth_request(account, handle, f"Please add me to your contacts ({account})")

    async def send_chat_message(self, account: str, handle: str, body: str) -> str:
        """Send `body` to `handle` in the open dialog chat (or a new one); returns its name."""
        await self._check(account, handle)
        if self.is_blocked(account, handle):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{handle} is blocked by {account}; unblock with user-set-block")
        chat = (self._network.chat_name(account, handle) or self._store.open_chat(account, handle)
                or f"#{account}/${handle};{secrets.token_hex(8)}")
        await self._network.send_chat_message(account, handle, chat, body)
        message_id = self._store.add_message(account, chat, handle, account, body, "outgoing")
        self._bus.publish(ChatMessage(account, chat, account, self.display_name(account, account), handle, body,
                                      message_id, "outgoing"))
        return chat

    def leave_chat(self, account: str, chat: str) -> None:
        self._accounts.get(account)
        if self._store.chat(account, chat) is None:
            raise SkypeError(errors.UNKNOWN_CHAT, f"{account} has no chat named {chat!r}")
        if not self._store.leave_chat(account, chat):
            raise SkypeError(errors.UNKNOWN_CHAT, f"{account} already left chat {chat!r}")

    async def _check(self, account: str, handle: str) -> None:
        self._accounts.get(account)
        await self._network.check_user(account, handle)

    # -- what arrives from the network ---------------------------------------------
    def chat_message_received(self, account: str, sender: str, chat_name: str, body: str, network_id: str = "") -> None:
        if self.is_blocked(account, sender):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{account} does not accept messages from {sender}")
        message_id = self._store.add_message(account, chat_name, sender, sender, body, "incoming", network_id)
        if message_id is None:
            log.info("%s: message %s from %s arrived again; dropped", account, network_id, sender)
            return
        self._bus.publish(ChatMessage(account, chat_name, sender, self.display_name(account, sender), account, body,
                                      message_id, "incoming"))

    def auth_request_received(self, account: str, sender: str, text: str) -> None:
        if self.is_blocked(account, sender):
            return  # a blocked user's requests are dropped silently, as Skype does
        policy = self._accounts.get(account).auth_policy
        if policy == "ask":
            if self._store.pending_auth_requests(account) >= MAX_PENDING_REQUESTS:
                if account not in self._flooded:
                    self._flooded.add(account)
                    log.warning("%s has %d buddy requests waiting for an answer: new ones are dropped until some "
                                "are answered", account, MAX_PENDING_REQUESTS)
                return
            self._flooded.discard(account)
            if self._store.add_auth_request(account, sender, text):
                self._bus.publish(AuthRequest(account, sender, self.display_name(account, sender), text))
            return
        allowed = policy == "allow"
        self._store.set_contact(account, sender, authorized=allowed)
        self._background.spawn(self._network.send_auth_reply(account, sender, allowed))
        self.publish_buddy(account, sender)

    def auth_reply_received(self, account: str, sender: str, accepted: bool) -> None:
        if self._store.contact(account, sender).buddy == BUDDY_PENDING:
            self._store.set_contact(account, sender, buddy=BUDDY_ADDED if accepted else BUDDY_NONE)
            self.publish_buddy(account, sender)

    def contact_changed(self, account: str, handle: str, **flags: int | bool | None) -> None:
        """The network's own contact or block list changed: the store follows it, and a change is published."""
        given = {name: value for name, value in flags.items() if value is not None}
        contact = self._store.contact(account, handle)
        if any(getattr(contact, name) != value for name, value in given.items()):
            self._store.set_contact(account, handle, **given)
            self.publish_buddy(account, handle)

    def publish_buddy(self, account: str, handle: str) -> None:
        """Publish how `handle` stands with `account` now (`SkypeBuddyStatus`)."""
        known = self._network.known(account, handle)
        contact = self._store.contact(account, handle)
        self._bus.publish(BuddyChanged(
            account, handle, known.shown_name if known else "", known.online_status if known else "UNKNOWN",
            contact.buddy, contact.authorized, contact.blocked,
        ))
