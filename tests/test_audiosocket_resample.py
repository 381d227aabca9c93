"""Rate conversion of live frames: one frame out per frame in, the tone kept, a short
and fixed delay, no aliasing when going down to 8 kHz, faint images going up; many
calls converted together as if each were alone."""

from __future__ import annotations

import numpy as np
import pytest

from fastagi.resample import Resampler


def tone(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frames(samples: np.ndarray, rate: int) -> list[bytes]:
    step = rate // 50
    return [samples[i : i + step].tobytes() for i in range(0, len(samples), step)]


def convert(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    resampler = Resampler(in_rate, out_rate, 20)
    resampler.start(0)
    out = [resampler.convert([0], frame).tobytes() for frame in frames(samples, in_rate)]
    assert {len(frame) for frame in out} == {out_rate // 50 * 2}
    return pcm(b"".join(out))


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int16).astype(float)


def level_db(samples: np.ndarray, rate: int, freq: float) -> float:
    """Power within 20 Hz of `freq`, in dB."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    near = np.abs(np.fft.rfftfreq(len(samples), 1 / rate) - freq) < 20
    return float(10 * np.log10(spectrum[near].sum()))


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), 8 * len(samples)))
    return float(np.fft.rfftfreq(8 * len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "most_delay_ms"), [(8000, 16000, 1), (16000, 8000, 5), (44100, 16000, 5), (16000, 48000, 1)]
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



def test_downsampling_filters_right_above_what_8_khz_carries() -> None:
    out = convert(tone(4200, 16000, 0.5), 16000, 8000)[2000:]  # would alias to 3.8 kHz
    assert np.sqrt(np.mean(out**2)) < 0.001 * 8000


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (16000, 8000)])
def test_the_whole_telephone_band_passes(in_rate: int, out_rate: int) -> None:
    for freq in (300, 3400):
        out = convert(tone(freq, in_rate, 0.5), in_rate, out_rate)[out_rate // 10 :]
        assert np.sqrt(np.mean(out**2)) == pytest.approx(8000 / np.sqrt(2), rel=0.1), f"{freq} Hz"


def test_upsampling_leaves_faint_images() -> None:
    out = convert(tone(3000, 8000, 0.5), 8000, 16000)[1600:]
    assert level_db(out, 16000, 5000) < level_db(out, 16000, 3000) - 35


def test_calls_converted_together_do_not_hear_each_other() -> None:
    resampler = Resampler(8000, 16000, 20)
    talking, silent = 0, 1
    resampler.start(talking)
    resampler.start(silent)
    said = frames(tone(440, 8000, 0.2), 8000)
    out = [resampler.convert([talking, silent], frame + bytes(len(frame))).tobytes() for frame in said]
    alone = convert(tone(440, 8000, 0.2), 8000, 16000)
    assert np.abs(pcm(b"".join(o[:640] for o in out)) - alone).max() <= 1
    assert not any(o[640:].strip(b"\0") for o in out)


def test_a_call_left_out_of_a_batch_goes_on_where_it_was() -> None:
    resampler = Resampler(16000, 8000, 20)
    late, punctual = 0, 1
    resampler.start(late)
    resampler.start(punctual)
    said = frames(tone(440, 16000, 0.2), 16000)
    out = []
    for index, frame in enumerate(said):
        out.append(resampler.convert([late, punctual], frame + bytes(640))[0].tobytes())
        if index == 3:  # a frame of `late` has not come this time
            resampler.convert([punctual], bytes(640))
    assert np.abs(pcm(b"".join(out)) - convert(tone(440, 16000, 0.2), 16000, 8000)).max() <= 1


def test_a_new_call_hears_nothing_of_the_last_one_on_its_row() -> None:
    resampler = Resampler(16000, 8000, 20)
    resampler.start(0)
    resampler.convert([0], frames(tone(440, 16000, 0.02), 16000)[0])
    resampler.start(0)  # the next call on the same row
    assert resampler.convert([0], bytes(640)).tobytes() == bytes(320)


def test_streams_started_far_apart_make_room_for_every_one() -> None:
    resampler = Resampler(8000, 16000, 20)
    for stream in (0, 40, 3):
        resampler.start(stream)
    loud = frames(tone(440, 8000, 0.02), 8000)[0]
    out = resampler.convert([40, 3, 0], loud + bytes(320) + loud)
    assert out.shape == (3, 320) and not out[1].any()
    assert np.array_equal(out[0], out[2]) and np.abs(out[0]).max() > 2000
