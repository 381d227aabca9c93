"""Rate conversion of live frames: one frame out per frame in, the tone kept, a short
and fixed delay, and no aliasing when going down to 8 kHz."""

from __future__ import annotations

import numpy as np
import pytest

from fastagi.audiosocket.resample import FrameConverter


def tone(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def convert(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    converter = FrameConverter(in_rate, out_rate, 20)
    step = in_rate // 50
    out = [converter.convert(samples[i : i + step].tobytes()) for i in range(0, len(samples), step)]
    assert {len(frame) for frame in out} == {out_rate // 50 * 2}
    return np.frombuffer(b"".join(out), dtype=np.int16).astype(float)


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), 8 * len(samples)))
    return float(np.fft.rfftfreq(8 * len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "most_delay_ms"), [(8000, 16000, 1), (16000, 8000, 20), (44100, 16000, 20)]
)
def test_tone_keeps_pitch_and_level_with_a_short_delay(
    in_rate: int, out_rate: int, most_delay_ms: int
) -> None:
    signal = np.concatenate((np.zeros(in_rate // 10, np.int16), tone(440, in_rate, 0.9)))
    out = convert(signal, in_rate, out_rate)
    onset_ms = np.argmax(np.abs(out) > 2000) / out_rate * 1000
    assert 100 <= onset_ms <= 100 + most_delay_ms
    steady = out[out_rate // 2 :]
    assert peak_frequency(steady, out_rate) == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(steady**2)) == pytest.approx(8000 / np.sqrt(2), rel=0.03)


def test_downsampling_filters_what_8_khz_cannot_carry() -> None:
    out = convert(tone(6000, 16000, 0.5), 16000, 8000)[2000:]
    assert np.sqrt(np.mean(out**2)) < 0.01 * 8000
