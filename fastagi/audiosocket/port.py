"""One Asterisk channel's audio as a port of the media engine: 20 ms frames in and out.

`read_frame` is what the Asterisk caller says, `write_frame` what they hear, both at
`ENGINE_RATE`; the connection buffers against jitter at Asterisk's rate, its lane
converts to and from the engine's rate along with every other connection's, and an
unread socket never queues audio without bound.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, fields
from time import monotonic
from typing import Callable

from ..model.audio import FRAME_BYTES, SILENCE
from .jitter import JitterBuffer
from .lanes import Lane, Lanes
from .poller import PolledSocket, SocketPoller
from .protocol import AUDIO_RATES, Kind, encode_hangup


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
        # not `astuple`, which deep-copies: summing a thousand connections took 15 ms of the event loop
        return MediaCounters(*(getattr(self, name) + getattr(other, name) for name in _COUNTER_NAMES))


_COUNTER_NAMES = tuple(field.name for field in fields(MediaCounters))


@dataclass(frozen=True)
class MediaSettings:
    jitter_frames: int = 2
    jitter_max_frames: int = 10
    write_backlog_frames: int = 10
    """Unsent frames allowed in the socket's buffer before new ones are dropped."""


class AudioSocketConnection:
    """One Asterisk channel's audio, as an audio port of the media engine.

    The rate is the one of the first audio frame Asterisk sends; until then, and for
    good if it sends none, it is 8 kHz, the only rate of the AudioSocket() application.
    """

    def __init__(self, transport: asyncio.WriteTransport, peer: str, settings: MediaSettings, lanes: Lanes) -> None:
        self.peer = peer
        self.uuid: uuid.UUID | None = None
        self.ended_by_gateway = False
        self._transport = transport
        self._settings = settings
        self._lanes = lanes
        self.last_activity = monotonic()
        """`time.monotonic()` of the last bytes received or audio sent."""
        self._frames_in = 0
        self._frames_out = 0
        self._dropped_out = 0
        self._hung_up = False
        self._lane: Lane | None = None
        self._polled: PolledSocket | None = None
        self.use_kind(Kind.AUDIO_8K)

    @property
    def kind(self) -> Kind:
        return self._kind

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
        """True once either side ended the session; audio no longer moves.

        While the poller has the socket, the transport cannot be closing: it neither reads
        nor writes then, and whatever closes or aborts it takes the socket back first.
        """
        return self._hung_up or (self._polled is None and self._transport.is_closing())

    def read_frame(self) -> bytes:
        """What the Asterisk caller said during this tick: FRAME_BYTES at ENGINE_RATE."""
        # `closed`, written out: this and `write_frame` run for every call on every tick
        if self._hung_up or (self._polled is None and self._transport.is_closing()) or self._lane is None:
            return SILENCE
        said = self._lane.said
        if said is not None:  # the engine's tick: the lane took every member's frame at once
            return said[self._slot]
        return self._lane.convert_alone(self._slot, self._jitter.get(), to_engine=True)

    def write_frame(self, frame: bytes) -> None:
        """What the Asterisk caller hears during this tick; dropped rather than queued."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"frame of {len(frame)} bytes, expected {FRAME_BYTES}")
        lane = self._lane
        if self._hung_up or (self._polled is None and self._transport.is_closing()) or lane is None:
            return
        if lane.said is not None:  # the engine's tick: sent along with every member's when it ends
            lane.heard[self._slot] = frame
            lane.written.append((self._slot, self))
        else:
            self.send(lane.header + lane.convert_alone(self._slot, frame, to_engine=False))

    # The names of fastagi.model.audio.AudioPort.
    pull = read_frame
    push = write_frame

    def close(self) -> None:
        """End the session from the gateway's side: hangup message, then close."""
        self.ended_by_gateway = True
        self._hang_up()

    def receive_audio(self, pcm: bytes) -> None:
        """Audio from Asterisk, at the connection's rate (`use_kind` set it)."""
        self._frames_in += 1
        self._jitter.put(pcm)

    def take_audio(self, pcm: bytes) -> None:
        """One whole audio message's payload, read by the poller past the session's parser (`route_audio`)."""
        self.last_activity = monotonic()
        self._frames_in += 1
        self._jitter.put(pcm)

    def route_audio(self, routed: bool) -> None:
        """Whether the poller may hand a read of whole frames of this connection's audio (and nothing else)
        straight to `take_audio` (only while the session's parser holds no partial message)."""
        polled, lane = self._polled, self._lane
        if polled is None:
            return
        if routed and lane is not None:
            polled.route_audio(lane.header, lane.message_bytes, self.take_audio)
        else:
            polled.unroute_audio()

    def use_kind(self, kind: Kind) -> None:
        """Set up the media path for an audio kind; only ever before audio flowed in."""
        self.release()
        self._kind = kind
        self._lane = lane = self._lanes.at(kind)
        settings = self._settings
        self._jitter = JitterBuffer(lane.frame_bytes, settings.jitter_frames, settings.jitter_max_frames)
        self._slot = lane.join(self, self._jitter)
        self._backlog_limit = settings.write_backlog_frames * lane.message_bytes

    def release(self) -> None:
        """Leave the lane (the session is over, or the rate changes)."""
        if self._lane is not None:
            self._lane.leave(self._slot)
            self._lane = None

    def poll_with(self, poller: SocketPoller, on_data: Callable[[memoryview], None]) -> None:
        """Let `poller` read and write the socket (`on_data` gets what it reads) until `stop_polling`."""
        self._polled = poller.take(self._transport, on_data, self.stop_polling)

    def stop_polling(self) -> None:
        """The transport reads and writes the socket again (the session ends, or the socket did)."""
        polled, self._polled = self._polled, None
        if polled is not None:
            polled.give_back()

    def send(self, message: bytes | memoryview) -> None:
        """Write a whole audio message, unless the socket is not draining."""
        polled = self._polled
        if polled is not None:
            taken = polled.send(message, self._backlog_limit)
        elif taken := self._transport.get_write_buffer_size() <= self._backlog_limit:
            self._transport.write(message)
        if not taken:
            self._dropped_out += 1
            return
        self._frames_out += 1
        self.last_activity = monotonic()

    def _hang_up(self) -> None:
        """Send the hangup message and half-close; abort if the peer is not reading."""
        if self.closed:
            return
        self._hung_up = True
        self.stop_polling()
        if self._transport.get_write_buffer_size() > self._backlog_limit:
            self._abort()
            return
        try:
            self._transport.write(encode_hangup())
            self._transport.write_eof()
        except OSError:  # the peer reset the connection meanwhile
            self._abort()

    def _abort(self) -> None:
        self._hung_up = True
        self.stop_polling()
        self._transport.abort()
