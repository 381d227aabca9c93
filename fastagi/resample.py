"""Rate conversion of live 20 ms frames, for every call of a rate in one matrix product.

A call converts 50 frames a second each way. Converting them one call at a time costs
a library call per frame plus its per-stream state (soxr keeps some 15 kB per stream,
two streams per call, and 500 calls of it crowd the caches everything else needs). Here a stream's state is
only the last input samples its filter still needs, one row of an array, and a whole
batch of frames (one per call and tick) is converted by one matrix product.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

# The product is small enough that one thread does it fastest; a multi-threaded BLAS
# takes several times as long here and keeps its idle threads spinning on other cores.
_BLAS = ThreadpoolController().select(user_api="blas")

DOWN_SPAN = 0.0035
"""Half the length of the anti-alias filter in seconds: the delay downsampling adds."""
DOWN_ATTENUATION = 70.0
"""dB below which everything the lower rate cannot carry is pushed."""
UP_SPAN = 0.0007
"""Half the length of the interpolation filter in seconds: the delay upsampling adds."""
UP_ATTENUATION = 40.0
"""dB by which the images above the source's band are lowered."""
BLOCK_SAMPLES = 32
"""Output samples per block of the filter's matrix (see `_bands`): the fastest size measured."""


class Resampler:
    """Converts 20 ms frames of many independent streams from one rate to another.

    The filter is a Kaiser-windowed sinc (band-limited interpolation). Downsampling
    puts its stop band at the lower rate's Nyquist frequency, so nothing aliases;
    upsampling centres its transition on the source's Nyquist frequency and is kept
    short, since the images it removes are faint and its length is delay on a live
    call. A frame lasts a whole number of samples at both rates, so every frame sits
    the same way against the output samples, and one matrix (history and frame samples
    by output samples) holds the whole filter: a batch is one product whose rows are
    each stream's history followed by its new frame. The delay is constant (linear
    phase); no sample is held back beyond the frame, so a frame in is a frame out.
    """

    def __init__(self, in_rate: int, out_rate: int, frame_ms: int) -> None:
        if in_rate == out_rate:
            raise ValueError(f"nothing to convert at {in_rate} Hz")
        self.in_samples = in_rate * frame_ms // 1000
        self.out_samples = out_rate * frame_ms // 1000
        if self.in_samples * 1000 != in_rate * frame_ms or self.out_samples * 1000 != out_rate * frame_ms:
            raise ValueError(f"{frame_ms} ms is not a whole number of samples at {in_rate} and {out_rate} Hz")
        down = out_rate < in_rate
        span = DOWN_SPAN if down else UP_SPAN
        attenuation = DOWN_ATTENUATION if down else UP_ATTENUATION
        transition = (attenuation - 7.95) / (2.285 * 2 * math.pi * 2 * span)  # Kaiser's estimate, in Hz
        cutoff = out_rate / 2 - transition / 2 if down else in_rate / 2
        # The last output sample of a frame may need input up to `span` after it, and
        # no later than the frame's last input sample: that sets the delay.
        self.delay = span + max(0.0, (self.out_samples - 1) / out_rate - (self.in_samples - 1) / in_rate)
        self._history = math.ceil((self.delay + span) * in_rate)
        inputs = np.arange(-self._history, self.in_samples) / in_rate
        outputs = np.arange(self.out_samples) / out_rate - self.delay
        offsets = outputs[np.newaxis, :] - inputs[:, np.newaxis]
        taps = np.sinc(2 * cutoff * offsets) * _kaiser(offsets / span, attenuation)
        matrix = (taps / taps.sum(axis=0)).astype(np.float32)  # unit gain at DC for every output sample
        self._blocks = _bands(matrix, BLOCK_SAMPLES)
        # Per stream, its history; per batch row, the product's input and output. Kept
        # between batches: allocating a megabyte per batch makes the heap grow and shrink.
        self._histories = np.zeros((0, self._history), np.float32)
        self._rows = np.zeros((0, self._history + self.in_samples), np.float32)
        self._products = np.zeros((0, self.out_samples), np.float32)
        self._pcm = np.zeros((0, self.out_samples), np.int16)

    def start(self, stream: int) -> None:
        """Stream number `stream` (from 0 up) starts from silence: what it converted before is forgotten."""
        if stream >= len(self._histories):
            self._grow(max(16, 2 * len(self._histories), stream + 1))
        self._histories[stream] = 0

    def convert(self, streams: Sequence[int] | np.ndarray, frames: bytes) -> np.ndarray:
        """The next frame of each of `streams` (all different, all started), concatenated in that order, converted.

        One row of samples per stream, in a buffer of the resampler's that the next call overwrites.
        """
        count = len(streams)
        rows, products, pcm = self._rows[:count], self._products[:count], self._pcm[:count]
        # (in the default mode, `take` fills a buffer of its own and copies it to `out`)
        np.take(self._histories, streams, axis=0, out=rows[:, : self._history], mode="clip")
        rows[:, self._history :] = np.frombuffer(frames, np.int16).reshape(count, self.in_samples)
        self._histories[streams] = rows[:, self.in_samples :]
        with _BLAS.limit(limits=1):
            for inputs, outputs, block in self._blocks:
                np.matmul(rows[:, inputs], block, out=products[:, outputs])
        np.rint(products, out=products)
        np.clip(products, -32768, 32767, out=products)
        np.copyto(pcm, products, casting="unsafe")
        return pcm

    def _grow(self, streams: int) -> None:
        """Room for `streams` streams (a batch holds at most one frame of each)."""
        added = streams - len(self._histories)
        self._histories = np.concatenate((self._histories, np.zeros((added, self._history), np.float32)))
        self._rows = np.zeros((streams, self._rows.shape[1]), np.float32)
        self._products = np.zeros((streams, self.out_samples), np.float32)
        self._pcm = np.zeros((streams, self.out_samples), np.int16)


def _bands(matrix: np.ndarray, width: int) -> list[tuple[slice, slice, np.ndarray]]:
    """`matrix` cut into blocks of `width` columns, each without its all-zero rows.

    An output sample depends on the inputs within a filter's length of it only, so
    most of the matrix is zeros; products by these blocks skip them.
    """
    blocks = []
    for start in range(0, matrix.shape[1], width):
        outputs = slice(start, min(start + width, matrix.shape[1]))
        used = np.flatnonzero(matrix[:, outputs].any(axis=1))
        inputs = slice(used[0], used[-1] + 1)
        blocks.append((inputs, outputs, np.ascontiguousarray(matrix[inputs, outputs])))
    return blocks


def _kaiser(x: np.ndarray, attenuation: float) -> np.ndarray:
    """The Kaiser window for `attenuation` dB (21 or more) at positions `x` (-1 to 1 spans it), 0 outside."""
    if attenuation > 50:
        beta = 0.1102 * (attenuation - 8.7)
    else:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    inside = np.abs(x) < 1
    window = np.zeros_like(x)
    window[inside] = np.i0(beta * np.sqrt(1 - x[inside] ** 2)) / np.i0(beta)
    return window
