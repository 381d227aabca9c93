"""The AudioSocket server: joins an Asterisk channel's audio with a call's media.

Asterisk connects (`AudioSocket(uuid,host:port)` or `Dial(AudioSocket/host:port/uuid)`)
and names the call by its UUID; a `CallMediaBinder` says which call that is. From then
on the connection (`port.AudioSocketConnection`) is an audio port of the media engine.
Only addresses in `permit` may connect: anyone who learnt a call's UUID (they are in
the logs) could otherwise take over its audio.
With the engine's clock, an attached connection's socket is read and written on the
engine's tick by one poller for all of them (`poller.py`), not by the event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import uuid
from time import monotonic
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from ..listener import Address, Listener, Network, Permit
from .lanes import Lanes
from .poller import SocketPoller
from .port import AudioSocketConnection, MediaCounters, MediaSettings
from .protocol import AudioSocketParser, Kind, ProtocolError, State

log = logging.getLogger(__name__)


class CallMediaBinder(Protocol):
    """The call side of the bridge."""

    def attach(self, uuid: uuid.UUID, conn: AudioSocketConnection) -> bool:
        """Take `conn` as the audio of the call bound to `uuid`; False if there is none."""

    def dtmf(self, uuid: uuid.UUID, digit: str) -> None:
        """The Asterisk caller pressed `digit`."""

    def detached(self, uuid: uuid.UUID) -> None:
        """The Asterisk side is gone (closed, hung up, broke the protocol, went idle).

        Called once per attached connection, unless the gateway ended it with `close()`.
        """


class TickHooks(Protocol):
    """The media engine's clock, as the server sees it."""

    def add_tick_hooks(
        self, before: Callable[[], Iterable[None] | None], after: Callable[[], Iterable[None] | None]
    ) -> None: ...


class _Dropped(Exception):
    """The server ends the connection because of what the peer did (or did not do)."""


class _Session(asyncio.Protocol):
    """The socket side of one connection: bytes to frames, frames to the call.

    Bytes are parsed and dispatched right in `data_received`, called by the event loop:
    at 50 messages a second per call, waking a task for every read would cost more than
    everything else the connection does. A read that is exactly one more audio message
    (most reads) goes straight to the jitter buffer; once attached and polled, the poller
    hands it there itself, and a read of several whole frames too, past this session, while
    the parser holds no partial message (`route_audio`). The session's course (UUID, then audio until either side
    ends it) is followed by a task of the server that only awaits `attached` and `finished`.
    """

    def __init__(self, server: AudioSocketServer, peer: Address) -> None:
        self._server = server
        self._peer = f"{peer[0]}:{peer[1]}"
        self._parser = AudioSocketParser()
        self._reading = True
        self.conn: AudioSocketConnection
        loop = asyncio.get_running_loop()
        self.attached: asyncio.Future[uuid.UUID] = loop.create_future()
        """The call's UUID once the binder took the connection; `_Dropped` if it never will."""
        self.finished: asyncio.Future[None] = loop.create_future()
        """Done once the audio stops: the peer closed or hung up, or the gateway closed; `_Dropped` on bad data."""
        self._peer_done: asyncio.Future[None] = loop.create_future()
        """Done once the peer sends nothing more (EOF, or the connection is gone)."""
        self._lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        server = self._server
        self.conn = AudioSocketConnection(transport, self._peer, server._media, server._lanes)
        self._server._follow(self)

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes from the transport, or a view of the poller's buffer (nothing keeps it: the audio is copied)."""
        conn = self.conn
        conn.last_activity = monotonic()
        if not self._reading:
            return  # the session is ending: what the peer still sends is dropped
        if not conn._hung_up:
            pcm = self._parser.audio_payload(data)
            if pcm is not None:
                conn.receive_audio(bytes(pcm))  # bytes of bytes is the same object
                return
        try:
            frames = self._parser.feed(data)
        except ProtocolError as error:
            self._fail(_Dropped(error))
            return
        for frame in frames:
            if conn.closed or not self._reading:
                break
            if frame.kind is Kind.UUID:
                self._attach(uuid.UUID(bytes=frame.payload))
            elif frame.kind is Kind.DTMF:
                self._server._binder.dtmf(conn.uuid, frame.payload.decode("ascii"))  # type: ignore[arg-type]
            elif frame.kind is Kind.ERROR:
                code = frame.payload.hex() or "no code"
                log.warning("AudioSocket %s (%s): Asterisk reports an error (%s)", conn.peer, conn.uuid, code)
            elif frame.kind is not Kind.HANGUP:
                if frame.kind is not conn.kind:
                    conn.use_kind(frame.kind)
                conn.receive_audio(frame.payload)
        if conn.closed or self._parser.state is State.CLOSED:
            self._finish()
        else:
            conn.route_audio(self._parser.audio_kind is not None and not self._parser.pending)

    def eof_received(self) -> bool:
        self._peer_gone(None)
        return True  # keep the socket open for the hangup message

    def connection_lost(self, exc: Exception | None) -> None:
        self._peer_gone(exc)
        if not self._lost.done():
            self._lost.set_result(None)

    async def end(self, grace: float) -> None:
        """Hang up unless the peer is gone, and close once the peer has closed too.

        Closing a socket with unread input resets it, and a reset can destroy the
        hangup message before Asterisk reads it; so what the peer still sends is read
        and dropped until it closes, for at most `grace` seconds.
        """
        self._reading = False
        self.conn.release()
        self.conn.stop_polling()
        if self._peer_done.done():
            self.conn._hung_up = True  # the peer is gone: nothing to say to it
        else:
            self.conn._hang_up()
        try:
            async with asyncio.timeout(grace):
                await self._peer_done
                self.conn._transport.close()
                await self._lost
        except TimeoutError:
            self.conn._abort()

    def _attach(self, call: uuid.UUID) -> None:
        self.conn.uuid = call
        try:
            accepted = self._server._binder.attach(call, self.conn)
        except Exception as error:  # noqa: BLE001 - the server's task logs it
            self._fail(error)
            return
        if not accepted:
            self._fail(_Dropped("no call accepts this UUID"))
            return
        log.info("AudioSocket %s attached to %s", self.conn.peer, call)
        if self._server._poller is not None:
            self.conn.poll_with(self._server._poller, self.data_received)
        self.attached.set_result(call)

    def _peer_gone(self, error: Exception | None) -> None:
        if not self._peer_done.done():
            self._peer_done.set_result(None)
        if not self._reading:
            return  # the session has already ended
        if not self.attached.done():
            reason = f"{error} before sending its UUID" if error else "closed before sending its UUID"
            self._fail(_Dropped(reason))
        else:
            if error is not None:
                log.info("AudioSocket %s (%s): %s", self.conn.peer, self.conn.uuid, error)
            self._finish()

    def _finish(self) -> None:
        self.conn.route_audio(False)
        if not self.attached.done():  # the gateway closed it first
            self._fail(_Dropped("ended before sending its UUID"))
            return
        self._reading = False
        if not self.finished.done():
            self.finished.set_result(None)

    def _fail(self, error: Exception) -> None:
        """End the session because of `error`, raised by whichever wait is on."""
        self._reading = False
        self.conn.route_audio(False)
        for future in (self.attached, self.finished):
            if not future.done():
                future.set_exception(error)
                return


class AudioSocketServer:
    """Accepts Asterisk's AudioSocket connections and hands them to a binder.

    A peer outside `permit` is refused before anything is read. A peer must send its
    UUID within `uuid_timeout` seconds. Once attached, a connection with no traffic
    either way for `idle_timeout` seconds is dropped (Asterisk's own application gives
    up after 2 s of that). Whatever a peer sends, the server answers by dropping that
    one connection, with a warning.

    With a `clock`, attached sockets are read and written on its ticks; `poll_sockets=False`
    leaves them to their transports (transports without a socket, as in `bench.audiosocket_path`).
    """

    def __init__(
        self,
        bind: str,
        port: int,
        binder: CallMediaBinder,
        *,
        permit: Sequence[Network] = (ipaddress.ip_network("127.0.0.1/32"),),
        uuid_timeout: float = 2.0,
        idle_timeout: float = 10.0,
        close_grace: float = 1.0,
        media: MediaSettings = MediaSettings(),
        clock: TickHooks | None = None,
        poll_sockets: bool = True,
    ) -> None:
        self._bind = bind
        self.port = port
        self._binder = binder
        self._uuid_timeout = uuid_timeout
        self._idle_timeout = idle_timeout
        self._close_grace = close_grace
        self._media = media
        self._listener = Listener("AudioSocket", lambda peer: _Session(self, peer), Permit(permit))
        self._lanes = Lanes()
        self._poller: SocketPoller | None = None
        if clock is not None:
            self._poller = SocketPoller() if poll_sockets else None
            clock.add_tick_hooks(self._tick_begins, self._lanes.end_tick)
        self._handlers: dict[asyncio.Task[None], AudioSocketConnection] = {}
        self._ended = MediaCounters()
        self.connections = 0
        self.rejected = 0
        """Connections the server ended because of the peer: bad data, unknown UUID, silence."""

    @property
    def refused(self) -> int:
        """Connections refused before reading: from outside `permit`."""
        return self._listener.refused

    @property
    def active(self) -> int:
        return len(self._handlers)

    @property
    def counters(self) -> MediaCounters:
        """Media counters summed over every connection so far."""
        total = self._ended
        for conn in self._handlers.values():
            total = total + conn.counters
        return total

    async def start(self) -> None:
        self._lanes.at(Kind.AUDIO_8K)  # every AudioSocket() call needs it: built now, not mid-call
        await self._listener.listen(self._bind, self.port)
        self.port = self._listener.port
        log.info("AudioSocket server listening on %s:%d", self._bind, self.port)

    async def stop(self) -> None:
        """Stop listening and end every connection as `close()` does."""
        if not self._listener.listening:
            return
        self._listener.close()
        handlers = dict(self._handlers)
        for conn in handlers.values():
            conn.close()
        if handlers:
            _, lingering = await asyncio.wait(handlers, timeout=self._close_grace)
            for task in lingering:
                handlers[task]._abort()
            await asyncio.wait(handlers)

    def _tick_begins(self) -> Iterator[None]:
        """Read what every polled socket has, then hand the engine each lane's frames."""
        if self._poller is not None:
            yield from self._poller.poll()
        yield
        self._lanes.begin_tick()
        yield

    def _follow(self, session: _Session) -> None:
        """Run the course of a new connection in a task of its own."""
        task = asyncio.get_running_loop().create_task(self._on_client(session))
        self._handlers[task] = session.conn
        self.connections += 1

    async def _on_client(self, session: _Session) -> None:
        conn = session.conn
        try:
            await self._serve(session)
        except _Dropped as reason:
            if not conn.ended_by_gateway:
                self.rejected += 1
                log.warning("AudioSocket %s (%s) dropped: %s", conn.peer, conn.uuid or "no UUID", reason)
        except Exception:
            log.exception("AudioSocket %s (%s) failed", conn.peer, conn.uuid or "no UUID")
        finally:
            await session.end(self._close_grace)
            task = asyncio.current_task()
            assert task is not None
            del self._handlers[task]
            self._ended = self._ended + conn.counters

    async def _serve(self, session: _Session) -> None:
        try:
            async with asyncio.timeout(self._uuid_timeout):
                call = await session.attached
        except TimeoutError:
            raise _Dropped(f"no UUID within {self._uuid_timeout:g} s") from None
        try:
            await self._until_finished(session)
        finally:
            if not session.conn.ended_by_gateway:
                self._binder.detached(call)
        log.info("AudioSocket %s (%s) ended", session.conn.peer, call)

    async def _until_finished(self, session: _Session) -> None:
        """Wait for the session's end; drop it once no traffic went either way for too long."""
        conn = session.conn
        while not session.finished.done():
            deadline = conn.last_activity + self._idle_timeout
            await asyncio.wait((session.finished,), timeout=max(deadline - monotonic(), 0.0))
            if not session.finished.done() and conn.last_activity + self._idle_timeout <= deadline:
                raise _Dropped(f"no traffic either way for {self._idle_timeout:g} s")
        session.finished.result()

