"""One Asterisk channel's audio as a port of the media engine: 20 ms frames in and out.

`read_frame` is what the Asterisk caller says, `write_frame` what they hear, both at
`ENGINE_RATE`; the connection converts to and from the channel's rate, buffers against
jitter, and never lets an unread socket queue audio without bound.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import astuple, dataclass

from ..model.audio import ENGINE_RATE, FRAME_BYTES, FRAME_MS, SILENCE
from .conversions import RateConversions
from .jitter import JitterBuffer
from .protocol import AUDIO_RATES, Frame, Kind, audio_header, encode_hangup, pcm_bytes
from .resample import ConversionBatch


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
    jitter_frames: int = 2
    jitter_max_frames: int = 10
    write_backlog_frames: int = 10
    """Unsent frames allowed in the socket's buffer before new ones are dropped."""


class AudioSocketConnection:
    """One Asterisk channel's audio, as an audio port of the media engine.

    The rate is the one of the first audio frame Asterisk sends; until then, and for
    good if it sends none, it is 8 kHz, the only rate of the AudioSocket() application.
    """

    def __init__(
        self, transport: asyncio.WriteTransport, peer: str, settings: MediaSettings, conversions: RateConversions
    ) -> None:
        self.peer = peer
        self.uuid: uuid.UUID | None = None
        self.ended_by_gateway = False
        self._transport = transport
        self._settings = settings
        self._conversions = conversions
        self._loop = asyncio.get_running_loop()
        self.last_activity = self._loop.time()
        """Loop time of the last bytes received or audio sent."""
        self._frames_in = 0
        self._frames_out = 0
        self._dropped_out = 0
        self._hung_up = False
        self._to_engine: ConversionBatch | None = None
        self._to_asterisk: ConversionBatch | None = None
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
        return self._hung_up or self._transport.is_closing()

    def read_frame(self) -> bytes:
        """What the Asterisk caller said during this tick: FRAME_BYTES at ENGINE_RATE."""
        if self._hung_up or self._transport.is_closing():
            return SILENCE
        if self._to_engine is not None:
            self._to_engine.run()  # what every call at this rate sent since the last tick
        return self._jitter.get()

    def write_frame(self, frame: bytes) -> None:
        """What the Asterisk caller hears during this tick; dropped rather than queued."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"frame of {len(frame)} bytes, expected {FRAME_BYTES}")
        if self._hung_up or self._transport.is_closing():
            return
        if self._to_asterisk is None:
            self._send(frame)
        else:
            self._to_asterisk.add(self._out_stream, frame, self._send)

    # The names of fastagi.model.audio.AudioPort.
    pull = read_frame
    push = write_frame

    def close(self) -> None:
        """End the session from the gateway's side: hangup message, then close."""
        self.ended_by_gateway = True
        self._hang_up()

    def receive_audio(self, frame: Frame) -> None:
        if frame.kind is not self._kind:
            self._use_kind(frame.kind)
        self._frames_in += 1
        if self._to_engine is None:
            self._jitter.put(frame.payload)
            return
        pending = self._unconverted
        pending += frame.payload
        size = self._frame_bytes
        while len(pending) >= size:  # whole frames only: the jitter buffer plays nothing less
            self._to_engine.add(self._in_stream, bytes(pending[:size]), self._jitter.put)
            del pending[:size]

    def _release(self) -> None:
        """Give the conversion streams back (the session is over, or the rate changes)."""
        if self._to_engine is not None and self._to_asterisk is not None:
            self._to_engine.close(self._in_stream)
            self._to_asterisk.close(self._out_stream)
        self._to_engine = self._to_asterisk = None

    def _send(self, pcm: bytes) -> None:
        if self.closed:  # since the frame was queued for conversion
            return
        if self._transport.get_write_buffer_size() > self._backlog_limit:
            self._dropped_out += 1
            return
        self._transport.write(self._audio_header + pcm)
        self._frames_out += 1
        self.last_activity = self._loop.time()

    def _hang_up(self) -> None:
        """Send the hangup message and half-close; abort if the peer is not reading."""
        if self.closed:
            return
        self._hung_up = True
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
        self._transport.abort()

    def _use_kind(self, kind: Kind) -> None:
        """Set up the media path for a rate; only ever before audio flowed in."""
        rate = AUDIO_RATES[kind]
        self._release()
        self._kind = kind
        self._jitter = JitterBuffer(FRAME_BYTES, self._settings.jitter_frames, self._settings.jitter_max_frames)
        if rate != ENGINE_RATE:
            self._to_engine, self._to_asterisk = self._conversions.at(rate)
            self._in_stream = self._to_engine.open()
            self._out_stream = self._to_asterisk.open()
        self._unconverted = bytearray()
        self._frame_bytes = pcm_bytes(rate, FRAME_MS)
        self._audio_header = audio_header(kind, self._frame_bytes)
        self._backlog_limit = self._settings.write_backlog_frames * (self._frame_bytes + len(self._audio_header))
