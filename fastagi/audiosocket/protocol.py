"""AudioSocket wire format, without I/O.

Every message is a 1-byte kind, a 2-byte big-endian payload length and the payload.
Asterisk opens with a UUID message (16 raw bytes), then sends audio, DTMF digits and,
rarely, error messages; it never sends hangup, it closes the socket. From the server
it accepts only audio and hangup: any other kind ends its session, so the encoder here
cannot produce one.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

HEADER = struct.Struct("!BH")
MAX_AUDIO_MS = 100
"""Longest audio payload accepted from Asterisk; it sends 20 ms."""
MAX_ERROR_PAYLOAD = 255
DTMF_DIGITS = frozenset(b"0123456789*#ABCD")


class Kind(enum.IntEnum):
    """Message kinds (`enum ast_audiosocket_msg_kind`)."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO_8K = 0x10
    AUDIO_12K = 0x11
    AUDIO_16K = 0x12
    AUDIO_24K = 0x13
    AUDIO_32K = 0x14
    AUDIO_44K = 0x15
    AUDIO_48K = 0x16
    AUDIO_96K = 0x17
    AUDIO_192K = 0x18
    ERROR = 0xFF


AUDIO_RATES: dict[Kind, int] = {
    Kind.AUDIO_8K: 8000,
    Kind.AUDIO_12K: 12000,
    Kind.AUDIO_16K: 16000,
    Kind.AUDIO_24K: 24000,
    Kind.AUDIO_32K: 32000,
    Kind.AUDIO_44K: 44100,
    Kind.AUDIO_48K: 48000,
    Kind.AUDIO_96K: 96000,
    Kind.AUDIO_192K: 192000,
}
"""Sample rate of each audio kind; the samples are signed 16-bit mono, host order."""

_KINDS: dict[int, Kind] = {kind.value: kind for kind in Kind}
"""Kind by its byte: a dict lookup costs a fraction of `Kind(byte)`, once per message."""

_FIXED_LENGTHS: dict[Kind, tuple[int, int]] = {
    Kind.HANGUP: (0, 0),
    Kind.UUID: (16, 16),
    Kind.DTMF: (1, 1),
    Kind.ERROR: (0, MAX_ERROR_PAYLOAD),
}


def pcm_bytes(rate: int, ms: int) -> int:
    """Bytes of `ms` milliseconds of 16-bit mono PCM at `rate`."""
    return rate * ms // 1000 * 2


class ProtocolError(Exception):
    """The peer broke the protocol; the connection cannot continue."""


class State(enum.Enum):
    AWAIT_UUID = "await-uuid"
    OPEN = "open"
    CLOSED = "closed"


class Frame(NamedTuple):
    """One message (a tuple: made for every message, it must be cheap to make)."""

    kind: Kind
    payload: bytes


class AudioSocketParser:
    """Turns the bytes Asterisk sends into frames, whatever the chunking.

    A broken message raises `ProtocolError` as soon as its header is complete (an
    oversized length is refused before its payload is waited for) and closes the
    parser; frames earlier in the same chunk are discarded with it, since the
    connection is dropped anyway. A hangup message closes the parser too; bytes after
    it are ignored.
    """

    def __init__(self) -> None:
        self.state = State.AWAIT_UUID
        self.audio_kind: Kind | None = None
        """The audio kind of the first audio frame; every later one must match."""
        self._audio_byte = -1
        self._audio_max = 0
        self._buffer = bytearray()

    def feed(self, data: bytes | memoryview) -> list[Frame]:
        if self.state is State.CLOSED:
            raise ProtocolError("data after the connection closed")
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        try:
            while self.state is not State.CLOSED and len(buffer) - offset >= HEADER.size:
                length = buffer[offset + 1] << 8 | buffer[offset + 2]
                kind = self._check_header(buffer[offset], length)
                start = offset + HEADER.size
                if len(buffer) < start + length:
                    break
                offset = start + length
                payload = bytes(buffer[start:offset])
                if kind is not self.audio_kind:
                    self._accept(kind, payload)
                frames.append(Frame(kind, payload))
        except ProtocolError:
            self._close()
            raise
        del buffer[:offset]
        return frames

    @property
    def pending(self) -> bool:
        """True while part of a message waits for the rest of it."""
        return bool(self._buffer)

    def audio_payload(self, data: bytes | memoryview) -> bytes | memoryview | None:
        """The payload of `data` if it is exactly one more message of this session's audio.

        Nearly every read is that (one 20 ms frame), and taking it here costs a fraction
        of `feed`. Otherwise (nothing waiting in the buffer, no audio yet, any other kind,
        a partial or several messages) the answer is None, nothing is consumed, and the
        data goes to `feed`.
        """
        length = len(data) - HEADER.size
        if (
            self._buffer
            or not 2 <= length <= self._audio_max
            or length % 2
            or data[0] != self._audio_byte
            or (data[1] << 8 | data[2]) != length
        ):
            return None
        return data[HEADER.size :]

    def _close(self) -> None:
        self.state = State.CLOSED
        self._buffer.clear()

    def _check_header(self, kind_byte: int, length: int) -> Kind:
        if kind_byte == self._audio_byte and 2 <= length <= self._audio_max and not length % 2:
            return self.audio_kind  # type: ignore[return-value]  # the common case: more of the same audio
        kind = _KINDS.get(kind_byte)
        if kind is None:
            raise ProtocolError(f"unknown message kind 0x{kind_byte:02x}")
        if self.state is State.AWAIT_UUID and kind is not Kind.UUID:
            raise ProtocolError(f"first message is {kind.name} (0x{kind:02x}), not UUID")
        if self.state is State.OPEN and kind is Kind.UUID:
            raise ProtocolError("a second UUID message")
        low, high = _length_limits(kind)
        if not low <= length <= high:
            raise ProtocolError(f"{kind.name} message of {length} bytes (allowed {low}..{high})")
        if kind in AUDIO_RATES:
            if length % 2:
                raise ProtocolError(f"{kind.name} message of {length} bytes: not whole samples")
            if self.audio_kind is not None and kind is not self.audio_kind:
                raise ProtocolError(f"audio changed from {self.audio_kind.name} to {kind.name}")
        return kind

    def _accept(self, kind: Kind, payload: bytes) -> None:
        if kind is Kind.DTMF and payload[0] not in DTMF_DIGITS:
            raise ProtocolError(f"DTMF digit {payload!r} is not one of 0-9*#ABCD")
        if kind is Kind.UUID:
            self.state = State.OPEN
        elif kind is Kind.HANGUP:
            self._close()
        elif kind in AUDIO_RATES:
            self.audio_kind = kind
            self._audio_byte = kind.value
            self._audio_max = _length_limits(kind)[1]


def _length_limits(kind: Kind) -> tuple[int, int]:
    if kind in AUDIO_RATES:
        return 2, pcm_bytes(AUDIO_RATES[kind], MAX_AUDIO_MS)
    return _FIXED_LENGTHS[kind]


def encode_audio(kind: int, pcm: bytes) -> bytes:
    """One audio message; `kind` must be an audio kind, `pcm` whole 16-bit samples."""
    return audio_header(kind, len(pcm)) + pcm


def audio_header(kind: int, length: int) -> bytes:
    """The header of an audio message of `length` bytes, to send before that many bytes of PCM.

    A connection sends frames of one size, so it builds this once rather than per frame.
    """
    if kind not in AUDIO_RATES:
        raise ValueError(f"kind 0x{kind:02x} is not audio: Asterisk ends the session on it")
    if not 0 < length <= 0xFFFF or length % 2:
        raise ValueError(f"audio payload of {length} bytes")
    return HEADER.pack(kind, length)


def encode_hangup() -> bytes:
    """The message asking Asterisk to hang the channel up."""
    return HEADER.pack(Kind.HANGUP, 0)
