"""Rate conversion between Asterisk's rates and the engine's, batched over every call of a rate."""

from __future__ import annotations

import asyncio
import functools

from ..model.audio import ENGINE_RATE, FRAME_MS
from .resample import ConversionBatch, Resampler


class RateConversions:
    """The conversions between each Asterisk rate and the engine's, shared by every call at that rate.

    Asterisk's audio is converted when the engine reads the first call of a tick, for
    every call at once; what nobody reads (a call not in a room yet) is converted a
    frame later, so it still reaches its jitter buffer, which bounds it. The engine's
    audio is converted right after the tick that wrote it, then sent.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._batches: dict[int, tuple[ConversionBatch, ConversionBatch]] = {}

    def at(self, rate: int) -> tuple[ConversionBatch, ConversionBatch]:
        """(to the engine, to Asterisk) for `rate`."""
        batches = self._batches.get(rate)
        if batches is None:
            a_frame_later = functools.partial(self._loop.call_later, FRAME_MS / 1000)
            batches = self._batches[rate] = (
                ConversionBatch(Resampler(rate, ENGINE_RATE, FRAME_MS), a_frame_later),
                ConversionBatch(Resampler(ENGINE_RATE, rate, FRAME_MS), self._loop.call_soon),
            )
        return batches
