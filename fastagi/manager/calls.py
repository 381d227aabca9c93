"""Calls of the accounts: placing, answering, holding, ending, and the network's side of them.

A call changes status only through `_transition`, which applies the model's transition
table, records an ended call in the history and publishes `CallChanged`.
"""

from __future__ import annotations

import asyncio
import logging

from ..background import Background
from ..model import errors
from ..model.calls import Call, CallEvent, CallStatus, IllegalTransition, hangup_event
from ..model.errors import SkypeError
from ..model.events import CallChanged, DtmfReceived, EventBus
from ..network.driver import NetworkDriver
from .contacts import Contacts
from .deliveries import Deliveries
from .registry import Accounts
from .store import Store

log = logging.getLogger("fastagi.manager")
E = CallEvent


class Calls:
    """Every live call of every account, by id (`live`); ended calls go to the store's history."""

    def __init__(
        self,
        accounts: Accounts,
        contacts: Contacts,
        deliveries: Deliveries,
        store: Store,
        network: NetworkDriver,
        bus: EventBus,
        background: Background,
        ring_timeout: float = 30.0,
    ) -> None:
        self._accounts = accounts
        self._contacts = contacts
        self._deliveries = deliveries
        self._store = store
        self._network = network
        self._bus = bus
        self._background = background
        self._ring_timeout = ring_timeout
        self.live: dict[int, Call] = {}
        self._ring_timers: dict[int, asyncio.TimerHandle] = {}

    # -- lookups ---------------------------------------------------------------
    def get(self, account: str, call_id: int) -> Call:
        """A live call of `account`; another account's call is as unknown as a missing one."""
        call = self.live.get(call_id)
        if call is None or call.account != account:
            raise SkypeError(errors.UNKNOWN_CALL, f"{account} has no call {call_id}")
        return call

    def of(self, account: str) -> list[Call]:
        """The live calls of `account`."""
        return [c for c in self.live.values() if c.account == account]

    def by_uuid(self, call_uuid: str) -> Call | None:
        return next((c for c in self.live.values() if c.uuid == call_uuid), None)

    def find(self, account: str, handle: str) -> Call:
        """The account's call with `handle`, the one in progress first, else the newest."""
        self._accounts.get(account)
        candidates = [c for c in self.of(account) if c.partner == handle]
        if not candidates:
            raise SkypeError(errors.NO_CALLS_FOUND, f"{account} has no call with {handle}")
        candidates.sort(key=lambda c: (c.status is not CallStatus.INPROGRESS, -c.id))
        return candidates[0]

    # -- the account's own requests --------------------------------------------------
    async def start(self, account: str, handle: str, conference_id: int | None = None) -> Call:
        self._accounts.get(account)
        await self._network.check_user(account, handle)
        if handle == account:
            raise SkypeError(errors.INVALID_ARGUMENT, "an account cannot call itself")
        call = self._new_call(account, handle, "outgoing")
        call.conference_id = conference_id
        self._transition(call, E.ROUTE)
        try:
            await self._network.place_call(call)
        except SkypeError as exc:
            call.failure_reason = exc.text
            self._transition(call, E.FAIL)
            raise
        return call

    async def local(self, account: str, call_id: int, event: CallEvent, **details: str) -> Call:
        """Apply a local request (answer, hold, resume, …) to a call, or `invalid_call_status`."""
        call = self.get(account, call_id)
        if not call.can(event):
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is {call.status.value}: cannot {event.value.replace('_', ' ')}")
        self._transition(call, event)
        await self._network.call_action(call, event, **details)
        return call

    async def answer(self, account: str, call_id: int) -> Call:
        self._ringing_incoming(account, call_id, "be answered")
        return await self.local(account, call_id, E.ANSWER)

    async def hangup(self, account: str, call_id: int) -> Call:
        call = self.get(account, call_id)
        return await self.local(account, call_id, hangup_event(call.status, call.direction))

    async def send_dtmf(self, account: str, call_id: int, digits: str) -> None:
        call = self.get(account, call_id)
        if call.status is not CallStatus.INPROGRESS:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is {call.status.value}: DTMF needs a call in progress")
        await self._network.send_dtmf(call, digits)

    async def voicemail(self, account: str, call_id: int) -> Call:
        self._ringing_incoming(account, call_id, "go to voicemail")
        if not self._accounts.get(account).voicemail:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"voicemail is disabled for {account} (voicemail = no)")
        return await self.local(account, call_id, E.VOICEMAIL)

    async def transfer(self, account: str, call_id: int, target: str) -> Call:
        call = self.get(account, call_id)
        if not call.can(E.TRANSFER) or (call.status is CallStatus.RINGING and call.direction != "incoming"):
            raise SkypeError(errors.CANNOT_TRANSFER, f"call {call_id} is {call.status.value}: it cannot be transferred")
        try:
            await self._network.check_user(account, target)
        except SkypeError as exc:
            raise SkypeError(errors.CANNOT_TRANSFER, exc.text) from None
        if target in (account, call.partner):
            raise SkypeError(errors.CANNOT_TRANSFER, f"{target} is already on this call")
        if self._contacts.is_blocked(account, target):
            raise SkypeError(errors.CANNOT_TRANSFER, f"{target} is blocked by {account}")
        await self._network.check_transfer(call, target)
        self._transferred(call)
        await self._network.call_action(call, E.TRANSFER_DONE, target=target)
        return call

    async def conference(self, account: str, call_id: int, handle: str) -> Call:
        call = self.get(account, call_id)
        if call.status is not CallStatus.INPROGRESS:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is {call.status.value}: a conference needs a call in progress")
        conference = call.conference_id or call.id
        if handle in (account, call.partner) or any(c.partner == handle and c.conference_id == conference for c in self.of(account)):
            raise SkypeError(errors.INVALID_ARGUMENT, f"{handle} is already in this call")
        if call.conference_id is None:
            call.conference_id = call.id
            self._publish(call)
        return await self.start(account, handle, conference_id=call.conference_id)

    def incoming_unhandled(self, account: str, call_id: int) -> None:
        """The dialplan could not take an incoming call: apply the account's policy now."""
        call = self.live.get(call_id)
        if call is None or call.account != account or call.status is not CallStatus.RINGING:
            return
        log.info("incoming call %d for %s not taken by the dialplan: %s", call_id, account, self._accounts.get(account).unanswered)
        self._ring_expired(call_id)

    async def close(self) -> None:
        """End every live call (the gateway stops)."""
        for timer in self._ring_timers.values():
            timer.cancel()
        for call in list(self.live.values()):
            event = hangup_event(call.status, call.direction)
            if call.can(event):
                self._transition(call, event)
            self._network.forget(call)

    # -- what arrives from the network -----------------------------------------------
    def incoming(self, account: str, caller: str) -> int:
        if self._contacts.is_blocked(account, caller):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{account} has blocked {caller}")
        call = self._new_call(account, caller, "incoming")
        self._transition(call, E.INCOMING)
        return call.id

    def remote_event(self, call_id: int, event: CallEvent, **details: str) -> None:
        call = self.live.get(call_id)
        if call is None:
            log.debug("event %s for call %d that already ended", event.value, call_id)
            return
        if "reason" in details:
            call.failure_reason = details["reason"]
        if "voicemail" in details:
            call.voicemail_path, call.voicemail_seconds = details["voicemail"], float(details["seconds"])
        try:
            self._transition(call, event)
        except IllegalTransition as exc:
            log.error("network sent an illegal call transition, ignored: %s", exc)
            return
        if call.is_ended:
            self._network.forget(call)

    def transferred(self, account: str, call_id: int, target: str) -> None:
        """The far party handed this call over to `target`: the account calls it instead."""
        call = self.live.get(call_id)
        if call is None or call.account != account or not call.can(E.TRANSFER):
            return
        self._transferred(call)
        self._network.forget(call)
        self._background.spawn(self.start(account, target))

    def dtmf_received(self, account: str, call_id: int, digits: str) -> None:
        """One `DtmfReceived` per digit, as Asterisk reports its own DTMF."""
        call = self.live.get(call_id)
        if call is not None and call.account == account:
            for digit in digits:
                self._bus.publish(DtmfReceived(account, call_id, call.partner, digit))

    # -- transitions -----------------------------------------------------------------
    def _new_call(self, account: str, partner: str, direction: str) -> Call:
        name = self._contacts.display_name(account, partner) or partner
        call = Call(self._store.next_id("call", start=1), account, partner, name, direction)
        self.live[call.id] = call
        return call

    def _ringing_incoming(self, account: str, call_id: int, what: str) -> Call:
        call = self.get(account, call_id)
        if call.direction != "incoming" or call.status is not CallStatus.RINGING:
            raise SkypeError(errors.INVALID_CALL_STATUS, f"call {call_id} is {call.direction} and {call.status.value}: only a ringing incoming call can {what}")
        return call

    def _transferred(self, call: Call) -> None:
        self._transition(call, E.TRANSFER)
        self._transition(call, E.TRANSFER_DONE)

    def _transition(self, call: Call, event: CallEvent) -> None:
        call.apply(event)
        if call.is_ended:
            self._end(call)
        elif call.status is CallStatus.RINGING and call.direction == "incoming":
            loop = asyncio.get_running_loop()
            self._ring_timers[call.id] = loop.call_later(self._ring_timeout, self._ring_expired, call.id)
        if call.status is not CallStatus.RINGING:
            timer = self._ring_timers.pop(call.id, None)
            if timer:
                timer.cancel()
        self._publish(call)

    def _end(self, call: Call) -> None:
        self._store.add_call(call.history_record())
        self.live.pop(call.id, None)
        if call.status is CallStatus.VM_SENT and call.direction == "incoming":
            self._deliveries.voicemail_received(call)

    def _publish(self, call: Call) -> None:
        self._bus.publish(CallChanged(call.account, call.id, call.partner, call.partner_name, call.status,
                                      call.direction, call.failure_reason, call.conference_id, call.uuid))

    def _ring_expired(self, call_id: int) -> None:
        call = self.live.get(call_id)
        if call is None or call.status is not CallStatus.RINGING:
            return
        account = self._accounts.get(call.account)
        policy = E.VOICEMAIL if account.unanswered == "voicemail" and account.voicemail else E.NO_ANSWER
        self._transition(call, policy)
        self._background.spawn(self._network.call_action(call, policy))
