"""Rate conversion of a live stream of frames, one frame in, one frame out."""

from __future__ import annotations

import numpy as np
import soxr


class FrameConverter:
    """Converts consecutive `frame_ms` frames of 16-bit mono PCM from one rate to another.

    soxr's ordinary streaming modes release output in blocks of about 100 ms, far too
    coarse for a live call. Its variable-rate mode streams smoothly but delays 16 to
    8 kHz by 15 ms (8 to 16 kHz by 30 ms); its quick mode (cubic interpolation) adds
    well under a millisecond but has no anti-alias filter. So downsampling, where
    aliasing would be audible, uses the filtered variable-rate mode, and upsampling,
    where cubic interpolation only leaves faint images above the source band, uses the
    quick mode. What soxr holds back at the start goes out as leading silence, so
    every call returns exactly one frame.
    """

    def __init__(self, in_rate: int, out_rate: int, frame_ms: int) -> None:
        if out_rate < in_rate:
            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ", vr=True)
        else:
            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="QQ")
        self._out_samples = out_rate * frame_ms // 1000
        self._pending = np.zeros(0, dtype=np.int16)

    def convert(self, frame: bytes) -> bytes:
        converted = self._stream.resample_chunk(np.frombuffer(frame, dtype=np.int16))
        out = np.concatenate((self._pending, converted))
        shortfall = self._out_samples - len(out)
        if shortfall > 0:
            out = np.concatenate((np.zeros(shortfall, dtype=np.int16), out))
        self._pending = out[self._out_samples :]
        return out[: self._out_samples].tobytes()
