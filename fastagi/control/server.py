"""The admin control socket: `show …` and `action …` for the `skype-fastagi` CLI.

A Unix stream socket at `[general] control_socket`, mode 0600 from the moment it exists
(it is bound under a restrictive umask): only its owner (and root) can connect, and
anyone who can connect may run any action. At start a leftover socket file is removed
only when nothing answers on it; if a server answers, this one refuses to start.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..actions import ACTIONS
from ..actions.dispatch import Dispatcher, Outcome
from ..actions.registry import variable
from ..listener import Listener
from ..model.errors import SkypeError
from ..model.events import Event, EventBus
from ..network.driver import ScriptedUsers
from ..status import GatewayStatus
from . import views
from .history import EventHistory
from .protocol import (
    READ_CHUNK, LineDecoder, Message, ProtocolError, RemoteCall, RemoteSend, Request, RunAction, Show, action_reply, encode, error_reply,
    event_message, parse_request,
)

log = logging.getLogger("fastagi.control")

FOLLOW_BACKLOG = 1000  # events a follower may fall behind by before its stream is ended
PROBE_TIMEOUT = 1.0
BACKLOG = 100
TABLES = {"accounts": views.accounts, "calls": views.calls, "chats": views.chats}
NO_SCRIPTED_USERS = "no network here has scripted users"
SENT = {"chat": "chat message", "buddy": "buddy request", "file": "file"}


class ControlSocketInUse(OSError):
    """Another server answers on the control socket, or its path is not ours to take."""


@dataclass(frozen=True)
class Admin:
    """What the control socket may see and do: read the status and the recent events, follow events, run actions,
    drive scripted users."""

    status: GatewayStatus
    dispatcher: Dispatcher
    bus: EventBus
    history: EventHistory
    scripted: ScriptedUsers | None


class ControlServer:
    def __init__(self, path: Path, admin: Admin) -> None:
        self.admin = admin
        self.path = path
        self._followers: set[asyncio.Queue[Message]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener = Listener(
            "control", lambda peer: asyncio.StreamReaderProtocol(asyncio.StreamReader(), self._accept))
        self._unsubscribe: Callable[[], None] | None = None
        self._inode = 0

    @property
    def followers(self) -> int:
        """Event streams (`show events --follow`) open now."""
        return len(self._followers)

    async def start(self) -> None:
        sock = bind_owner_only(self.path)
        self._inode = os.stat(self.path).st_ino
        self._unsubscribe = self.admin.bus.subscribe(self._on_event)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self._listener.serve([sock], BACKLOG)
        log.info("control socket %s ready", self.path)

    async def stop(self) -> None:
        """Close the socket and every connection (followers included); remove the file."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._listener.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        try:
            if os.stat(self.path).st_ino == self._inode:  # never remove a socket someone else made since
                self.path.unlink()
        except FileNotFoundError:
            pass

    # -- events ------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if not self._followers:
            return
        record = views.event_record(event, time.time())
        for queue in list(self._followers):
            if queue.qsize() >= FOLLOW_BACKLOG:
                self._followers.discard(queue)
                queue.put_nowait(error_reply(f"stream ended: the client fell {FOLLOW_BACKLOG} events behind"))
            else:
                queue.put_nowait(event_message(record))

    # -- connections -------------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = LineDecoder()
        stream: asyncio.Queue[Message] | None = None
        try:
            while data := await reader.read(READ_CHUNK):
                for message in decoder.feed(data):
                    stream = await self._answer(message, writer)
                    if stream is not None:
                        await self._follow(stream, reader, writer)
                        return
        except ProtocolError as exc:
            log.warning("control connection dropped: %s", exc)
            writer.write(encode(error_reply(str(exc))))
        except OSError as exc:
            log.debug("control connection lost: %s", exc)
        finally:
            if stream is not None:
                self._followers.discard(stream)
            writer.close()

    async def _answer(self, message: Message, writer: asyncio.StreamWriter) -> asyncio.Queue[Message] | None:
        """Reply to one request; for `show events --follow`, the queue its new events arrive on."""
        stream: asyncio.Queue[Message] | None = None
        try:
            request = parse_request(message)
            reply = await self._reply(request)
            if isinstance(request, Show) and request.follow:
                # `_reply` did not suspend: no event can fall between its snapshot and this
                stream = asyncio.Queue()
                self._followers.add(stream)
        except ProtocolError as exc:
            reply = error_reply(str(exc))
        except Exception as exc:  # noqa: BLE001 - the client gets an answer, the log the details
            log.exception("control request failed")
            reply = error_reply(f"internal error: {type(exc).__name__}")
        writer.write(encode(reply))
        await writer.drain()
        return stream

    async def _reply(self, request: Request) -> Message:
        if isinstance(request, RunAction):
            dispatcher = self.admin.dispatcher
            outcome = await dispatcher.run(request.name, request.arguments)
            return action_reply(outcome.result, outcome.error.text if outcome.error else "", dispatcher.variables(outcome))
        if isinstance(request, RemoteCall):
            return self._remote_call(request)
        if isinstance(request, RemoteSend):
            return await self._remote_send(request)
        if request.what == "events":
            return views.events(self.admin.history.records()).to_message()
        if request.what == "history":
            return views.history(self.admin.status, request.account, request.since, request.until,
                                 request.limit).to_message()
        return TABLES[request.what](self.admin.status).to_message()

    def _remote_call(self, request: RemoteCall) -> Message:
        """A scripted user calls an account; the reply is what `call start` sets, from the account's side."""
        scripted = self.admin.scripted
        if scripted is None:
            return error_reply(NO_SCRIPTED_USERS)
        try:
            call_id = scripted.remote_call(request.user, request.account)
        except SkypeError as exc:
            return self._scripted_result(exc, dict.fromkeys(ACTIONS["call-start"].returns, ""))
        log.info("admin: %s calls %s (call %d)", request.user, request.account, call_id)
        uuid = next((c.uuid for c in self.admin.status.calls() if c.id == call_id), "")
        return self._scripted_result(None, {"call-id": str(call_id), "call-uuid": uuid})

    async def _remote_send(self, request: RemoteSend) -> Message:
        """A scripted user sends an account a chat message (the reply names the chat), a buddy request or a file."""
        scripted = self.admin.scripted
        if scripted is None:
            return error_reply(NO_SCRIPTED_USERS)
        returned: dict[str, str] = {}
        try:
            if request.kind == "chat":
                returned["chat-name"] = scripted.remote_message(request.user, request.account, request.text)
            elif request.kind == "buddy":
                scripted.remote_buddy_request(request.user, request.account, request.text)
            else:
                await scripted.remote_file(request.user, request.account, request.file_name, io.BytesIO(request.data))
        except SkypeError as exc:
            return self._scripted_result(exc, dict.fromkeys(returned, ""))
        log.info("admin: %s sends %s a %s", request.user, request.account, SENT[request.kind])
        return self._scripted_result(None, returned)

    def _scripted_result(self, error: SkypeError | None, returned: dict[str, str]) -> Message:
        """The result variables of an action: status, error, error text, then what it returns."""
        dispatcher = self.admin.dispatcher
        variables = dispatcher.variables(Outcome(None, error=error))
        variables.update({variable(dispatcher.prefix, name): value for name, value in returned.items()})
        return action_reply(error.code if error else "SUCCESS", error.text if error else "", variables)

    async def _follow(self, stream: asyncio.Queue[Message], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Send `stream` until the client closes, the server stops, or the client lags."""
        closed = asyncio.ensure_future(_until_eof(reader))
        next_message: asyncio.Future[Message] | None = None
        try:
            while True:
                next_message = asyncio.ensure_future(stream.get())
                await asyncio.wait((next_message, closed), return_when=asyncio.FIRST_COMPLETED)
                if not next_message.done():
                    return
                message = next_message.result()
                writer.write(encode(message))
                await writer.drain()
                if message.get("ok") is False:
                    return
        finally:
            closed.cancel()
            if next_message is not None:
                next_message.cancel()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Read and drop what a following client sends, until it closes (or its connection breaks)."""
    try:
        while await reader.read(READ_CHUNK):
            pass
    except OSError:
        pass


def bind_owner_only(path: Path) -> socket.socket:
    """A Unix stream socket bound at `path`, mode 0600, taking over a stale socket file."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            _bind_private(sock, path)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            _remove_stale(path)
            _bind_private(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_private(sock: socket.socket, path: Path) -> None:
    # The umask is process-wide: for this instant, files others create are only more private.
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(previous)


def _remove_stale(path: Path) -> None:
    """Remove the socket file at `path` when nothing answers on it; refuse anything else."""
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise ControlSocketInUse(f"control socket {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale control socket %s", path)
        path.unlink(missing_ok=True)
        return
    except OSError as exc:
        raise ControlSocketInUse(f"control socket {path}: cannot tell whether a server answers ({exc})") from None
    finally:
        probe.close()
    raise ControlSocketInUse(f"another server answers on control socket {path}")
