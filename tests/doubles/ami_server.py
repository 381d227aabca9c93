"""Asterisk's manager interface (AMI), as captured in captures/ami-sessions.txt and read
from Asterisk's main/manager.c.

It greets with ``Asterisk Call Manager/11.0.0``, reads actions the way Asterisk does
(lines end at CR LF or a bare LF, a line over 1024 bytes fails the whole action, an empty
line ends an action), and answers with Asterisk's own texts, ActionID echoed:

- ``Login``: ``Authentication accepted``, or ``Authentication failed`` and the socket
  closed (real Asterisk first sleeps 1 s; this double answers at once). ``FullyBooted``
  follows only when the login's ``Events:`` mask includes ``system`` (``on``, no mask, or a
  list naming ``system`` or ``all``); class names are case-sensitive, numeric masks are
  not modelled.
- any other action before login: ``Permission denied``.
- ``Ping``: ``Ping: Pong`` and a ``Timestamp``.
- ``UserEvent``: ``Event Sent``; every header line but ``Action:`` and ``UserEvent:`` is
  copied as it is into ``Event: UserEvent``, sent to every session whose mask has ``user``.
- ``Originate``: with ``Async: true``, ``Originate successfully queued``, then (to every
  session whose mask has ``call``) a ``Newchannel`` event when it succeeds and the
  ``OriginateResponse`` event, ``Response: Success`` or ``Failure`` per
  ``originate_response``.
- ``PlayDTMF`` (``apps/app_senddtmf.c``): on a channel named in ``channels``, ``DTMF
  successfully queued``; with ``Receive:`` true the digit is received on the channel (the
  dialplan's ``WaitExten()`` hears it), otherwise it is sent out of the channel (an
  AudioSocket channel writes it to its connection). ``Channel not found`` for another
  channel, ``No digit specified`` without a digit.
- an action named in ``denied``: ``Permission denied`` (a missing write permission).
- an unknown action: ``Invalid/unknown command: ...``.

It records every action it runs (headers in order, and the raw bytes), and can drop its
connections, go half-open (keep the sockets but read and answer nothing, like a peer that
vanished), freeze like Asterisk under SIGSTOP (read nothing, greet no new connection, while
the kernel keeps taking bytes) and resume (read what waited in each socket: Linux hands
over bytes it acknowledged even after the peer's reset, then ECONNRESET, counted in
`resets`; Asterisk 22 was seen to end such a session unread, so this is the worse case), stop and start again on the same port, and write raw
bytes to its clients. It
has its own framing code, so it does not share mistakes with the code under test.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Callable

GREETING = b"Asterisk Call Manager/11.0.0\r\n"
MAX_LINE = 1024
ALL_CLASSES = frozenset({
    "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf", "reporting",
    "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security", "message",
})
_TRUE = {"yes", "true", "y", "t", "1", "on"}
_FALSE = {"no", "false", "n", "f", "0", "off"}


@dataclass(frozen=True)
class Received:
    """One action as read: header lines split at the first colon, blanks after it skipped."""

    headers: list[tuple[str, str]]
    lines: list[bytes]
    raw: bytes

    def get(self, name: str, default: str = "") -> str:
        """The first value of `name`, compared case-insensitively (``astman_get_header``)."""
        return next((value for key, value in self.headers if key.lower() == name.lower()), default)

    @property
    def action(self) -> str:
        return self.get("Action")

    def variables(self) -> list[tuple[str, str]]:
        """The channel variables Asterisk makes of the ``Variable:`` headers."""
        found = []
        for key, value in self.headers:
            if key.lower() == "variable":
                for item in split_arguments(value.lstrip()):
                    name, sep, val = item.partition("=")
                    if sep and name:
                        found.append((name, val))
        return found


def split_arguments(text: str) -> list[str]:
    """Asterisk's ``AST_STANDARD_APP_ARGS``: split at commas outside quotes, parentheses
    and brackets; quotes are removed, a backslash makes the next character literal."""
    args, current = [], []
    paren = bracket = 0
    quote = False
    chars = iter(text)
    for char in chars:
        if char == "(":
            paren += 1
        elif char == ")":
            paren = max(paren - 1, 0)
        elif char == "[":
            bracket += 1
        elif char == "]":
            bracket = max(bracket - 1, 0)
        elif char == '"':
            quote = not quote
            continue
        elif char == "\\":
            char = next(chars, "")
        elif char == "," and not (paren or quote or bracket):
            args.append("".join(current))
            current = []
            continue
        current.append(char)
    args.append("".join(current))
    return args


def event_classes(mask: str) -> frozenset[str]:
    """The event classes a login's ``Events:`` header asks for (``strings_to_mask``)."""
    if not mask.strip() or mask.lower() in _TRUE:
        return ALL_CLASSES
    if mask.lower() in _FALSE:
        return frozenset()
    names = {name.strip() for name in mask.split(",")}
    return ALL_CLASSES if "all" in names else ALL_CLASSES & names


def parse_caller_id(value: str) -> tuple[str, str]:
    """Name and number of ``"name" <number>`` (``ast_callerid_parse``: the last ``<``
    starts the number; the name loses its surrounding quotes, a backslash escapes)."""
    name, bracket, number = value.rpartition("<")
    if not bracket:
        return value, ""
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    return re.sub(r"\\(.)", r"\1", name), number.partition(">")[0]


def frame(*lines: tuple[str, str]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in lines) + b"\r\n"


@dataclass(eq=False)
class Session:
    writer: asyncio.StreamWriter
    authenticated: bool = False
    classes: frozenset[str] = frozenset()
    half_open: bool = False

    def send(self, data: bytes) -> None:
        if not self.half_open and not self.writer.is_closing():
            self.writer.write(data)


@dataclass
class Channel:
    """A channel of the PBX, as ``PlayDTMF`` finds it."""

    send_dtmf: Callable[[str], None] = lambda digit: None
    """What sending a digit out of the channel does (an AudioSocket channel: a DTMF message)."""
    received_dtmf: list[str] = field(default_factory=list)
    """Digits received on the channel, as its dialplan reads them."""


@dataclass
class AmiServer:
    username: str = "skype"
    secret: str = "skypesecret"
    originate_response: str = "Success"
    denied: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    channels: dict[str, Channel] = field(default_factory=dict)
    port: int = 0
    _server: asyncio.Server | None = None
    _sessions: set[Session] = field(default_factory=set)
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _channels: itertools.count = field(default_factory=itertools.count)
    _running: asyncio.Event = field(default_factory=asyncio.Event)
    resets: int = 0
    """Connections whose client reset them (ECONNRESET)."""

    async def start(self) -> None:
        self._running.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        self.drop()
        await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def drop(self) -> None:
        """Close every client connection."""
        for session in self._sessions:
            session.writer.close()

    def go_half_open(self) -> None:
        """Existing connections stay open but nothing on them is read or answered."""
        for session in self._sessions:
            session.half_open = True

    def freeze(self) -> None:
        """Read nothing and greet no new connection; the sockets stay open."""
        self._running.clear()
        for session in self._sessions:
            session.writer.transport.pause_reading()

    def resume(self) -> None:
        for session in self._sessions:
            session.writer.transport.resume_reading()
        self._running.set()

    def send_raw(self, data: bytes) -> None:
        for session in self._sessions:
            session.send(data)

    def actions(self, name: str) -> list[Received]:
        return [action for action in self.received if action.action.lower() == name.lower()]

    @property
    def connections(self) -> int:
        return len(self._sessions)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        session = Session(writer)
        self._sessions.add(session)
        try:
            await self._running.wait()
            writer.write(GREETING)
            while (message := await self._read_action(reader)) is not None:
                if not session.half_open:
                    self._handle(session, *message)
        except ConnectionResetError:
            self.resets += 1
        except ConnectionError:
            pass
        finally:
            self._sessions.discard(session)
            self._tasks.discard(task)
            writer.close()

    async def _read_action(self, reader: asyncio.StreamReader) -> tuple[list[bytes], bytes, bool] | None:
        """The lines of the next action, its raw bytes, whether a line was too long; None at EOF."""
        lines, raw, too_long = [], b"", False
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return None
            raw += line
            if len(line) > MAX_LINE:
                too_long = True
                continue
            text = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if not text:
                return lines, raw, too_long
            lines.append(text)

    def _handle(self, session: Session, lines: list[bytes], raw: bytes, too_long: bool) -> None:
        headers = []
        for line in lines:
            name, _, value = line.decode("utf-8", "replace").partition(":")
            headers.append((name, value.lstrip(" \t")))
        action = Received(headers, lines, raw)
        if too_long:
            self._reply(session, action, "Error", "Failed to parse message: line too long")
            return
        self.received.append(action)
        name = action.action.lower()
        if not name:
            self._reply(session, action, "Error", "Missing action in request")
        elif not session.authenticated and name not in ("login", "logoff", "challenge"):
            self._reply(session, action, "Error", "Permission denied")
        elif name in {denied.lower() for denied in self.denied}:
            self._reply(session, action, "Error", "Permission denied")
        elif handler := getattr(self, f"_action_{name}", None):
            handler(session, action)
        else:
            self._reply(session, action, "Error", f"Invalid/unknown command: {action.action}. "
                                                  "Use Action: ListCommands to show available commands.")

    @staticmethod
    def _reply(session: Session, action: Received, response: str, *lines: tuple[str, str] | str) -> None:
        head = [("Response", response)]
        if action.get("ActionID"):
            head.append(("ActionID", action.get("ActionID")))
        session.send(frame(*head, *(("Message", line) if isinstance(line, str) else line for line in lines)))

    def _action_login(self, session: Session, action: Received) -> None:
        if (action.get("Username"), action.get("Secret")) != (self.username, self.secret):
            self._reply(session, action, "Error", "Authentication failed")
            session.writer.close()
            return
        session.authenticated = True
        session.classes = event_classes(action.get("Events"))
        self._reply(session, action, "Success", "Authentication accepted")
        if "system" in session.classes:
            session.send(frame(("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", "0"),
                               ("LastReload", "0"), ("Status", "Fully Booted")))

    def _action_ping(self, session: Session, action: Received) -> None:
        self._reply(session, action, "Success", ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}"))

    def _action_userevent(self, session: Session, action: Received) -> None:
        self._reply(session, action, "Success", "Event Sent")
        copied = [line for line in action.lines if not line.lower().startswith((b"action:", b"userevent:"))]
        event = b"".join(line + b"\r\n" for line in [
            b"Event: UserEvent", b"Privilege: user,all", b"UserEvent: " + action.get("UserEvent").encode(), *copied])
        self._broadcast("user", event + b"\r\n")

    def _action_playdtmf(self, session: Session, action: Received) -> None:
        channel = self.channels.get(action.get("Channel"))
        digit = action.get("Digit")[:1]
        if channel is None:
            self._reply(session, action, "Error", "Channel not found")
        elif not digit:
            self._reply(session, action, "Error", "No digit specified")
        else:
            if action.get("Receive").lower() in _TRUE:
                channel.received_dtmf.append(digit)
            else:
                channel.send_dtmf(digit)
            self._reply(session, action, "Success", "DTMF successfully queued")

    def _action_originate(self, session: Session, action: Received) -> None:
        channel = action.get("Channel")
        if not channel:
            self._reply(session, action, "Error", "Channel not specified")
        elif "/" not in channel:
            self._reply(session, action, "Error", "Invalid channel")
        elif action.get("Async").lower() not in _TRUE:
            if self.originate_response == "Success":
                self._reply(session, action, "Success", "Originate successfully queued")
            else:
                self._reply(session, action, "Error", "Originate failed")
        else:
            self._reply(session, action, "Success", "Originate successfully queued")
            self._originate_response(action)

    def _originate_response(self, action: Received) -> None:
        succeeded = self.originate_response == "Success"
        tech, _, data = action.get("Channel").partition("/")
        name = f"{tech}/{data.split('/')[0]}-{next(self._channels):08x};1" if succeeded else action.get("Channel")
        caller_name, caller_num = parse_caller_id(action.get("CallerID"))
        if succeeded:
            self._broadcast("call", frame(("Event", "Newchannel"), ("Privilege", "call,all"), ("Channel", name),
                                          ("ChannelState", "0"), ("ChannelStateDesc", "Down")))
        target = [("Application", action.get("Application")), ("Data", action.get("Data"))]
        if not action.get("Application"):
            target = [("Context", action.get("Context")), ("Exten", action.get("Exten"))]
        self._broadcast("call", frame(
            ("Event", "OriginateResponse"), ("Privilege", "call,all"),
            *([("ActionID", action.get("ActionID"))] if action.get("ActionID") else []),
            ("Response", self.originate_response), ("Channel", name), *target,
            ("Reason", "4" if succeeded else "0"),
            ("Uniqueid", f"{time.time():.0f}.{next(self._channels)}" if succeeded else "<unknown>"),
            ("CallerIDNum", caller_num or "<unknown>"),
            ("CallerIDName", caller_name or "<unknown>"),
        ))

    def _broadcast(self, event_class: str, data: bytes) -> None:
        for session in self._sessions:
            if session.authenticated and event_class in session.classes:
                session.send(data)
