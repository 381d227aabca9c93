"""The embedded Skype network: the default network `serve` runs on.

A stateful model of the Skype service in-process: a directory of users (the accounts
registered on this server, the `type = user` entries of the config, the built-in
`echo123`), presence, buddy requests, chats, SMS priced in SkypeOut credit, file
transfers and calls. Users that are not accounts here are scripted: their `behaviour`
decides what a call to them does, and they answer chats and buddy requests too.

It implements `NetworkDriver`; the account manager reaches it only through that, and
only the gateway's assembly (`fastagi.app`) names it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from ..background import Background
from ..files import copy_incoming
from ..model import errors
from ..model.audio import SILENCE, AudioPort, EchoPort, SilentPort
from ..model.calls import Call, CallEvent
from ..model.capabilities import ALL_FEATURES, Feature
from ..model.errors import SkypeError
from ..model.profiles import Profile
from .driver import CallAudio, Endpoint

log = logging.getLogger("fastagi.network")
E = CallEvent

SMS_NUMBER = re.compile(r"^\+[1-9][0-9]{6,15}$")
SMS_PART = 160
SMS_MAX_PARTS = 10


@dataclass
class ScriptedUser:
    """A user of the network who is not an account on this server."""

    profile: Profile
    behaviour: str = "answer"
    ring_delay: float = 1.0
    answer_delay: float = 2.0
    auth_policy: str = "allow"
    voicemail: bool = True
    greeting: Callable[[], AudioPort] | None = None
    """What an answering user plays to the caller: a new port per call."""

    @property
    def online(self) -> bool:
        return self.behaviour != "offline" and self.profile.online_status != "OFFLINE"

    def voice(self) -> AudioPort:
        """What this user sounds like in a call: echo users echo, others play their greeting or stay silent."""
        if self.behaviour == "echo":
            return EchoPort()
        return self.greeting() if self.greeting is not None else SilentPort()


@dataclass
class _Leg:
    """One side of a call on the network: a local account's call, or a scripted user."""

    account: str | None
    call_id: int | None
    user: ScriptedUser | None = None
    peer: "_Leg | None" = None
    task: asyncio.Task[None] | None = None


@dataclass
class _PipeEnd:
    """One end of the audio line between two accounts of this server: it hears what the other end says.

    The media engine ticks each call's room in turn, so a frame crosses within the tick or
    the next; the short queue evens that out and bounds the delay.
    """

    inbox: deque[bytes] = field(default_factory=lambda: deque(maxlen=3))
    other: "_PipeEnd | None" = None

    def pull(self) -> bytes:
        return self.inbox.popleft() if self.inbox else SILENCE

    def push(self, frame: bytes) -> None:
        assert self.other is not None
        self.other.inbox.append(frame)


def _pipe() -> tuple[_PipeEnd, _PipeEnd]:
    a, b = _PipeEnd(), _PipeEnd()
    a.other, b.other = b, a
    return a, b


@dataclass(frozen=True)
class Timing:
    """Delays of the network's own steps (scripted users carry their own ring/answer delays)."""

    vm_greeting: float = 1.0  # the voicemail greeting plays this long
    vm_message: float = 2.0  # a scripted caller speaks into voicemail this long
    vm_upload: float = 0.2
    ring_timeout: float = 30.0


# what the far leg of an account-to-account call sees when this side does something
MIRROR: dict[CallEvent, CallEvent] = {
    E.ANSWER: E.ANSWER,
    E.LOCAL_HOLD: E.REMOTE_HOLD,
    E.LOCAL_RESUME: E.REMOTE_RESUME,
    E.FINISH: E.FINISH,
    E.CANCEL: E.NO_ANSWER,
    E.REFUSE: E.REFUSE,
    E.NO_ANSWER: E.NO_ANSWER,
    E.VOICEMAIL: E.VOICEMAIL,
    E.VM_UPLOAD: E.VM_UPLOAD,
    E.VM_CANCEL: E.VM_CANCEL,
}


class EmbeddedNetwork:
    """The embedded Skype network (see the module doc)."""

    name = "embedded"

    def __init__(
        self,
        users: dict[str, ScriptedUser],
        account_profiles: dict[str, Profile],
        incoming_dir: Path,
        audio: CallAudio,
        sms_price: int = 10,
        timing: Timing | None = None,
        features: frozenset[Feature] = ALL_FEATURES,
    ) -> None:
        self.users = users
        self.account_profiles = account_profiles
        self.incoming_dir = incoming_dir
        self.price_per_part = sms_price
        self.timing = timing or Timing()
        self.features = features
        self._audio = audio
        self._endpoints: dict[str, Endpoint] = {}
        self._legs: dict[tuple[str, int], _Leg] = {}
        self._chats: dict[tuple[str, str], str] = {}  # (scripted user, account) → their latest chat
        self.background = Background(log)

    # -- directory -------------------------------------------------------------
    def capabilities(self, account: str) -> frozenset[Feature]:
        return self.features

    def register(self, account: str, endpoint: Endpoint) -> None:
        self._endpoints[account] = endpoint

    async def start(self) -> None:
        """Every account is online at once: the network is in-process."""
        for endpoint in self._endpoints.values():
            endpoint.connection_changed("ONLINE")

    async def close(self) -> None:
        await self.background.close()
        for endpoint in self._endpoints.values():
            endpoint.connection_changed("OFFLINE")

    def _find(self, handle: str) -> Profile | None:
        if handle in self.account_profiles:
            return self.account_profiles[handle]
        user = self.users.get(handle)
        return user.profile if user else None

    def known(self, account: str, handle: str) -> Profile | None:
        return self._find(handle)

    async def check_user(self, account: str, handle: str) -> None:
        self._require(handle)

    async def profile(self, account: str, handle: str) -> Profile:
        return self._require(handle)

    def _require(self, handle: str) -> Profile:
        profile = self._find(handle)
        if profile is None:
            raise SkypeError(errors.UNKNOWN_USER, f"no Skype user named {handle!r}")
        return profile

    # -- chat, buddies, SMS, files ---------------------------------------------
    def chat_name(self, account: str, handle: str) -> str | None:
        return None  # Skype's own: a new chat after the account left the last one

    async def send_chat_message(self, account: str, handle: str, chat_name: str, body: str) -> None:
        self._require(handle)
        endpoint = self._endpoints.get(handle)
        if endpoint is not None:
            endpoint.chat_message(account, chat_name, body)
            return
        self._chats[(handle, account)] = chat_name  # a scripted user's next message goes on in this chat
        user = self.users[handle]
        if user.behaviour == "echo" and user.online:
            self.background.spawn(self._deliver_later(account, lambda ep: ep.chat_message(handle, chat_name, body)))

    async def send_auth_request(self, account: str, handle: str, text: str) -> None:
        self._require(handle)
        endpoint = self._endpoints.get(handle)
        if endpoint is not None:
            endpoint.auth_request(account, text)
            return
        policy = self.users[handle].auth_policy
        if policy != "ignore":
            accepted = policy == "allow"
            self.background.spawn(self._deliver_later(account, lambda ep: ep.auth_reply(handle, accepted)))

    async def send_auth_reply(self, account: str, handle: str, accepted: bool) -> None:
        self._require(handle)
        endpoint = self._endpoints.get(handle)
        if endpoint is not None:
            endpoint.auth_reply(account, accepted)

    async def remove_contact(self, account: str, handle: str) -> None:
        self._require(handle)

    async def set_blocked(self, account: str, handle: str, blocked: bool) -> None:
        """Blocking is the blocker's own business here: the other side learns nothing."""
        self._require(handle)

    async def _deliver_later(self, handle: str, deliver: Callable[[Endpoint], None]) -> None:
        await asyncio.sleep(0)
        endpoint = self._endpoints.get(handle)
        if endpoint is not None:
            deliver(endpoint)

    def sms_price(self, account: str, number: str, body: str) -> int:
        return self.price_per_part * max(1, -(-len(body) // SMS_PART))

    async def send_sms(self, account: str, number: str, body: str) -> None:
        if not SMS_NUMBER.match(number):
            raise SkypeError(errors.CANNOT_SEND, f"{number!r} is not a mobile number in international format (+country…)")
        if len(body) > SMS_PART * SMS_MAX_PARTS:
            raise SkypeError(errors.CANNOT_SEND, f"SMS text longer than {SMS_PART * SMS_MAX_PARTS} characters")

    async def send_file(self, account: str, handle: str, file_name: str, source: BinaryIO) -> None:
        self._require(handle)
        endpoint = self._endpoints.get(handle)
        if endpoint is not None:
            await endpoint.file(account, file_name, source)
        else:
            await copy_incoming(self.incoming_dir / handle, file_name, source)

    # -- calls -----------------------------------------------------------------
    async def place_call(self, call: Call) -> None:
        self._require(call.partner)
        leg = _Leg(call.account, call.id)
        self._legs[(call.account, call.id)] = leg
        endpoint = self._endpoints.get(call.partner)
        if endpoint is not None:
            far = _Leg(call.partner, None, peer=leg)
            leg.peer = far
            try:
                far.call_id = endpoint.incoming_call(call.account)
            except SkypeError:
                del self._legs[(call.account, call.id)]
                raise
            self._legs[(call.partner, far.call_id)] = far
            self._event(leg, E.RING)
            return
        user = self.users[call.partner]
        far = _Leg(None, None, user=user, peer=leg)
        leg.peer = far
        far.task = self.background.spawn(self._scripted_callee(leg, user))

    # -- scripted users driven by hand (administration and tests) ------------------
    def remote_call(self, user: str, account: str) -> int:
        """A scripted user calls a local account."""
        scripted, endpoint = self._scripted(user, account)
        far = _Leg(account, None)
        caller = _Leg(None, None, user=scripted, peer=far)
        far.peer = caller
        far.call_id = endpoint.incoming_call(user)
        self._legs[(account, far.call_id)] = far
        return far.call_id

    def remote_message(self, user: str, account: str, body: str) -> str:
        """A scripted user writes to an account, in the chat they last had (or a new one)."""
        _, endpoint = self._scripted(user, account)
        chat = self._chats.get((user, account)) or f"#{user}/${account};{secrets.token_hex(8)}"
        endpoint.chat_message(user, chat, body)
        self._chats[(user, account)] = chat
        return chat

    def remote_buddy_request(self, user: str, account: str, text: str) -> None:
        self._scripted(user, account)[1].auth_request(user, text)

    async def remote_file(self, user: str, account: str, file_name: str, source: BinaryIO) -> None:
        await self._scripted(user, account)[1].file(user, file_name, source)

    def _scripted(self, user: str, account: str) -> tuple[ScriptedUser, Endpoint]:
        scripted = self.users.get(user)
        if scripted is None:
            raise SkypeError(errors.UNKNOWN_USER, f"{user!r} is not a scripted user of the network")
        endpoint = self._endpoints.get(account)
        if endpoint is None:
            raise SkypeError(errors.UNKNOWN_ACCOUNT, f"{account!r} is not an account on the embedded network")
        return scripted, endpoint

    async def call_action(self, call: Call, event: CallEvent, **details: str) -> None:
        leg = self._legs.get((call.account, call.id))
        if leg is None or leg.peer is None:
            return
        far = leg.peer
        if event is E.VOICEMAIL:
            self._event(far, E.VOICEMAIL)
            leg.task = self.background.spawn(self._voicemail(leg, far))
        elif event is E.VM_UPLOAD:
            self._event(far, E.VM_UPLOAD)
            leg.task = self.background.spawn(self._vm_upload([leg, far]))
        elif event is E.TRANSFER_DONE:
            self._hand_over(far, details["target"])
        elif event in MIRROR:
            self._event(far, MIRROR[event])
        if event is E.ANSWER:
            self._connect(leg, far)
        if call.is_ended:
            self.forget(call)

    async def send_dtmf(self, call: Call, digits: str) -> None:
        leg = self._legs.get((call.account, call.id))
        if leg is None or leg.peer is None:
            return
        far = leg.peer
        if far.user is not None:
            if far.user.behaviour == "echo" and leg.account is not None and leg.call_id is not None:
                call_id = leg.call_id
                self.background.spawn(self._deliver_later(leg.account, lambda ep: ep.dtmf(call_id, digits)))
        elif far.account is not None and far.call_id is not None:
            self._endpoints[far.account].dtmf(far.call_id, digits)

    async def check_transfer(self, call: Call, target: str) -> None:
        leg = self._legs.get((call.account, call.id))
        far = leg.peer if leg else None
        user = self.users.get(target)
        if user is not None and not user.online:
            raise SkypeError(errors.CANNOT_TRANSFER, f"{target} is offline")
        endpoint = self._endpoints.get(target)
        partner = call.partner
        if endpoint is not None and endpoint.is_blocked(partner):
            raise SkypeError(errors.CANNOT_TRANSFER, f"{target} has blocked {partner}")
        if far is None:
            raise SkypeError(errors.CANNOT_TRANSFER, f"call {call.id} has no far party to transfer")

    def _hand_over(self, far: _Leg, target: str) -> None:
        """The transferred party calls `target` instead."""
        if far.account is not None and far.call_id is not None:
            self._endpoints[far.account].transferred(far.call_id, target)
        elif far.user is not None and target in self._endpoints:
            self.remote_call(far.user.profile.handle, target)

    def forget(self, call: Call) -> None:
        leg = self._legs.pop((call.account, call.id), None)
        if leg is None:
            return
        if leg.task is not None:
            leg.task.cancel()
        far = leg.peer
        if far is not None and far.task is not None:
            far.task.cancel()
        self._audio.disconnect(call.account, call.id)

    def _connect(self, leg: _Leg, far: _Leg) -> None:
        """The call is answered: each local side hears the other side (a scripted user's voice, or the other account)."""
        if far.user is not None:
            if leg.account is not None and leg.call_id is not None:
                self._audio.connect(leg.account, leg.call_id, far.user.voice())
            return
        if None in (leg.account, leg.call_id, far.account, far.call_id):
            return
        near_end, far_end = _pipe()
        self._audio.connect(leg.account, leg.call_id, near_end)  # type: ignore[arg-type]
        self._audio.connect(far.account, far.call_id, far_end)  # type: ignore[arg-type]

    def _event(self, leg: _Leg, event: CallEvent, **details: str) -> None:
        if leg.account is None or leg.call_id is None:
            return
        endpoint = self._endpoints.get(leg.account)
        if endpoint is not None:
            endpoint.call_event(leg.call_id, event, **details)

    # -- scripted users ----------------------------------------------------------
    async def _scripted_callee(self, leg: _Leg, user: ScriptedUser) -> None:
        if not user.online:
            self._event(leg, E.FAIL, reason="user is offline")
            return
        await asyncio.sleep(user.ring_delay)
        self._event(leg, E.RING)
        if user.behaviour == "noanswer" or (user.behaviour == "voicemail" and not user.voicemail):
            await asyncio.sleep(self.timing.ring_timeout)
            self._event(leg, E.NO_ANSWER)
            return
        await asyncio.sleep(user.answer_delay)
        if user.behaviour in ("echo", "answer"):
            self._event(leg, E.ANSWER)
            if leg.peer is not None:
                self._connect(leg, leg.peer)
        elif user.behaviour == "busy":
            self._event(leg, E.BUSY)
        elif user.behaviour == "refuse":
            self._event(leg, E.REFUSE)
        elif user.behaviour == "voicemail":
            self._event(leg, E.VOICEMAIL)
            await self._voicemail_greeting([leg])

    async def _voicemail_greeting(self, legs: list[_Leg]) -> None:
        for leg in legs:
            self._event(leg, E.VM_GREETING)
        await asyncio.sleep(self.timing.vm_greeting)
        for leg in legs:
            self._event(leg, E.VM_RECORD)

    async def _voicemail(self, callee: _Leg, caller: _Leg) -> None:
        """call-vm: the caller hears the greeting and leaves a message.

        A scripted caller speaks for `vm_message` seconds and hangs up; a caller that
        is an account here records until it hangs up (its VM_UPLOAD comes back
        through `call_action`).
        """
        await asyncio.sleep(0)
        await self._voicemail_greeting([callee, caller])
        if caller.user is not None:
            await asyncio.sleep(self.timing.vm_message)
            self._event(callee, E.VM_UPLOAD)
            await self._vm_upload([callee])

    async def _vm_upload(self, legs: list[_Leg]) -> None:
        await asyncio.sleep(self.timing.vm_upload)
        for leg in legs:
            self._event(leg, E.VM_SENT)

