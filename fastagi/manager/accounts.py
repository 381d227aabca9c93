"""The shared account manager: one object owning every registered account and its state.

Actions (FastAGI), the AMI listener and the media layer all go through it. Each state
change is written to SQLite first and then published on the event bus.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import errors
from ..background import Background
from ..errors import SkypeError
from ..files import store_incoming
from ..network.driver import NetworkDriver, Profile
from .calls import HANGUP_EVENT, Call, CallEvent, CallStatus, IllegalTransition
from .events import Event, EventBus, EventKind
from .store import Store

log = logging.getLogger("fastagi.manager")
E = CallEvent

BUDDY_NONE, BUDDY_PENDING, BUDDY_ADDED = 0, 1, 2


@dataclass
class Account:
    name: str
    profile: Profile
    currency: str
    auth_policy: str = "ask"
    voicemail: bool = True
    unanswered: str = "missed"
    status: str = "ONLINE"


class AccountManager:
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
        return self.store.ensure_account(account, 0, self.accounts[account].currency)

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
            UserName=profile.displayname or profile.fullname if profile else "",
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
        self.store.add_chat(account, chat, handle)
        message_id = self.store.add_message(account, chat, account, body, "outgoing")
        self.publish(EventKind.CHAT_MESSAGE, account, ChatName=chat, From=account,
                     FromName=self.accounts[account].profile.displayname, To=handle, Body=body,
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

    # -- calls -----------------------------------------------------------------
    def _new_call(self, account: str, partner: str, direction: str) -> Call:
        profile = self.network.profile(partner)
        name = (profile.displayname or profile.fullname) if profile else partner
        call = Call(self.store.next_id("call", start=1), account, partner, name, direction)
        self.calls[call.id] = call
        return call

    def call(self, account: str, call_id: int) -> Call:
        """A live call of `account`; another account's call is as unknown as a missing one."""
        call = self.calls.get(call_id)
        if call is None or call.account != account:
            raise SkypeError(errors.UNKNOWN_CALL, f"{account} has no call {call_id}")
        return call

    def live_calls(self, account: str) -> list[Call]:
        return [c for c in self.calls.values() if c.account == account]

    async def start_call(self, account: str, handle: str, conference_id: int | None = None) -> Call:
        self.account(account)
        self._profile(handle)
        if handle == account:
            raise SkypeError(errors.INVALID_ARGUMENT, "an account cannot call itself")
        call = self._new_call(account, handle, "outgoing")
        call.conference_id = conference_id
        self._transition(call, E.ROUTE)
        try:
            await self.network.place_call(call)
        except SkypeError as exc:
            call.failure_reason = exc.text
            self._transition(call, E.FAIL)
            raise
        return call

    async def local(self, account: str, call_id: int, event: CallEvent, **details: str) -> Call:
        """Apply a local request (answer, hold, resume, …) to a call, or `invalid_call_status`."""
        call = self.call(account, call_id)
        if not call.can(event):
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is {call.status.value}: cannot {event.value.replace('_', ' ')}")
        self._transition(call, event)
        await self.network.call_action(call, event, **details)
        return call

    async def answer(self, account: str, call_id: int) -> Call:
        call = self.call(account, call_id)
        if call.direction != "incoming" or call.status is not CallStatus.RINGING:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is a {call.direction} {call.status.value} call: only a ringing incoming call can be answered")
        return await self.local(account, call_id, E.ANSWER)

    async def hangup(self, account: str, call_id: int) -> Call:
        call = self.call(account, call_id)
        event = HANGUP_EVENT.get(call.status)
        if event is None:  # before an answer: the caller cancels, the callee refuses
            event = E.CANCEL if call.direction == "outgoing" else E.REFUSE
        return await self.local(account, call_id, event)

    async def send_dtmf(self, account: str, call_id: int, digits: str) -> None:
        call = self.call(account, call_id)
        if call.status is not CallStatus.INPROGRESS:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is {call.status.value}: DTMF needs a call in progress")
        await self.network.send_dtmf(call, digits)

    async def voicemail(self, account: str, call_id: int) -> Call:
        call = self.call(account, call_id)
        if call.direction != "incoming" or call.status is not CallStatus.RINGING:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is a {call.direction} {call.status.value} call: only a ringing incoming call can go to voicemail")
        if not self.accounts[account].voicemail:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"voicemail is disabled for {account} (voicemail = no)")
        return await self.local(account, call_id, E.VOICEMAIL)

    async def transfer(self, account: str, call_id: int, target: str) -> Call:
        call = self.call(account, call_id)
        if not call.can(E.TRANSFER) or (call.status is CallStatus.RINGING and call.direction != "incoming"):
            raise SkypeError(errors.CANNOT_TRANSFER, f"call {call_id} is {call.status.value}: it cannot be transferred")
        if self.network.profile(target) is None:
            raise SkypeError(errors.CANNOT_TRANSFER, f"no Skype user named {target!r}")
        if target in (account, call.partner):
            raise SkypeError(errors.CANNOT_TRANSFER, f"{target} is already on this call")
        if self.is_blocked(account, target):
            raise SkypeError(errors.CANNOT_TRANSFER, f"{target} is blocked by {account}")
        await self.network.check_transfer(call, target)
        self._transition(call, E.TRANSFER)
        self._transition(call, E.TRANSFER_DONE)
        await self.network.call_action(call, E.TRANSFER_DONE, target=target)
        return call

    async def conference(self, account: str, call_id: int, handle: str) -> Call:
        call = self.call(account, call_id)
        if call.status is not CallStatus.INPROGRESS:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is {call.status.value}: a conference needs a call in progress")
        if handle in (account, call.partner) or any(c.partner == handle and c.conference_id == (call.conference_id or call.id) for c in self.live_calls(account)):
            raise SkypeError(errors.INVALID_ARGUMENT, f"{handle} is already in this call")
        if call.conference_id is None:
            call.conference_id = call.id
            self._publish_call(call)
        return await self.start_call(account, handle, conference_id=call.conference_id)

    def find_call(self, account: str, handle: str) -> Call:
        self.account(account)
        candidates = [c for c in self.live_calls(account) if c.partner == handle]
        if not candidates:
            raise SkypeError(errors.NO_CALLS_FOUND, f"{account} has no call with {handle}")
        candidates.sort(key=lambda c: (c.status is not CallStatus.INPROGRESS, -c.id))
        return candidates[0]

    def incoming_unhandled(self, account: str, call_id: int) -> None:
        """The dialplan could not take an incoming call: apply the account's policy now."""
        call = self.calls.get(call_id)
        if call is None or call.account != account or call.status is not CallStatus.RINGING:
            return
        log.info("incoming call %d for %s not taken by the dialplan: %s", call_id, account, self.accounts[account].unanswered)
        self._ring_expired(call_id)

    # -- transitions -----------------------------------------------------------
    def _transition(self, call: Call, event: CallEvent) -> None:
        call.apply(event)
        if call.is_ended:
            self._end(call)
        elif call.status is CallStatus.RINGING and call.direction == "incoming":
            loop = asyncio.get_running_loop()
            self._ring_timers[call.id] = loop.call_later(self.ring_timeout, self._ring_expired, call.id)
        if call.status is not CallStatus.RINGING:
            timer = self._ring_timers.pop(call.id, None)
            if timer:
                timer.cancel()
        self._publish_call(call)

    def _end(self, call: Call) -> None:
        self.store.add_call(call.history_record())
        self.calls.pop(call.id, None)
        if call.status is CallStatus.VM_SENT and call.direction == "incoming":
            self.publish(EventKind.VOICEMAIL, call.account, VoicemailID=call.id, CallID=call.id,
                         Partner=call.partner, Status="RECEIVED", Duration=round(time.time() - call.created))

    def _publish_call(self, call: Call) -> None:
        self.publish(EventKind.CALL_STATUS, call.account, CallID=call.id, Partner=call.partner,
                     PartnerName=call.partner_name, Status=call.status.value, Direction=call.direction,
                     FailureReason=call.failure_reason, ConferenceID=call.conference_id, UUID=call.uuid)

    def _ring_expired(self, call_id: int) -> None:
        call = self.calls.get(call_id)
        if call is None or call.status is not CallStatus.RINGING:
            return
        policy = E.VOICEMAIL if self.accounts[call.account].unanswered == "voicemail" and self.accounts[call.account].voicemail else E.NO_ANSWER
        self._transition(call, policy)
        self.background.spawn(self.network.call_action(call, policy))

    def remote_call_event(self, call_id: int, event: CallEvent, **details: str) -> None:
        call = self.calls.get(call_id)
        if call is None:
            log.debug("event %s for call %d that already ended", event.value, call_id)
            return
        if "reason" in details:
            call.failure_reason = details["reason"]
        try:
            self._transition(call, event)
        except IllegalTransition as exc:
            log.error("network sent an illegal call transition, ignored: %s", exc)
            return
        if call.is_ended:
            self.network.forget(call)

    def incoming_call(self, account: str, caller: str, link: object) -> int:
        if self.is_blocked(account, caller):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{account} has blocked {caller}")
        call = self._new_call(account, caller, "incoming")
        call.link = link
        self._transition(call, E.INCOMING)
        return call.id

    async def close(self) -> None:
        for timer in self._ring_timers.values():
            timer.cancel()
        for call in list(self.calls.values()):
            event = HANGUP_EVENT.get(call.status) or (E.CANCEL if call.direction == "outgoing" else E.REFUSE)
            if call.can(event):
                self._transition(call, event)
            self.network.forget(call)
        await self.background.close()


def _tf(flag: int) -> str:
    return "True" if flag else "False"


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
        m.store.add_chat(self.account, chat_name, sender)
        message_id = m.store.add_message(self.account, chat_name, sender, body, "incoming")
        profile = m.network.profile(sender)
        m.publish(EventKind.CHAT_MESSAGE, self.account, ChatName=chat_name, From=sender,
                  FromName=(profile.displayname or profile.fullname) if profile else "", To=self.account,
                  Body=body, MessageID=message_id, Direction="incoming")

    def deliver_auth_request(self, sender: str, text: str) -> None:
        m = self.manager
        if m.is_blocked(self.account, sender):
            return  # a blocked user's requests are dropped silently, as Skype does
        policy = m.accounts[self.account].auth_policy
        if policy == "ask":
            m.store.add_auth_request(self.account, sender, text)
            profile = m.network.profile(sender)
            m.publish(EventKind.AUTH_REQUEST, self.account, From=sender,
                      FromName=(profile.displayname or profile.fullname) if profile else "", Text=text)
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
        m._transition(call, E.TRANSFER)
        m._transition(call, E.TRANSFER_DONE)
        m.network.forget(call)
        m.background.spawn(m.start_call(self.account, target))

    def deliver_dtmf(self, call_id: int, digits: str) -> None:
        call = self.manager.calls.get(call_id)
        if call is not None:
            self.manager.publish(EventKind.DTMF, self.account, CallID=call_id, Partner=call.partner, Digit=digits)
