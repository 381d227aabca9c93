"""The interface between the gateway and a network: everything the account manager needs.

The account manager calls a `NetworkDriver` to act on the network; the driver calls back
the `Endpoint` registered for each local account when something arrives for it, and
plugs each call's far party into the media engine through `CallAudio`. Nothing here is
specific to one network: the embedded network implements it in-process, a live network
over the wire (hence `async` wherever a network answers). Failures are `SkypeError`s with
the seed's codes; a feature the network lacks is `not_supported`, and `capabilities`
says which features an account's network has before anything is tried.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol

from ..model.audio import AudioPort
from ..model.calls import Call, CallEvent
from ..model.capabilities import Feature
from ..model.profiles import Profile


class Endpoint(Protocol):
    """What a local account offers its network: delivery of inbound traffic."""

    def is_blocked(self, handle: str) -> bool:
        """Whether this account has blocked `handle`."""

    def connection_changed(self, status: str) -> None:
        """The account's own link to its network: CONNECTING, ONLINE, OFFLINE, LOGIN_REFUSED."""

    def presence_changed(self, handle: str) -> None:
        """A contact's presence or name changed (`NetworkDriver.known` has it now)."""

    def chat_message(self, sender: str, chat_name: str, body: str, message_id: str = "") -> None:
        """A message from `sender`; raises SkypeError(not_authorized) when refused.

        `message_id` is the network's id of the message, when it has one: a message that
        arrives again with the same id (after a reconnect) is dropped.
        """

    def auth_request(self, sender: str, text: str) -> None:
        """`sender` asks to be added; the account's auth_policy decides."""

    def auth_reply(self, sender: str, accepted: bool) -> None:
        """`sender` answered this account's buddy request."""

    def contact_changed(self, handle: str, *, buddy: int | None = None, authorized: bool | None = None,
                        blocked: bool | None = None) -> None:
        """The network's own contact or block list says this of `handle` now (a live network keeps them)."""

    async def file(self, sender: str, file_name: str, source: BinaryIO) -> None:
        """`sender` sends a file (`source`, open to read); the endpoint stores its own copy (off the event loop)."""

    def incoming_call(self, caller: str) -> int:
        """A call arrives from `caller`; returns the local call id (SkypeError when refused)."""

    def call_event(self, call_id: int, event: CallEvent, **details: str) -> None:
        """The remote side of call `call_id` did something (answered, held, hung up, …)."""

    def dtmf(self, call_id: int, digits: str) -> None:
        """The remote user of call `call_id` pressed `digits`."""

    def transferred(self, call_id: int, target: str) -> None:
        """The far party transferred call `call_id` to `target`: this side calls it instead."""


class CallAudio(Protocol):
    """The media engine's side of calls: where a driver plugs in the far party of each call."""

    def connect(self, account: str, call_id: int, far: AudioPort) -> None:
        """Audio of the account's call `call_id` starts: `far` is what the other side says and hears."""

    def disconnect(self, account: str, call_id: int) -> None:
        """The call's audio is over (the call ended, or moved on)."""


class Voicemail(Protocol):
    """Voicemail the gateway runs for a network that has none: a driver calls it once a call's audio is connected."""

    async def greet(self, account: str, call_id: int, greeting: Path | None) -> None:
        """Play the greeting and a beep to the caller; return once played."""

    def record(self, account: str, call_id: int) -> Path:
        """Start recording the caller into a new file: its path."""

    def stop(self, account: str, call_id: int) -> tuple[Path, float] | None:
        """End the recording: the message's file and seconds, or None if none was started."""


class NetworkDriver(Protocol):
    """A network the gateway's accounts live on."""

    name: str
    """What the README and `SKYPE_ERROR_TEXT` call it: `embedded`, `xmpp`."""

    def capabilities(self, account: str) -> frozenset[Feature]: ...

    def register(self, account: str, endpoint: Endpoint) -> None: ...

    async def start(self) -> None:
        """Bring every registered account online (a live network logs in)."""

    async def close(self) -> None: ...

    def known(self, account: str, handle: str) -> Profile | None:
        """What `account` knows of `handle` now, without asking the network (names, presence), if anything."""

    async def check_user(self, account: str, handle: str) -> None:
        """SkypeError(unknown_user) when the network knows there is no such user."""

    async def profile(self, account: str, handle: str) -> Profile:
        """`handle`'s profile and presence, asked of the network; SkypeError(unknown_user) when there is none."""

    def chat_name(self, account: str, handle: str) -> str | None:
        """The network's own name for the account's chat with `handle`; None: the gateway names it (Skype style)."""

    async def send_chat_message(self, account: str, handle: str, chat_name: str, body: str) -> None: ...

    async def send_auth_request(self, account: str, handle: str, text: str) -> None: ...

    async def send_auth_reply(self, account: str, handle: str, accepted: bool) -> None: ...

    async def remove_contact(self, account: str, handle: str) -> None: ...

    async def set_blocked(self, account: str, handle: str, blocked: bool) -> None: ...

    def sms_price(self, account: str, number: str, body: str) -> int: ...

    async def send_sms(self, account: str, number: str, body: str) -> None: ...

    async def send_file(self, account: str, handle: str, file_name: str, source: BinaryIO) -> None: ...

    async def place_call(self, call: Call) -> None:
        """Route a call the manager has just created (status ROUTING)."""

    async def call_action(self, call: Call, event: CallEvent, **details: str) -> None:
        """The local side of `call` did `event` (its own status already changed)."""

    async def send_dtmf(self, call: Call, digits: str) -> None: ...

    async def check_transfer(self, call: Call, target: str) -> None:
        """Refuse a transfer the network cannot carry out (`cannot_transfer`)."""

    def forget(self, call: Call) -> None:
        """The call is over for the manager: release what the network holds for it."""


class ScriptedUsers(Protocol):
    """A network whose users the administrator can drive by hand (the embedded one)."""

    def remote_call(self, user: str, account: str) -> int:
        """`user` calls `account`; returns the account's call id."""

    def remote_message(self, user: str, account: str, body: str) -> str:
        """`user` sends `account` a chat message; returns the chat's name."""

    def remote_buddy_request(self, user: str, account: str, text: str) -> None:
        """`user` asks `account` to be a buddy."""

    async def remote_file(self, user: str, account: str, file_name: str, source: BinaryIO) -> None:
        """`user` sends `account` what `source` holds, named `file_name` (copied once this returns)."""
