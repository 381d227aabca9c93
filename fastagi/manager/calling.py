"""Calls of the account manager: placing, answering, holding, ending, and the network's side of them.

`CallControl` is a part of `AccountManager` (its base class), kept in a module of its
own: everything about calls is here, the rest of the account state in `accounts.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from .. import errors
from ..background import Background
from ..errors import SkypeError
from ..network.driver import NetworkDriver
from .calls import Call, CallEvent, CallStatus, IllegalTransition, hangup_event
from .events import EventKind
from .store import Store

if TYPE_CHECKING:
    from .accounts import Account

log = logging.getLogger("fastagi.manager")
E = CallEvent


class CallControl:
    """The call operations of `AccountManager`.

    They use the manager's attributes below and its methods `account()`, `_profile()`,
    `is_blocked()` and `publish()`.
    """

    # provided by AccountManager
    accounts: dict[str, "Account"]
    store: Store
    network: NetworkDriver
    background: Background
    calls: dict[int, Call]
    ring_timeout: float
    _ring_timers: dict[int, asyncio.TimerHandle]

    def _new_call(self, account: str, partner: str, direction: str) -> Call:
        profile = self.network.profile(partner)
        name = profile.shown_name if profile else partner
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

    def _ringing_incoming(self, account: str, call_id: int, what: str) -> Call:
        call = self.call(account, call_id)
        if call.direction != "incoming" or call.status is not CallStatus.RINGING:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is a {call.direction} {call.status.value} call: only a ringing incoming call can {what}")
        return call

    async def answer(self, account: str, call_id: int) -> Call:
        self._ringing_incoming(account, call_id, "be answered")
        return await self.local(account, call_id, E.ANSWER)

    async def hangup(self, account: str, call_id: int) -> Call:
        call = self.call(account, call_id)
        return await self.local(account, call_id, hangup_event(call.status, call.direction))

    async def send_dtmf(self, account: str, call_id: int, digits: str) -> None:
        call = self.call(account, call_id)
        if call.status is not CallStatus.INPROGRESS:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is {call.status.value}: DTMF needs a call in progress")
        await self.network.send_dtmf(call, digits)

    async def voicemail(self, account: str, call_id: int) -> Call:
        self._ringing_incoming(account, call_id, "go to voicemail")
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
        self._transferred(call)
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
    def _transferred(self, call: Call) -> None:
        self._transition(call, E.TRANSFER)
        self._transition(call, E.TRANSFER_DONE)

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
