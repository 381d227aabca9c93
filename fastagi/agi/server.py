"""The FastAGI TCP server: access control, limits and timeouts around each session.

Everything protocol-related lives in `protocol.py`; this module only moves bytes,
enforces `max_connections`, the environment deadline and the per-session time cap (its
`Listener` enforces `permit` and weathers running out of descriptors), and keeps
the running connections for a graceful stop. Each connection is an `asyncio.Protocol`
feeding `AgiConnection`: a peer that never completes its environment costs a buffer and
a deadline, no task; a task runs only once a whole environment has arrived. Both time
limits are kept by `Deadlines`, one loop timer each, not a timer per connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

from ..listener import Listener, Network, Permit, warn_if_short_of_descriptors
from .deadlines import Deadlines
from .protocol import AgiConnection, AgiProtocolError, Environment, Limits, Reply
from .session import AgiSession, SessionClosed

log = logging.getLogger("fastagi.agi")

MAKE_ROOM = 64  # out of descriptors: silent connections closed at once to let others in
SILENT_FOR = 0.5  # seconds without a whole environment after which a connection may be closed for that; Asterisk sends
                  # its environment at once

SessionHandler = Callable[[AgiSession], Awaitable[None]]


@dataclass(frozen=True)
class AgiServerSettings:
    bind: str = "127.0.0.1"
    port: int = 4573
    permit: Sequence[Network] = field(default_factory=lambda: (ipaddress.ip_network("127.0.0.1/32"),))
    environment_timeout: float = 5.0
    session_timeout: float = 60.0
    max_connections: int = 2048
    limits: Limits = field(default_factory=Limits)


class AgiServer:
    def __init__(self, settings: AgiServerSettings, handler: SessionHandler) -> None:
        self.settings = settings
        self.handler = handler
        self._listener = Listener("AGI", lambda peer: _AgiProtocol(self, peer[0]), Permit(settings.permit), self.make_room)
        self._connections: set[_AgiProtocol] = set()
        self.environment_deadlines: Deadlines[_AgiProtocol] = Deadlines(
            settings.environment_timeout, lambda connection: connection.environment_late()
        )
        self.session_deadlines: Deadlines[_AgiProtocol] = Deadlines(
            settings.session_timeout, lambda connection: connection.session_late()
        )
        self._over_capacity = 0

    @property
    def port(self) -> int:
        return self._listener.port

    @property
    def refused(self) -> int:
        """Connections refused: from outside `permit`, or past `max_connections`."""
        return self._listener.refused + self._over_capacity

    @property
    def active(self) -> int:
        """Open connections: sessions running and peers still sending their environment."""
        return len(self._connections)

    async def start(self) -> None:
        warn_if_short_of_descriptors(self.settings.max_connections)
        await self._listener.listen(self.settings.bind, self.settings.port, backlog=1024)
        log.info("FastAGI listening on %s:%d", self.settings.bind, self.port)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, drop peers still sending an environment, let sessions finish for up to `grace` seconds."""
        if not self._listener.listening:
            return
        self._listener.close()
        tasks = set()
        for connection in list(self._connections):
            if connection.task is None:
                connection.drop()
            elif not connection.task.done():
                tasks.add(connection.task)
        if tasks:
            log.info("waiting up to %.1fs for %d AGI session(s)", grace, len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self.environment_deadlines.close()
        self.session_deadlines.close()

    def admit(self, connection: _AgiProtocol, address: str) -> bool:
        if len(self._connections) >= self.settings.max_connections:
            self._over_capacity += 1
            log.warning("refused AGI connection from %s: %d sessions open", address, len(self._connections))
            return False
        self._connections.add(connection)
        return True

    def make_room(self) -> int:
        """Out of descriptors: close the oldest connections silent for `SILENT_FOR` s (up to `MAKE_ROOM`); how many.

        Waiting connections are taken in turn: behind a flood of silent ones, Asterisk's would
        wait for `environment_timeout` to reap them, many times over.
        """
        moment = asyncio.get_running_loop().time() - SILENT_FOR
        silent = self.environment_deadlines.started_before(moment, MAKE_ROOM)
        for connection in silent:
            connection.make_room()
        return len(silent)

    def forget(self, connection: _AgiProtocol) -> None:
        self._connections.discard(connection)


class _AgiProtocol(asyncio.Protocol):
    """One FastAGI connection: bytes into `AgiConnection`, its events to the session."""

    def __init__(self, server: AgiServer, peer: str) -> None:
        self.server = server
        self.connection = AgiConnection(server.settings.limits)
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.session: AgiSession | None = None
        self.task: asyncio.Task[None] | None = None
        self._timed_out = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.server.admit(self, self.peer):
            transport.abort()
            return
        self.server.environment_deadlines.start(self)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.connection.receive_data(data)
        except AgiProtocolError as exc:
            log.warning("AGI protocol error from %s: %s", self.peer, exc)
            self.drop()
            return
        for event in events:
            if isinstance(event, Reply):
                assert self.session is not None  # the protocol core allows no reply before a command
                self.session.reply(event)
            elif isinstance(event, Environment):
                self._start(event)
            # a Hangup needs nothing: the result variables are dead-safe commands

    def eof_received(self) -> bool:
        self.connection.receive_data(b"")
        if self.session is None:
            log.warning("AGI peer %s closed before sending its whole environment", self.peer)
        return False  # nothing more can be asked of a peer that closed: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        _break_reference_cycle(self.transport)
        self.server.environment_deadlines.clear(self)
        if self.session is not None:
            self.session.closed()
        if exc is not None and self.task is None:
            log.info("AGI connection from %s lost: %s", self.peer, exc)
        self.server.forget(self)

    def drop(self) -> None:
        self.server.environment_deadlines.clear(self)
        if self.transport is not None:
            self.transport.abort()

    def make_room(self) -> None:
        log.warning("AGI peer %s sent no complete environment and was closed to make room: out of file descriptors",
                    self.peer)
        self.drop()

    def environment_late(self) -> None:
        log.warning("AGI peer %s sent no complete environment within %.1fs", self.peer, self.server.settings.environment_timeout)
        self.drop()

    def session_late(self) -> None:
        assert self.task is not None
        self._timed_out = True
        self.task.cancel()

    def _start(self, environment: Environment) -> None:
        self.server.environment_deadlines.clear(self)
        assert self.transport is not None
        self.session = AgiSession(self.transport, self.connection, environment)
        self.task = asyncio.get_running_loop().create_task(self._run(self.session))
        self.server.session_deadlines.start(self)

    async def _run(self, session: AgiSession) -> None:
        try:
            await self.server.handler(session)
        except asyncio.CancelledError:
            if not self._timed_out:
                raise  # the server is stopping
            log.warning("AGI session %s from %s exceeded %.1fs and was closed",
                        session.caller, self.peer, self.server.settings.session_timeout)
        except SessionClosed:
            pass  # the session's line says so
        except (ConnectionError, OSError) as exc:
            log.info("AGI connection from %s lost: %s", self.peer, exc)
        except AgiProtocolError as exc:
            log.warning("AGI protocol error from %s: %s", self.peer, exc)
        except Exception:  # noqa: BLE001 - one session's bug must never take the server down
            log.exception("AGI session from %s failed", self.peer)
        finally:
            self.server.session_deadlines.clear(self)
            assert self.transport is not None
            self.transport.close()


def _break_reference_cycle(transport: asyncio.BaseTransport | None) -> None:
    """Let a closed connection be freed at once, by reference counting.

    CPython's selector transport keeps a bound method of itself (`_read_ready_cb`): left
    alone, every closed connection is cyclic garbage that only full collections free,
    and under load those stall the loop for 10-20 ms. uvloop's transports have no such cycle.
    """
    if hasattr(transport, "_read_ready_cb"):
        transport._read_ready_cb = None  # type: ignore[union-attr]
