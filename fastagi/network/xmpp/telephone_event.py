"""DTMF as RFC 4733 telephone-events, without I/O: payloads, RTP packets, a sender and a receiver.

aiortc sends and receives audio but knows no telephone-event; the media worker puts the
packets made here on the call's RTP stream and hands the ones it receives to `Receiver`.

A digit is sent as real phones do: packets every `packet_ms` carrying the same RTP
timestamp (the event's start) and a growing duration, the first with the marker bit,
then three end packets, then a pause before the next digit. The receiver reports each
digit once, on the first packet of a new event, whatever is lost or repeated after it.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

DIGITS = "0123456789*#ABCD"
"""Event codes 0-15 (RFC 4733 section 3.2)."""
_EVENT = struct.Struct("!BBH")
_RTP = struct.Struct("!BBHII")


def encode_event(event: int, end: bool, volume: int, duration: int) -> bytes:
    """A telephone-event payload: event code, end bit, volume (dBm0 below 0, 0-63), duration in samples."""
    if not (0 <= event <= 255 and 0 <= volume <= 63 and 0 <= duration <= 0xFFFF):
        raise ValueError(f"event {event}, volume {volume}, duration {duration} out of range")
    return _EVENT.pack(event, (0x80 if end else 0) | volume, duration)


def decode_event(payload: bytes) -> tuple[int, bool, int, int]:
    """(event, end, volume, duration) of a payload (`ValueError` when shorter than 4 bytes)."""
    if len(payload) < _EVENT.size:
        raise ValueError(f"telephone-event payload of {len(payload)} bytes")
    event, flags, duration = _EVENT.unpack_from(payload)
    return event, bool(flags & 0x80), flags & 0x3F, duration


@dataclass(frozen=True)
class Rtp:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes


def encode_rtp(packet: Rtp) -> bytes:
    """A version-2 RTP packet with no CSRC and no header extension."""
    return _RTP.pack(0x80, (0x80 if packet.marker else 0) | packet.payload_type, packet.sequence & 0xFFFF,
                     packet.timestamp & 0xFFFFFFFF, packet.ssrc) + packet.payload


def decode_rtp(data: bytes) -> Rtp:
    """An RTP packet's header fields and payload (CSRCs, a header extension and padding skipped)."""
    if len(data) < _RTP.size:
        raise ValueError(f"RTP packet of {len(data)} bytes")
    first, second, sequence, timestamp, ssrc = _RTP.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError(f"RTP version {first >> 6}")
    offset = _RTP.size + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 4 bytes, then its length in 32-bit words
        if len(data) < offset + 4:
            raise ValueError("RTP header extension cut short")
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data) - (data[-1] if first & 0x20 and data else 0)
    if offset > end:
        raise ValueError("RTP header longer than the packet")
    return Rtp(second & 0x7F, sequence, timestamp, ssrc, bool(second & 0x80), data[offset:end])


@dataclass(frozen=True)
class Timing:
    clock_rate: int = 8000
    """The telephone-event's negotiated rate: 8000 beside G.711, 48000 beside Opus."""
    packet_ms: int = 20
    digit_ms: int = 100
    pause_ms: int = 60
    end_copies: int = 3
    volume: int = 10

    def samples(self, ms: int) -> int:
        return self.clock_rate * ms // 1000


class Sender:
    """Turns digits into packets; `tick` is called once per packet interval with the stream's RTP timestamp now."""

    def __init__(self, timing: Timing = Timing()) -> None:
        self.timing = timing
        self._digits: deque[int] = deque()
        self._start: int | None = None  # RTP timestamp of the digit being sent
        self._sent = 0  # packets of it sent
        self._pause = 0  # packet intervals still to wait before the next digit

    @property
    def busy(self) -> bool:
        return bool(self._digits) or self._start is not None or self._pause > 0

    def send(self, digits: str) -> None:
        for digit in digits:
            if digit not in DIGITS:
                raise ValueError(f"{digit!r} is not a DTMF digit")
            self._digits.append(DIGITS.index(digit))

    def tick(self, timestamp: int) -> list[tuple[bool, int, bytes]]:
        """The packets due now: (marker, RTP timestamp, payload) each."""
        timing = self.timing
        if self._start is None:
            if self._pause > 0:
                self._pause -= 1
                return []
            if not self._digits:
                return []
            self._start, self._sent = timestamp, 0
        event = self._digits[0]
        self._sent += 1
        duration = self._sent * timing.samples(timing.packet_ms)
        start = self._start
        if duration < timing.samples(timing.digit_ms):
            return [(self._sent == 1, start, encode_event(event, False, timing.volume, duration))]
        self._digits.popleft()
        self._start = None
        self._pause = timing.pause_ms // timing.packet_ms
        end = encode_event(event, True, timing.volume, duration)
        return [(self._sent == 1, start, end)] + [(False, start, end)] * (timing.end_copies - 1)


class Receiver:
    """Reports each digit once, from the first packet of an event (a new RTP timestamp) that arrives."""

    def __init__(self, remembered: int = 16) -> None:
        self._seen: deque[int] = deque(maxlen=remembered)

    def receive(self, packet: Rtp) -> str | None:
        """The digit `packet` starts, or None (a repeat, an end packet of a known event, an unknown code, garbage)."""
        try:
            event, _end, _volume, _duration = decode_event(packet.payload)
        except ValueError:
            return None
        if packet.timestamp in self._seen:
            return None
        self._seen.append(packet.timestamp)
        return DIGITS[event] if event < len(DIGITS) else None
