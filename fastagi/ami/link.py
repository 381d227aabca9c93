"""One AMI connection through panoramisk, with its defects worked around.

panoramisk's `Manager` logs in and matches answers to actions; the listener above owns
retries, liveness and the queue. What is changed here, and why:

- `_Action` keeps a UserEvent's headers in the order given (panoramisk sorts them, and
  Asterisk copies them in the order received);
- `_Protocol` reads with the project's `AmiParser` (panoramisk's reader makes a list of a
  repeated header and then drops the connection);
- `Link` never retries or reconnects by itself (panoramisk would, on timers nobody can
  cancel) and never pings on its own (panoramisk never checks the answers).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any, Awaitable, Sequence, TypeVar

from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from .protocol import AmiParser, encode_action

log = logging.getLogger("fastagi.ami.listener")

T = TypeVar("T")

EVENT_MASK = "call"
"""The login's ``Events:``: ``call`` is the class of ``OriginateResponse``. Not ``system``
(nothing here waits for ``FullyBooted``), not ``user`` (our own UserEvents would come
back), not ``on`` (every event class of the whole PBX)."""


class ConnectionLost(Exception):
    pass


class LinkDead(ConnectionLost):
    """Asterisk did not answer in time: the gateway gives the connection up."""


class LoginRefused(Exception):
    pass


class OrderedAction(Action):
    """An action sent with its headers in the order given.

    The headers stay beside the mapping, which holds only what panoramisk reads (Action, ActionID).
    """

    def __init__(self, name: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__({"Action": name})
        self.headers = tuple(headers)

    def __str__(self) -> str:
        return encode_action(self["Action"], [*self.headers, ("ActionID", self.id)]).decode("utf-8")


class _Protocol(AMIProtocol):
    """panoramisk's protocol, reading with `AmiParser`: each repeated header keeps its first value."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.parser = AmiParser()

    def data_received(self, data: bytes) -> None:
        discarded = self.parser.discarded
        for message in self.parser.feed(data):
            self.handle_message(Message(message.first_values()))
        if self.parser.discarded > discarded:
            log.warning("discarded an oversized AMI message from Asterisk")


class Link(Manager):
    """panoramisk's Manager for one connection: `login_reply` once Asterisk answers the login, `lost` once it is gone."""

    def __init__(self, **config: Any) -> None:
        super().__init__(protocol_factory=_Protocol, events=EVENT_MASK, **config)
        self.login_reply: asyncio.Future[Message] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, f: asyncio.Future) -> None:
        if not f.cancelled() and f.exception() is None:
            super().connection_made(f)

    def login(self, future: asyncio.Future) -> bool:
        if not self.login_reply.done():
            self.login_reply.set_result(future.result())
        return super().login(future)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.login_reply.done():
            self.login_reply.set_exception(ConnectionLost("closed by Asterisk during login"))
        if not self.lost.done():
            self.lost.set_result(None)

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0) instead of a FIN: what this side's kernel still holds
        unsent or unacknowledged is dropped, never delivered late behind the resent copy. Bytes
        Asterisk's kernel already acknowledged stay readable to Asterisk (Linux keeps them
        before the reset), which is why every UserEvent carries ``Seq``."""
        transport = self.protocol.transport if self.protocol is not None else None
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def ping(self) -> None:
        """Replaced by the listener's own Ping with a deadline."""

    def send(self, action: OrderedAction) -> asyncio.Future[Message]:
        # One answer per action: an async Originate's OriginateResponse comes as an event.
        return self.send_action(action, as_list=False)


async def within(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    """`awaitable`'s result, or `LinkDead` after `seconds`."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        raise LinkDead(f"{what} within {seconds:g} s") from None
