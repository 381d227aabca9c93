"""The narrow interface between the account manager and a Skype network.

The account manager calls a `NetworkDriver` to act on the network, and the driver calls
back the `Endpoint` registered for each local account when something arrives for it.
The embedded network implements it in-process; a driver for a live network would
implement the same two protocols. Failures are `SkypeError`s with the seed's codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..manager.calls import Call, CallEvent


@dataclass(frozen=True)
class Profile:
    """Everything `get-user` returns about a user, as the network publishes it."""

    handle: str
    fullname: str = ""
    displayname: str = ""
    birthday: str = ""
    sex: str = "unknown"
    language: str = ""
    country: str = ""
    province: str = ""
    city: str = ""
    phone_home: str = ""
    phone_office: str = ""
    phone_mobile: str = ""
    homepage: str = ""
    mood_text: str = ""
    rich_mood_text: str = ""
    timezone: str = ""
    online_status: str = "ONLINE"

    @property
    def shown_name(self) -> str:
        """The name others see: the display name, else the full name."""
        return self.displayname or self.fullname


class Endpoint(Protocol):
    """What a local account offers the network: delivery of inbound traffic."""

    def deliver_chat_message(self, sender: str, chat_name: str, body: str) -> None:
        """A message from `sender`; raises SkypeError(not_authorized) when refused."""

    def deliver_auth_request(self, sender: str, text: str) -> None:
        """`sender` asks to be added; the account's auth_policy decides."""

    def deliver_auth_reply(self, sender: str, accepted: bool) -> None:
        """`sender` answered this account's buddy request."""

    def deliver_file(self, sender: str, file_name: str, source: Path) -> None:
        """`sender` sends a file; the endpoint stores its own copy."""

    def deliver_call_event(self, call_id: int, event: "CallEvent", **details: str) -> None:
        """The remote side of call `call_id` did something (answered, held, hung up, …)."""

    def deliver_incoming_call(self, caller: str, link: object) -> int:
        """A call arrives from `caller`; returns the local call id. `link` identifies the leg."""

    def deliver_dtmf(self, call_id: int, digits: str) -> None:
        """The remote user of call `call_id` pressed `digits`."""

    def deliver_transfer(self, call_id: int, target: str) -> None:
        """The far party transferred call `call_id` to `target`: this side calls it instead."""

    def is_blocked(self, handle: str) -> bool:
        """Whether this account has blocked `handle`."""


class NetworkDriver(Protocol):
    def register(self, handle: str, endpoint: Endpoint) -> None: ...

    def profile(self, handle: str) -> Profile | None: ...

    async def send_chat_message(self, sender: str, recipient: str, chat_name: str, body: str) -> None: ...

    async def send_auth_request(self, sender: str, recipient: str, text: str) -> None: ...

    async def send_auth_reply(self, sender: str, recipient: str, accepted: bool) -> None: ...

    def sms_price(self, number: str, body: str) -> int: ...

    async def send_sms(self, sender: str, number: str, body: str) -> None: ...

    async def send_file(self, sender: str, recipient: str, file_name: str, source: Path) -> None: ...

    async def place_call(self, call: "Call") -> None: ...

    async def call_action(self, call: "Call", event: "CallEvent", **details: str) -> None: ...

    async def send_dtmf(self, call: "Call", digits: str) -> None: ...

    async def check_transfer(self, call: "Call", target: str) -> None: ...

    def forget(self, call: "Call") -> None: ...
