"""The AudioSocket server: joins an Asterisk channel's audio with a call's media.

Asterisk connects (`AudioSocket(uuid,host:port)` or `Dial(AudioSocket/host:port/uuid)`)
and names the call by its UUID; a `CallMediaBinder` says which call that is. From then
on the connection is an audio port of the media engine: `read_frame` is what the
Asterisk caller says, `write_frame` what they hear, both 20 ms frames at `ENGINE_RATE`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import astuple, dataclass
from typing import Protocol

from fastagi.audiosocket.codec import (
    AUDIO_RATES,
    AudioSocketParser,
    Frame,
    Kind,
    ProtocolError,
    State,
    encode_audio,
    encode_hangup,
    pcm_bytes,
)
from fastagi.audiosocket.jitter import JitterBuffer
from fastagi.audiosocket.resample import FrameConverter
from fastagi.media.port import ENGINE_RATE, FRAME_BYTES, FRAME_MS, SILENCE

log = logging.getLogger(__name__)

READ_SIZE = 65536


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


@dataclass
class MediaCounters:
    frames_in: int = 0
    frames_out: int = 0
    dropped_in: int = 0
    """Audio from Asterisk thrown away because the jitter buffer was full."""
    dropped_out: int = 0
    """Frames for Asterisk thrown away because the socket was not draining."""
    underruns: int = 0
    """Times the jitter buffer ran dry and the engine got silence."""

    def __add__(self, other: MediaCounters) -> MediaCounters:
        return MediaCounters(*(a + b for a, b in zip(astuple(self), astuple(other))))


@dataclass(frozen=True)
class MediaSettings:
    jitter_target_frames: int = 2
    jitter_max_frames: int = 10
    write_backlog_frames: int = 10
    """Unsent frames allowed in the socket's buffer before new ones are dropped."""


class AudioSocketConnection:
    """One Asterisk channel's audio, as an audio port of the media engine.

    The rate is the one of the first audio frame Asterisk sends; until then, and for
    good if it sends none, it is 8 kHz, the only rate of the AudioSocket() application.
    """

    def __init__(self, writer: asyncio.StreamWriter, peer: str, settings: MediaSettings) -> None:
        self.peer = peer
        self.uuid: uuid.UUID | None = None
        self.ended_by_gateway = False
        self._writer = writer
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self.last_activity = self._loop.time()
        """Loop time of the last bytes received or audio sent."""
        self._frames_in = 0
        self._frames_out = 0
        self._dropped_out = 0
        self._hung_up = False
        self._use_kind(Kind.AUDIO_8K)

    @property
    def rate(self) -> int:
        return AUDIO_RATES[self._kind]

    @property
    def counters(self) -> MediaCounters:
        return MediaCounters(
            frames_in=self._frames_in,
            frames_out=self._frames_out,
            dropped_in=self._jitter.dropped,
            dropped_out=self._dropped_out,
            underruns=self._jitter.underruns,
        )

    @property
    def closed(self) -> bool:
        """True once either side ended the session; audio no longer moves."""
        return self._hung_up or self._writer.transport.is_closing()

    def read_frame(self) -> bytes:
        """What the Asterisk caller said during this tick: FRAME_BYTES at ENGINE_RATE."""
        if self.closed:
            return SILENCE
        frame = self._jitter.get()
        return self._to_engine.convert(frame) if self._to_engine else frame

    def write_frame(self, frame: bytes) -> None:
        """What the Asterisk caller hears during this tick; dropped rather than queued."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"frame of {len(frame)} bytes, expected {FRAME_BYTES}")
        if self.closed:
            return
        pcm = self._to_asterisk.convert(frame) if self._to_asterisk else frame
        if self._writer.transport.get_write_buffer_size() > self._backlog_limit:
            self._dropped_out += 1
            return
        self._writer.write(encode_audio(self._kind, pcm))
        self._frames_out += 1
        self.last_activity = self._loop.time()

    # The names of fastagi.media.port.AudioPort.
    pull = read_frame
    push = write_frame

    def close(self) -> None:
        """End the session from the gateway's side: hangup message, then close."""
        self.ended_by_gateway = True
        self._hang_up()

    def _hang_up(self) -> None:
        """Send the hangup message and half-close; abort if the peer is not reading."""
        if self.closed:
            return
        self._hung_up = True
        if self._writer.transport.get_write_buffer_size() > self._backlog_limit:
            self._abort()
            return
        try:
            self._writer.write(encode_hangup())
            self._writer.write_eof()
        except OSError:  # the peer reset the connection meanwhile
            self._abort()

    async def _end(self, reader: asyncio.StreamReader, grace: float) -> None:
        """Hang up unless the peer is gone, and close once the peer has closed too.

        Closing a socket with unread input resets it, and a reset can destroy the
        hangup message before Asterisk reads it; so what the peer still sends is read
        and dropped until it closes, for at most `grace` seconds.
        """
        if reader.at_eof():
            self._hung_up = True  # the peer is gone: nothing to say to it
        else:
            self._hang_up()
        try:
            async with asyncio.timeout(grace):
                while await reader.read(READ_SIZE):
                    pass
                self._writer.close()
                await self._writer.wait_closed()
        except (TimeoutError, OSError):
            self._abort()

    def _abort(self) -> None:
        self._hung_up = True
        self._writer.transport.abort()

    def receive_audio(self, frame: Frame) -> None:
        if frame.kind is not self._kind:
            self._use_kind(frame.kind)
        self._jitter.put(frame.payload)
        self._frames_in += 1

    def _use_kind(self, kind: Kind) -> None:
        """Set up the media path for a rate; only ever before audio flowed in."""
        rate = AUDIO_RATES[kind]
        self._kind = kind
        self._jitter = JitterBuffer(
            pcm_bytes(rate, FRAME_MS), self._settings.jitter_target_frames, self._settings.jitter_max_frames
        )
        same = rate == ENGINE_RATE
        self._to_engine = None if same else FrameConverter(rate, ENGINE_RATE, FRAME_MS)
        self._to_asterisk = None if same else FrameConverter(ENGINE_RATE, rate, FRAME_MS)
        self._backlog_limit = self._settings.write_backlog_frames * (pcm_bytes(rate, FRAME_MS) + 3)


class _Dropped(Exception):
    """The server ends the connection because of what the peer did (or did not do)."""


class AudioSocketServer:
    """Accepts Asterisk's AudioSocket connections and hands them to a binder.

    A peer must send its UUID within `uuid_timeout` seconds. Once attached, a
    connection with no traffic either way for `idle_timeout` seconds is dropped
    (Asterisk's own application gives up after 2 s of that). Whatever a peer sends,
    the server answers by dropping that one connection, with a warning.
    """

    def __init__(
        self,
        bind: str,
        port: int,
        binder: CallMediaBinder,
        *,
        uuid_timeout: float = 2.0,
        idle_timeout: float = 10.0,
        close_grace: float = 1.0,
        media: MediaSettings = MediaSettings(),
    ) -> None:
        self._bind = bind
        self.port = port
        self._binder = binder
        self._uuid_timeout = uuid_timeout
        self._idle_timeout = idle_timeout
        self._close_grace = close_grace
        self._media = media
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[None], AudioSocketConnection] = {}
        self._ended = MediaCounters()
        self.connections = 0
        self.rejected = 0
        """Connections the server ended because of the peer: bad data, unknown UUID, silence."""

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
        self._server = await asyncio.start_server(self._on_client, self._bind, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("AudioSocket server listening on %s:%d", self._bind, self.port)

    async def stop(self) -> None:
        """Stop listening and end every connection as `close()` does."""
        if self._server is None:
            return
        self._server.close()
        handlers = dict(self._handlers)
        for conn in handlers.values():
            conn.close()
        if handlers:
            _, lingering = await asyncio.wait(handlers, timeout=self._close_grace)
            for task in lingering:
                handlers[task]._abort()
            await asyncio.wait(handlers)
        await self._server.wait_closed()
        self._server = None

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = AudioSocketConnection(writer, _peer_name(writer), self._media)
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = conn
        self.connections += 1
        try:
            await self._serve(reader, conn)
        except _Dropped as reason:
            if not conn.ended_by_gateway:
                self.rejected += 1
                log.warning("AudioSocket %s (%s) dropped: %s", conn.peer, conn.uuid or "no UUID", reason)
        except Exception:
            log.exception("AudioSocket %s (%s) failed", conn.peer, conn.uuid or "no UUID")
        finally:
            await conn._end(reader, self._close_grace)
            del self._handlers[task]
            self._ended = self._ended + conn.counters

    async def _serve(self, reader: asyncio.StreamReader, conn: AudioSocketConnection) -> None:
        parser = AudioSocketParser()
        frames = await self._read_uuid(reader, parser)
        call = conn.uuid = uuid.UUID(bytes=frames[0].payload)
        if not self._binder.attach(call, conn):
            raise _Dropped("no call accepts this UUID")
        log.info("AudioSocket %s attached to %s", conn.peer, call)
        try:
            self._dispatch(conn, frames[1:])
            while parser.state is State.OPEN:
                data = await self._read_live(reader, conn)
                if not data or conn.closed:
                    break
                self._dispatch(conn, self._parse(parser, data))
        finally:
            if not conn.ended_by_gateway:
                self._binder.detached(call)
        log.info("AudioSocket %s (%s) ended", conn.peer, call)

    async def _read_uuid(self, reader: asyncio.StreamReader, parser: AudioSocketParser) -> list[Frame]:
        frames: list[Frame] = []
        try:
            async with asyncio.timeout(self._uuid_timeout):
                while parser.state is State.AWAIT_UUID:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        raise _Dropped("closed before sending its UUID")
                    frames = self._parse(parser, data)
        except TimeoutError:
            raise _Dropped(f"no UUID within {self._uuid_timeout:g} s") from None
        except ConnectionError as error:
            raise _Dropped(f"{error} before sending its UUID") from None
        return frames

    async def _read_live(self, reader: asyncio.StreamReader, conn: AudioSocketConnection) -> bytes:
        """The next bytes from Asterisk; b"" once it closed or the gateway did."""
        while True:
            deadline = conn.last_activity + self._idle_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    data = await reader.read(READ_SIZE)
                conn.last_activity = asyncio.get_running_loop().time()
                return data
            except TimeoutError:
                if conn.last_activity + self._idle_timeout <= deadline:
                    raise _Dropped(f"no traffic either way for {self._idle_timeout:g} s") from None
            except ConnectionError as error:
                log.info("AudioSocket %s (%s): %s", conn.peer, conn.uuid, error)
                return b""

    @staticmethod
    def _parse(parser: AudioSocketParser, data: bytes) -> list[Frame]:
        try:
            return parser.feed(data)
        except ProtocolError as error:
            raise _Dropped(error) from None

    def _dispatch(self, conn: AudioSocketConnection, frames: list[Frame]) -> None:
        assert conn.uuid is not None
        for frame in frames:
            if conn.closed:
                return
            if frame.kind in AUDIO_RATES:
                conn.receive_audio(frame)
            elif frame.kind is Kind.DTMF:
                self._binder.dtmf(conn.uuid, frame.payload.decode("ascii"))
            elif frame.kind is Kind.ERROR:
                code = frame.payload.hex() or "no code"
                log.warning("AudioSocket %s (%s): Asterisk reports an error (%s)", conn.peer, conn.uuid, code)


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "unknown peer"
