"""A call's audio between the engine's 20 ms frames of 16 kHz PCM and RTP payloads, as data (no I/O).

The media worker encodes and decodes here, on its own event loop, rather than through
aiortc's codecs: aiortc hands every frame to a thread pool to encode it and to a thread
per call to decode it, with an `av.AudioFrame` and a loop wake-up each way, and for
20 calls that was most of the worker's CPU. G.711 is two table look-ups (the tables
made once by FFmpeg's own G.711 codecs); Opus is libopus through PyAV, fed at 16 kHz
as it takes. What needs another rate (G.711's 8 kHz, Opus decoded at 48 kHz) is
converted by `Rates`: the frames of every call in one product per pair of rates.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from fractions import Fraction
from typing import Protocol, Sequence

import av
import numpy as np

from ...resample import Resampler
from ...model.audio import ENGINE_RATE, FRAME_MS

FRAMES_PER_SECOND = 1000 // FRAME_MS
OPUS_BITRATE = 32000
"""Bits a second of Opus: wideband voice with room to spare."""


class Codec(Protocol):
    name: str
    clock_rate: int
    """The RTP timestamp's rate."""
    encode_rate: int
    """The PCM rate `encode` takes."""
    decode_rate: int
    """The PCM rate `decode` gives."""

    def encode(self, pcm: np.ndarray) -> bytes:
        """One 20 ms frame of mono int16 at `encode_rate`: its RTP payload."""

    def decode(self, payload: bytes) -> np.ndarray:
        """One RTP payload: its mono int16 samples at `decode_rate`."""


@functools.cache
def _g711_tables(codec: str) -> tuple[np.ndarray, np.ndarray]:
    """(the code of each 16-bit sample, indexed by its bits as uint16; the sample of each code) of FFmpeg's `codec`."""
    samples = np.arange(-32768, 32768, dtype=np.int16)
    encoder = _context(codec, "w", 8000)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    codes = np.frombuffer(b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)]), np.uint8)
    to_code = np.empty(1 << 16, np.uint8)
    to_code[samples.view(np.uint16)] = codes
    decoder = _context(codec, "r", 8000)
    to_sample = np.concatenate([f.to_ndarray().reshape(-1) for f in decoder.decode(av.Packet(bytes(range(256))))])
    return to_code, to_sample.astype(np.int16)


def _context(codec: str, mode: str, rate: int) -> av.CodecContext:
    context = av.CodecContext.create(codec, mode)
    context.format, context.layout, context.sample_rate = "s16", "mono", rate
    if mode == "w":
        context.time_base = Fraction(1, rate)
    return context


class G711:
    """PCMU (μ-law) or PCMA (A-law), 8 kHz."""

    clock_rate = encode_rate = decode_rate = 8000

    def __init__(self, name: str) -> None:
        self.name = name
        self._to_code, self._to_sample = _g711_tables("pcm_mulaw" if name == "PCMU" else "pcm_alaw")

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._to_code[pcm.view(np.uint16)].tobytes()

    def decode(self, payload: bytes) -> np.ndarray:
        return self._to_sample[np.frombuffer(payload, np.uint8)]


class Opus:
    """Opus (RFC 7587): sent mono at 16 kHz, whatever the other side sends decoded to mono at 48 kHz."""

    name = "opus"
    clock_rate = decode_rate = 48000
    encode_rate = ENGINE_RATE

    def __init__(self) -> None:
        self._encoder: av.CodecContext | None = None
        self._decoder: av.CodecContext | None = None
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        if self._encoder is None:
            self._encoder = _context("libopus", "w", self.encode_rate)
            self._encoder.bit_rate = OPUS_BITRATE
            self._encoder.options = {"application": "voip"}
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = self.encode_rate, self._pts
        self._pts += len(pcm)
        return b"".join(bytes(packet) for packet in self._encoder.encode(frame))

    def decode(self, payload: bytes) -> np.ndarray:
        if self._decoder is None:
            self._decoder = _context("libopus", "r", self.decode_rate)
        frames = self._decoder.decode(av.Packet(payload))
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]) if frames else np.zeros(0, np.int16)


CODECS = {"pcmu": 8000, "pcma": 8000, "opus": 48000}
"""The codecs spoken here (by lower-case name), with their RTP clock rates."""


def codec(name: str) -> Codec:
    """A new codec of `name` (one of `CODECS`, any case), with state of its own."""
    lower = name.lower()
    if lower not in CODECS:
        raise ValueError(f"no codec {name!r} here")
    return Opus() if lower == "opus" else G711(lower.upper())


class Inbound:
    """One payload type of a call: its RTP packets in, whole 20 ms frames at the codec's `decode_rate` out.

    A packet numbered at or before one already taken (a duplicate, or one that came too
    late to be played in order) is dropped."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._frame = codec.decode_rate // FRAMES_PER_SECOND
        self._pending = np.zeros(0, np.int16)
        self._last: int | None = None

    def packet(self, sequence: int, payload: bytes) -> list[np.ndarray]:
        if self._last is not None and not 0 < (sequence - self._last) % 65536 < 32768:
            return []
        self._last = sequence
        pending = np.concatenate((self._pending, self.codec.decode(payload)))
        whole = len(pending) - len(pending) % self._frame
        self._pending = pending[whole:]
        return [pending[start:start + self._frame] for start in range(0, whole, self._frame)]


class Rates:
    """The rate conversions of every call: one batched `Resampler` per pair of rates, each call in its own slot."""

    def __init__(self) -> None:
        self._resamplers: dict[tuple[int, int], tuple[Resampler, set[int]]] = {}

    def release(self, slot: int) -> None:
        """The slot's call is over: the next call in it starts from silence."""
        for _, started in self._resamplers.values():
            started.discard(slot)

    def convert(self, frames: Sequence[tuple[int, int, int, np.ndarray]]) -> list[np.ndarray]:
        """Each (slot, from rate, to rate, 20 ms frame) converted, in order; a slot's frames follow each other."""
        converted: list[np.ndarray] = [pcm for _, _, _, pcm in frames]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, (_, source, target, _) in enumerate(frames):
            if source != target:
                groups[source, target].append(index)
        for rates, indices in groups.items():
            resampler, started = self._resampler(rates)
            for batch in _rounds(indices, [frames[i][0] for i in indices]):
                slots = [frames[i][0] for i in batch]
                for slot in set(slots) - started:
                    resampler.start(slot)
                    started.add(slot)
                rows = resampler.convert(slots, b"".join(frames[i][3].tobytes() for i in batch))
                for i, row in zip(batch, rows):
                    converted[i] = row.copy()  # the resampler's buffer is overwritten by its next batch
        return converted

    def _resampler(self, rates: tuple[int, int]) -> tuple[Resampler, set[int]]:
        if rates not in self._resamplers:
            self._resamplers[rates] = (Resampler(*rates, FRAME_MS), set())
        return self._resamplers[rates]


def _rounds(indices: list[int], slots: list[int]) -> list[list[int]]:
    """`indices` cut into batches with no slot twice, each slot's in their order: a product converts one frame
    per stream."""
    batches: list[list[int]] = []
    seen: dict[int, int] = defaultdict(int)  # slot: frames of it placed so far
    for index, slot in zip(indices, slots):
        if seen[slot] == len(batches):
            batches.append([])
        batches[seen[slot]].append(index)
        seen[slot] += 1
    return batches
