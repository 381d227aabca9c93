"""Every connection at one Asterisk rate moves its audio to and from the engine together, once a tick.

A connection's audio waits in its jitter buffer at Asterisk's rate. When the engine's
tick begins (`Lanes.begin_tick`), each lane takes one frame from every connection's
buffer and converts them all to the engine's rate at once; the engine then reads each
connection's frame from a list. What the engine writes during the tick is gathered the
same way and, when the tick ends (`Lanes.end_tick`), converted at once and written, each
connection's message a slice of one buffer that already holds the headers. A lane at
the engine's own rate converts nothing: frames pass as they are.

Without an engine's ticks (a connection read and written by something else), each
frame is converted on its own when it is read or written.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from ..model.audio import ENGINE_RATE, FRAME_MS, SILENCE
from .jitter import JitterBuffer
from .protocol import AUDIO_RATES, HEADER, Kind, audio_header, pcm_bytes
from ..resample import Resampler

SENDS_PER_STEP = 32
"""Messages sent between two points where the engine may hand the loop back."""


class Member(Protocol):
    """A connection, as its lane sees it."""

    def send(self, message: bytes | memoryview) -> None:
        """Write one whole message (header and PCM) to Asterisk."""


class _Vacant:
    """A free slot of a lane: it says silence."""

    def __init__(self, frame_bytes: int) -> None:
        self._silence = bytes(frame_bytes)

    def get(self) -> bytes:
        return self._silence


class Lane:
    """The connections at one Asterisk rate, each in a slot of the lane's arrays."""

    def __init__(self, kind: Kind) -> None:
        rate = AUDIO_RATES[kind]
        self.kind = kind
        self.frame_bytes = pcm_bytes(rate, FRAME_MS)
        self.header = audio_header(kind, self.frame_bytes)
        self.message_bytes = HEADER.size + self.frame_bytes
        same = rate == ENGINE_RATE
        self._to_engine = None if same else Resampler(rate, ENGINE_RATE, FRAME_MS)
        self._to_asterisk = None if same else Resampler(ENGINE_RATE, rate, FRAME_MS)
        self._vacant = _Vacant(self.frame_bytes)
        self._buffers: list[JitterBuffer | _Vacant] = []
        self._members: list[Member | None] = []
        self._streams = np.arange(0)
        self._free: list[int] = []
        self.said: list[bytes] | None = None
        """This tick's frame from every slot at the engine's rate, from `begin_tick` to `end_tick`."""
        self.heard: list[bytes] = []
        """What the engine wrote to each slot this tick (silence if nothing)."""
        self.written: list[tuple[int, Member]] = []
        """The slots written this tick, in order, each with the member that wrote it."""

    @property
    def members(self) -> int:
        return len(self._buffers) - len(self._free)

    def join(self, member: Member, buffer: JitterBuffer) -> int:
        """A new member whose audio waits in `buffer`; its slot."""
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._buffers)
            self._buffers.append(self._vacant)
            self._members.append(None)
            self._streams = np.arange(len(self._buffers))
            self.heard.append(SILENCE)
        self._buffers[slot] = buffer
        self._members[slot] = member
        if self.said is not None:  # joined during a tick: it said nothing in it (a slot's last member did)
            if slot < len(self.said):
                self.said[slot] = SILENCE
            else:
                self.said.append(SILENCE)
        if self._to_engine is not None and self._to_asterisk is not None:
            self._to_engine.start(slot)
            self._to_asterisk.start(slot)
        return slot

    def leave(self, slot: int) -> None:
        self._buffers[slot] = self._vacant
        self._members[slot] = None
        self._free.append(slot)

    def begin_tick(self) -> None:
        if len(self._free) == len(self._buffers):
            return
        frames = [buffer.get() for buffer in self._buffers]
        if self._to_engine is None:
            self.said = frames
            return
        converted = self._to_engine.convert(self._streams, b"".join(frames)).tobytes()
        size = len(SILENCE)
        self.said = [converted[offset : offset + size] for offset in range(0, len(converted), size)]

    def end_tick(self) -> Iterator[None]:
        """Convert and send what the engine wrote; a step (a chance to yield) every few members.

        A member that left meanwhile is sent nothing, nor is one that took its slot since.
        """
        self.said = None
        written, self.written = self.written, []
        if not written:
            return
        heard, self.heard = self.heard, [SILENCE] * len(self.heard)
        if self._to_asterisk is None:
            messages = self.header + self.header.join(heard)
        else:
            messages = self._with_headers(self._to_asterisk.convert(self._streams, b"".join(heard)))
            yield
        size, members, view = self.message_bytes, self._members, memoryview(messages)
        for count, (slot, member) in enumerate(written, 1):
            if members[slot] is member:
                member.send(view[slot * size : (slot + 1) * size])
            if not count % SENDS_PER_STEP:
                yield

    def convert_alone(self, slot: int, frame: bytes, to_engine: bool) -> bytes:
        """One frame of one slot converted on its own (outside the engine's ticks)."""
        resampler = self._to_engine if to_engine else self._to_asterisk
        return frame if resampler is None else resampler.convert((slot,), frame).tobytes()

    def _with_headers(self, pcm: np.ndarray) -> bytes:
        """Every row of `pcm` as a whole message, all in one buffer."""
        messages = np.empty((len(pcm), self.message_bytes), np.uint8)
        messages[:, : HEADER.size] = np.frombuffer(self.header, np.uint8)
        messages[:, HEADER.size :] = pcm.view(np.uint8)
        return messages.tobytes()


class Lanes:
    """A lane per Asterisk rate, made on first use; `begin_tick` and `end_tick` are the engine's tick hooks."""

    def __init__(self) -> None:
        self._lanes: dict[Kind, Lane] = {}
        self._active: tuple[Lane, ...] = ()

    def at(self, kind: Kind) -> Lane:
        lane = self._lanes.get(kind)
        if lane is None:
            lane = self._lanes[kind] = Lane(kind)
            self._active = tuple(self._lanes.values())
        return lane

    def begin_tick(self) -> None:
        for lane in self._active:
            lane.begin_tick()

    def end_tick(self) -> Iterator[None]:
        for lane in self._active:
            yield from lane.end_tick()
