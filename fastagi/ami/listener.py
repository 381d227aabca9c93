"""The AMI listener: the gateway's events into Asterisk (what is sent: `actions`).

Delivery: actions wait in one FIFO `Outbox` of ``queue_size`` (a dropped incoming-call
Originate is reported unhandled at once). One action is on the wire at a time and
leaves the queue only when Asterisk answers it; ``Response: Success`` counts it
``delivered``, an error counts it ``rejected`` (logged: sending it again would fail
again). After a lost connection the unanswered action and everything behind it go again,
in order: at least once, and exactly once unless the connection dies between Asterisk
reading the action and its answer arriving. Every UserEvent carries ``Seq:``, a number
from ``next_seq`` (the state database's counter: it only grows, across restarts), the
same on every copy, so a consumer drops a repeat: a Seq not above the last it saw.

On a Local channel the dialplan takes an incoming call by answering within
``originate_timeout``; when Asterisk refuses the Originate or its ``OriginateResponse``
says ``Failure`` (no such extension, no answer in time),
``on_incoming_unhandled(account, call_id)`` is called.

Connection: one panoramisk `Link` per connection. The listener pings every
``ping_interval`` and treats ``ping_timeout`` without an answer as a dead (half-open)
connection, which it closes with a reset (`Link.abort`); it reconnects after any loss with exponential backoff from
``reconnect_min`` to ``reconnect_max``, and after a refused login every ``auth_retry``
seconds, with one ERROR line per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Callable

from panoramisk import Manager
from panoramisk.message import Message

from ..model.events import CallChanged, Event, EventBus
from .actions import ActionBuilder, Outgoing
from .link import ConnectionLost, Link, LinkDead, LoginRefused, OrderedAction, within
from .outbox import Outbox
from .settings import AmiSettings

log = logging.getLogger(__name__)

_LOGIN_REFUSAL_DELAY = 1.0  # Asterisk sleeps 1 s before it answers a refused login


class AmiListener:
    """Injects the bus's events into Asterisk (see the module doc).

    ``delivered``, ``rejected``, ``dropped`` and ``queued`` count AMI actions (UserEvents
    and Originates); ``connected`` is True while logged in.
    """

    def __init__(self, settings: AmiSettings, bus: EventBus, on_incoming_unhandled: Callable[[str, int], None],
                 audiosocket_address: Callable[[], str] = lambda: "",
                 next_seq: Callable[[], int] | None = None) -> None:
        self.settings = settings
        self._bus = bus
        self._on_incoming_unhandled = on_incoming_unhandled
        self._actions = ActionBuilder(settings, audiosocket_address)
        self._next_seq = next_seq or itertools.count(1).__next__  # without a database: from 1 each start
        self._outbox = Outbox(settings.queue_size)
        self._originating: dict[str, tuple[str, int]] = {}  # ActionID -> (account, call id)
        self._retry_delay = settings.reconnect_min
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.delivered = 0
        self.rejected = 0

    @property
    def queued(self) -> int:
        return len(self._outbox)

    @property
    def dropped(self) -> int:
        return self._outbox.dropped

    async def start(self) -> None:
        self._unsubscribe = self._bus.subscribe(self._on_event)
        self._task = asyncio.create_task(self._run(), name="ami-listener")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            # Python 3.11's wait_for can swallow a cancel that lands as its inner connect
            # fails: cancel until the task has really ended.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait([self._task], timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._outbox:
            log.warning("AMI listener stopped with %d action(s) not delivered", len(self._outbox))

    async def drain(self, timeout: float) -> None:
        """Give what is queued up to `timeout` seconds to reach Asterisk (on shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._outbox and self.connected and loop.time() < deadline:
            await asyncio.sleep(0.02)

    def play_dtmf(self, channel: str, digit: str, receive: bool = False) -> None:
        """Play a DTMF digit on an Asterisk channel (``PlayDTMF``, see `ActionBuilder.play_dtmf`), through the same queue."""
        self._put(self._actions.play_dtmf(channel, digit, receive))

    # -- events into actions ---------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self._put(self._actions.user_event(event, self._next_seq()))
        if isinstance(event, CallChanged):
            try:
                originate = self._actions.incoming_call(event)
            except ValueError:
                log.warning("incoming call %s of %s: UUID %r names no AudioSocket channel",
                            event.call_id, event.account, event.uuid)
                self._report_unhandled(event.account, event.call_id)
                return
        else:
            try:
                originate = self._actions.event_script(event)
            except ValueError as exc:
                log.warning("%s", exc)
                return
        if originate is not None:
            self._put(originate)

    def _put(self, item: Outgoing) -> None:
        if not self._outbox.put(item) and item.incoming is not None:
            self._report_unhandled(*item.incoming)

    def _report_unhandled(self, account: str, call_id: int) -> None:
        log.warning("incoming call %s of %s was not taken by the dialplan", call_id, account)
        try:
            self._on_incoming_unhandled(account, call_id)
        except Exception:  # noqa: BLE001 - the callback's bug must not break the connection
            log.exception("on_incoming_unhandled failed for call %s of %s", call_id, account)

    # -- the connection ------------------------------------------------------------------

    async def _run(self) -> None:
        address = f"{self.settings.host}:{self.settings.port}"
        while True:
            try:
                await self._session()
            except LoginRefused as refused:
                delay = self.settings.auth_retry
                log.error("AMI login to %s as %r refused (%s); next try in %g s",
                          address, self.settings.username, refused, delay)
            except (OSError, ConnectionLost) as lost:
                delay = self._next_retry_delay()
                log.warning("AMI connection to %s: %s; reconnecting in %g s", address, lost, delay)
            except Exception:  # noqa: BLE001 - a bug here must not end event delivery for good
                delay = self._next_retry_delay()
                log.exception("AMI listener failed; reconnecting in %g s", delay)
            await asyncio.sleep(delay)

    def _next_retry_delay(self) -> float:
        delay = self._retry_delay
        self._retry_delay = min(delay * 2, self.settings.reconnect_max)
        return delay

    async def _session(self) -> None:
        """One connection, from connecting to its loss (raised)."""
        settings = self.settings
        link = Link(loop=asyncio.get_running_loop(), host=settings.host, port=settings.port,
                    username=settings.username, secret=settings.secret)
        link.register_event("OriginateResponse", self._on_originate_response)
        try:
            await within(link.connect(), settings.ping_timeout, "no connection")
            reply = await within(link.login_reply, settings.ping_timeout + _LOGIN_REFUSAL_DELAY, "no answer to Login")
            if not reply.success:
                raise LoginRefused(reply.message or reply.response)
            self._retry_delay = settings.reconnect_min
            self.connected = True
            log.info("AMI connected to %s:%s as %r, %d action(s) queued",
                     settings.host, settings.port, settings.username, len(self._outbox))
            await self._serve(link)
        except LinkDead:
            link.abort()
            raise
        finally:
            self.connected = False
            link.close()
            for account, call_id in self._originating.values():
                log.warning("AMI connection lost before Asterisk said whether incoming call %s of %s "
                            "reached the dialplan", call_id, account)
            self._originating.clear()

    async def _serve(self, link: Link) -> None:
        workers = [asyncio.create_task(self._pump(link)), asyncio.create_task(self._keep_alive(link))]
        try:
            await asyncio.wait([*workers, link.lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        for worker in workers:
            if not worker.cancelled() and worker.exception() is not None:
                raise worker.exception()  # type: ignore[misc]
        raise ConnectionLost("closed by Asterisk")

    async def _pump(self, link: Link) -> None:
        """Sends the queue's head, and drops it from the queue once Asterisk answered it."""
        while True:
            item = await self._outbox.head()
            action = OrderedAction(item.action, item.headers)
            if item.incoming is not None:
                # Known before sending: its OriginateResponse can come right behind the answer.
                self._originating[action.id] = item.incoming
            try:
                reply = await link.send(action)
            except asyncio.CancelledError:
                self._originating.pop(action.id, None)  # unanswered: it goes again after the reconnect
                raise
            self._outbox.pop()
            if reply.success:
                self.delivered += 1
            else:
                self.rejected += 1
                log.error("Asterisk refused %s: %s", item, reply.message)
                if self._originating.pop(action.id, None) is not None:
                    self._report_unhandled(*item.incoming)  # type: ignore[misc]

    async def _keep_alive(self, link: Link) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            await within(link.send(OrderedAction("Ping")), self.settings.ping_timeout, "no answer to Ping")

    def _on_originate_response(self, _link: Manager, message: Message) -> None:
        incoming = self._originating.pop(message.actionid, None)
        if incoming is not None and message.response != "Success":
            self._report_unhandled(*incoming)
