"""The AMI listener: Skype events into Asterisk.

Every event on the bus becomes ``Action: UserEvent`` with ``UserEvent: Skype<Kind>``,
``Account:`` and the event's fields in their order, every value escaped (see
`fastagi.ami.framing`). A ringing incoming call is also routed into the dialplan with an
``Originate``, and with ``events_context`` set the events Skip2PBX ran scripts for run an
extension of that context.

Incoming call: on the first ``CallStatus`` with ``Direction: incoming`` and ``Status:
RINGING`` of a CallID, ``Originate`` runs ``incoming_context`` at the account name (``s``
when the name is no plain dialplan extension), on a Local channel, or with
``incoming_media = audiosocket`` on an AudioSocket channel carrying the call's audio,
with the caller as CallerID and ``SKYPE_CALL_ID``, ``SKYPE_ACCOUNT``, ``SKYPE_CALLER``,
``SKYPE_CALLER_NAME``, ``SKYPE_CALL_UUID``. On a Local channel the dialplan takes the call
by answering within ``originate_timeout_ms``; when Asterisk refuses the Originate or its
``OriginateResponse`` says ``Failure`` (no such extension, no answer in time),
``on_incoming_unhandled(account, call_id)`` is called.

Delivery: actions wait in one FIFO queue of ``queue_size``; when it is full the *newest*
is dropped, counted in ``dropped`` and logged, so what Asterisk gets is always a gap-free
prefix of what happened (a dropped incoming-call Originate is reported unhandled at
once). One action is on the wire at a time and leaves the queue only when Asterisk
answers it; ``Response: Success`` counts it ``delivered``, an error counts it ``rejected``
(logged: sending it again would fail again). After a lost connection the unanswered
action and everything behind it go again, in order: at least once, and exactly once
unless the connection dies between Asterisk acting and its answer arriving.

Connection: panoramisk's `Manager` connects and logs in, one `Manager` per connection.
The listener pings every ``ping_interval`` and treats ``ping_timeout`` without an answer
as a dead (half-open) connection; it reconnects after any loss with exponential backoff
from ``reconnect_min`` to ``reconnect_max``, and after a refused login every
``auth_retry`` seconds, with one ERROR line per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, NamedTuple, Sequence, TypeVar

from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from fastagi.ami.framing import (
    AmiParser,
    encode_action,
    escape_argument,
    escape_value,
    fit_value,
    value_budget,
)
from fastagi.manager.events import Event, EventBus, EventKind

log = logging.getLogger(__name__)

EVENT_MASK = "call"
"""The login's ``Events:``: ``call`` is the class of ``OriginateResponse``. Not ``system``
(nothing here waits for ``FullyBooted``), not ``user`` (our own UserEvents would come
back), not ``on`` (every event class of the whole PBX)."""

HOLD = (("Application", "Wait"), ("Data", "86400"))
"""What the originated ``;1`` half of the Local channel runs once ``;2`` answers.

``;2`` runs the dialplan at the Channel's exten@context with the Originate's variables
(Asterisk copies them from ``;1``); ``;1`` only keeps the pair up, silently, and ends
when ``;2`` hangs up (after a day at the latest). ``Context``/``Exten`` pointing at the
same extension would run that dialplan a second time on ``;1``."""

_LOGIN_REFUSAL_DELAY = 1.0  # Asterisk sleeps 1 s before it answers a refused login
_ROUTED_MEMORY = 1024  # incoming CallIDs remembered, so each call is originated once
_CALLERID_BUFFER = 255  # Asterisk copies CallerID into a 256-byte buffer
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_VARIABLE = re.compile(r"[A-Za-z0-9_]+")
_ADDRESS = re.compile(r"[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}")
_EXTENSION = re.compile(r"[A-Za-z0-9+][A-Za-z0-9+_.-]{0,79}")
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_DIRECTIONS = ("incoming", "outgoing")

T = TypeVar("T")
Headers = tuple[tuple[str, str], ...]


class _Script(NamedTuple):
    """An event that runs ``events_context``, the way Skip2PBX ran its event scripts."""

    extension: str
    """``{Direction}`` stands for the event's Direction."""
    variables: dict[str, str]
    """Field -> channel variable (after the prefix); other fields keep their own name,
    upper-cased with ``_`` between words (``FromName`` -> ``FROM_NAME``)."""


_USER = {"From": "USER_NAME", "FromName": "USER_DISPNAME"}
EVENT_SCRIPTS: dict[EventKind, _Script] = {
    EventKind.CHAT_MESSAGE: _Script("chatmessage-{Direction}-received", {
        **_USER, "ChatName": "CHAT_NAME", "MessageID": "MESSAGE_ID", "Body": "MESSAGE_BODY"}),
    EventKind.AUTH_REQUEST: _Script("authrequest-incoming-received", _USER),
    EventKind.BUDDY_STATUS: _Script("user-status-updated", {
        "User": "USER_NAME", "UserName": "USER_DISPNAME", "OnlineStatus": "USER_STATUS",
        "BuddyStatus": "USER_BUDDYSTATUS", "IsAuthorized": "USER_ISAUTHORIZED", "IsBlocked": "USER_ISBLOCKED"}),
    EventKind.BALANCE: _Script("profile-currency-update", {"Balance": "BALANCE", "Currency": "BALANCE_CURRENCY"}),
    EventKind.SMS_STATUS: _Script("sms-status-updated", {
        "SMSID": "SMS_ID", "Number": "SMS_NUMBER", "Status": "SMS_STATUS", "Price": "SMS_PRICE",
        "Currency": "SMS_CURRENCY"}),
    EventKind.FILE_TRANSFER: _Script("filetransfer-status-updated", {
        "TransferID": "FILE_TRANSFER_ID", "Partner": "USER_NAME", "FileName": "FILE_NAME", "Status": "FILE_STATUS",
        "Direction": "FILE_DIRECTION", "Path": "FILE_PATH"}),
}


@dataclass
class AmiSettings:
    host: str
    port: int
    username: str
    secret: str
    incoming_context: str = "skype-incoming"
    events_context: str | None = None
    queue_size: int = 1000
    ping_interval: float = 5.0
    ping_timeout: float = 3.0
    """Deadline for every answer from Asterisk: connecting, Ping (and Login, plus 1 s)."""
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    auth_retry: float = 30.0
    incoming_media: str = "local"
    """How an incoming call reaches the dialplan: ``local``, a Local channel whose ``;2``
    half runs it (the dialplan brings the audio in with AudioSocket itself);
    ``audiosocket``, an AudioSocket channel to ``audiosocket_address`` that carries the
    call's audio runs it."""
    variable_prefix: str = "SKYPE_"
    originate_timeout_ms: int = 30000
    """How long the dialplan has to answer its Local channel before the call counts unhandled."""
    audiosocket_address: str | None = None
    """``host:port`` at which Asterisk reaches the gateway's AudioSocket server."""

    def __post_init__(self) -> None:
        for name in ("incoming_context", "events_context"):
            value = getattr(self, name)
            if value is not None and not _NAME.fullmatch(value):
                raise ValueError(f"{name} {value!r}: a context name is letters, digits, _ . -")
        if self.variable_prefix and not _VARIABLE.fullmatch(self.variable_prefix):
            raise ValueError(f"variable_prefix {self.variable_prefix!r}: letters, digits and _ only")
        if self.incoming_media not in ("local", "audiosocket"):
            raise ValueError(f"incoming_media {self.incoming_media!r}: 'local' or 'audiosocket'")
        if self.incoming_media == "audiosocket" and not _ADDRESS.fullmatch(self.audiosocket_address or ""):
            raise ValueError(f"incoming_media 'audiosocket' needs audiosocket_address host:port, "
                             f"not {self.audiosocket_address!r}")
        if self.queue_size < 1 or not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("queue_size must be >= 1 and 0 < reconnect_min <= reconnect_max")


@dataclass(frozen=True)
class _Outgoing:
    """One action waiting in the queue; ``headers[0]`` (UserEvent or Channel) names it."""

    action: str
    headers: Headers
    incoming: tuple[str, str] | None = None
    """(account, call id) of the incoming call this Originate routes."""

    def __str__(self) -> str:
        return f"{self.action} {self.headers[0][1]}"


class _ConnectionLost(Exception):
    pass


class _LoginRefused(Exception):
    pass


class _Action(Action):
    """An action sent with its headers in the order given.

    panoramisk's `Action.__str__` sorts the headers, which reorders a UserEvent's fields
    (Asterisk copies them in the order received): the headers stay beside the mapping,
    which holds only what panoramisk reads (Action, ActionID).
    """

    def __init__(self, name: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__({"Action": name})
        self.headers = tuple(headers)

    def __str__(self) -> str:
        return encode_action(self["Action"], [*self.headers, ("ActionID", self.id)]).decode("utf-8")


class _Protocol(AMIProtocol):
    """panoramisk's protocol, reading with `AmiParser`.

    panoramisk's reader makes a list of a repeated header and `handle_message` then
    raises AttributeError, dropping the connection; here each header keeps its first value.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.parser = AmiParser()

    def data_received(self, data: bytes) -> None:
        discarded = self.parser.discarded
        for message in self.parser.feed(data):
            self.handle_message(Message(message.first_values()))
        if self.parser.discarded > discarded:
            log.warning("discarded an oversized AMI message from Asterisk")


class _Manager(Manager):
    """panoramisk's Manager for one connection; the listener owns retries and liveness.

    panoramisk would retry a failed connect on a fixed timer nobody can cancel, reconnect by
    itself after a loss, and send Pings whose answers it never checks.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__(protocol_factory=_Protocol, **config)
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
            self.login_reply.set_exception(_ConnectionLost("closed by Asterisk during login"))
        if not self.lost.done():
            self.lost.set_result(None)

    def ping(self) -> None:
        """Replaced by the listener's own Ping with a deadline."""


class AmiListener:
    """Injects the bus's Skype events into Asterisk (see the module doc).

    ``delivered``, ``rejected``, ``dropped`` and ``queued`` count AMI actions (UserEvents
    and Originates); ``connected`` is True while logged in.
    """

    def __init__(self, settings: AmiSettings, bus: EventBus,
                 on_incoming_unhandled: Callable[[str, str], None]) -> None:
        self.settings = settings
        self._bus = bus
        self._on_incoming_unhandled = on_incoming_unhandled
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_ready = asyncio.Event()
        self._originating: dict[str, tuple[str, str]] = {}  # ActionID -> (account, call id)
        self._routed: dict[str, None] = {}  # recent incoming CallIDs, oldest first
        self._retry_delay = settings.reconnect_min
        self._dropping = 0  # drops since the queue was last below its bound
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.delivered = 0
        self.rejected = 0
        self.dropped = 0

    @property
    def queued(self) -> int:
        return len(self._outbox)

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

    def play_dtmf(self, channel: str, digit: str) -> None:
        """Play a DTMF digit on an Asterisk channel (``PlayDTMF``), through the same queue."""
        self._enqueue(_Outgoing("PlayDTMF", (_text("Channel", channel), _text("Digit", digit))))

    # -- events into actions ---------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self._enqueue(_Outgoing("UserEvent", self._user_event(event)))
        if event.kind is EventKind.CALL_STATUS:
            self._route_incoming(event)
        elif self.settings.events_context:
            self._run_events_context(event, self.settings.events_context)

    @staticmethod
    def _user_event(event: Event) -> Headers:
        # field names come from EVENT_FIELDS, which holds none of the action's own headers
        headers = [("UserEvent", event.kind.user_event), _text("Account", event.account)]
        headers += [_text(name, value) for name, value in event.fields.items()]
        return tuple(headers)

    def _route_incoming(self, event: Event) -> None:
        fields = event.fields
        call_id = fields.get("CallID", "")
        if fields.get("Direction") != "incoming" or fields.get("Status") != "RINGING" or call_id in self._routed:
            return
        self._routed[call_id] = None
        if len(self._routed) > _ROUTED_MEMORY:
            del self._routed[next(iter(self._routed))]
        exten = event.account if _EXTENSION.fullmatch(event.account) else "s"
        call_uuid = fields.get("UUID", "")
        try:
            channel, target = self._incoming_channel(exten, call_uuid)
        except ValueError:
            log.warning("incoming call %s of %s: UUID %r names no AudioSocket channel",
                        call_id, event.account, call_uuid)
            self._report_unhandled(event.account, call_id)
            return
        partner, partner_name = fields.get("Partner", ""), fields.get("PartnerName", "")
        headers = self._originate(
            channel, target,
            [("CALL_ID", call_id), ("ACCOUNT", event.account), ("CALLER", partner),
             ("CALLER_NAME", partner_name), ("CALL_UUID", call_uuid)],
            caller_id=_caller_id(partner_name, partner))
        self._enqueue(_Outgoing("Originate", headers, incoming=(event.account, call_id)))

    def _incoming_channel(self, exten: str, call_uuid: str) -> tuple[str, Headers]:
        """The Channel of an incoming call's Originate and what it runs, per ``incoming_media``."""
        context = self.settings.incoming_context
        if self.settings.incoming_media == "local":
            return _local_channel(exten, context), HOLD
        # Asterisk connects to the gateway with the call's UUID; the channel answers by
        # itself, carries the call's audio (16 kHz) and runs the dialplan.
        channel = f"AudioSocket/{self.settings.audiosocket_address}/{uuid.UUID(call_uuid)}/c(slin16)"
        return channel, (("Context", context), ("Exten", exten), ("Priority", "1"))

    def _run_events_context(self, event: Event, context: str) -> None:
        script = EVENT_SCRIPTS.get(event.kind)
        if script is None:
            return
        direction = event.fields.get("Direction", "")
        if "{Direction}" in script.extension and direction not in _DIRECTIONS:
            log.warning("%s event with Direction %r runs no extension", event.kind.value, direction)
            return
        variables = [("ACCOUNT", event.account)]
        variables += [(script.variables.get(name) or _WORD_START.sub("_", name).upper(), value)
                      for name, value in event.fields.items()]
        channel = _local_channel(script.extension.format(Direction=direction), context)
        self._enqueue(_Outgoing("Originate", self._originate(channel, HOLD, variables)))

    def _originate(self, channel: str, target: Headers, variables: list[tuple[str, str]],
                   caller_id: str | None = None) -> Headers:
        headers = [("Channel", channel), *target, ("Async", "true"),
                   ("Timeout", str(self.settings.originate_timeout_ms))]
        if caller_id is not None:
            headers.append(("CallerID", caller_id))
        headers += [self._variable(name, value) for name, value in variables]
        return tuple(headers)

    def _variable(self, name: str, text: str) -> tuple[str, str]:
        """``Variable: NAME=value``: Asterisk gets the escaped text, whatever commas or quotes it holds."""
        assignment = f"{self.settings.variable_prefix}{name}="
        if not _VARIABLE.fullmatch(assignment[:-1]):
            raise ValueError(f"invalid channel variable name {assignment[:-1]!r}")
        encode = lambda part: assignment + escape_argument(escape_value(part))  # noqa: E731
        return "Variable", fit_value(text, encode, value_budget("Variable"))

    # -- the queue ---------------------------------------------------------------------

    def _enqueue(self, item: _Outgoing) -> None:
        # Check it now: panoramisk would log an encoding error at send time and never answer.
        encode_action(item.action, item.headers)
        if len(self._outbox) >= self.settings.queue_size:
            self._drop(item)
            return
        if self._dropping:
            log.warning("AMI queue has room again after dropping %d action(s)", self._dropping)
            self._dropping = 0
        self._outbox.append(item)
        self._outbox_ready.set()

    def _drop(self, item: _Outgoing) -> None:
        self.dropped += 1
        if not self._dropping:
            log.warning("AMI queue full (%d actions wait for Asterisk): dropping new ones, counted in 'dropped'",
                        len(self._outbox))
        self._dropping += 1
        if item.incoming is not None:
            self._report_unhandled(*item.incoming)

    def _report_unhandled(self, account: str, call_id: str) -> None:
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
            except _LoginRefused as refused:
                delay = self.settings.auth_retry
                log.error("AMI login to %s as %r refused (%s); next try in %g s",
                          address, self.settings.username, refused, delay)
            except (OSError, _ConnectionLost) as lost:
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
        manager = _Manager(loop=asyncio.get_running_loop(), host=settings.host, port=settings.port,
                           username=settings.username, secret=settings.secret, events=EVENT_MASK)
        manager.register_event("OriginateResponse", self._on_originate_response)
        try:
            await _within(manager.connect(), settings.ping_timeout, "no connection")
            reply = await _within(manager.login_reply, settings.ping_timeout + _LOGIN_REFUSAL_DELAY,
                                  "no answer to Login")
            if not reply.success:
                raise _LoginRefused(reply.message or reply.response)
            self._retry_delay = settings.reconnect_min
            self.connected = True
            log.info("AMI connected to %s:%s as %r, %d action(s) queued",
                     settings.host, settings.port, settings.username, len(self._outbox))
            await self._serve(manager)
        finally:
            self.connected = False
            manager.close()
            for account, call_id in self._originating.values():
                log.warning("AMI connection lost before Asterisk said whether incoming call %s of %s "
                            "reached the dialplan", call_id, account)
            self._originating.clear()

    async def _serve(self, manager: _Manager) -> None:
        workers = [asyncio.create_task(self._pump(manager)), asyncio.create_task(self._keep_alive(manager))]
        try:
            await asyncio.wait([*workers, manager.lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        for worker in workers:
            if not worker.cancelled() and worker.exception() is not None:
                raise worker.exception()
        raise _ConnectionLost("closed by Asterisk")

    async def _pump(self, manager: _Manager) -> None:
        """Sends the queue's head, and drops it from the queue once Asterisk answered it."""
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            item = self._outbox[0]
            action = _Action(item.action, item.headers)
            if item.incoming is not None:
                # Known before sending: its OriginateResponse can come right behind the answer.
                self._originating[action.id] = item.incoming
            try:
                reply = await _send(manager, action)
            except asyncio.CancelledError:
                self._originating.pop(action.id, None)  # unanswered: it goes again after the reconnect
                raise
            self._outbox.popleft()
            if reply.success:
                self.delivered += 1
            else:
                self.rejected += 1
                log.error("Asterisk refused %s: %s", item, reply.message)
                if self._originating.pop(action.id, None) is not None:
                    self._report_unhandled(*item.incoming)

    async def _keep_alive(self, manager: _Manager) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            await _within(_send(manager, _Action("Ping")), self.settings.ping_timeout, "no answer to Ping")

    def _on_originate_response(self, _manager: Manager, message: Message) -> None:
        incoming = self._originating.pop(message.actionid, None)
        if incoming is not None and message.response != "Success":
            self._report_unhandled(*incoming)


def _send(manager: Manager, action: _Action) -> asyncio.Future[Message]:
    # One answer per action: an async Originate's OriginateResponse goes to _on_originate_response.
    return manager.send_action(action, as_list=False)


async def _within(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        raise _ConnectionLost(f"{what} within {seconds:g} s") from None


def _local_channel(exten: str, context: str) -> str:
    return f"Local/{exten}@{context}/n"


def _text(name: str, text: str) -> tuple[str, str]:
    """A header carrying Skype-side text: escaped, cut to fit Asterisk's line."""
    return name, fit_value(text, escape_value, value_budget(name))


def _caller_id(name: str, number: str) -> str:
    """``"name" <number>`` that Asterisk's CallerID parser reads back as given: quotes and
    backslashes escaped in the name, angle brackets dropped from the number, cut to fit
    Asterisk's buffer."""
    number = escape_value(number).replace("<", "").replace(">", "")
    quote = lambda text: escape_value(text).replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731
    budget = _CALLERID_BUFFER - len(f'"" <{number}>'.encode("utf-8"))
    return f'"{fit_value(name, quote, budget)}" <{number}>'
