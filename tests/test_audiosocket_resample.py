"""Rate conversion of live frames: one frame out per frame in, the tone kept, a short
and fixed delay, no aliasing when going down to 8 kHz, faint images going up; many
calls converted together as if each were alone."""

from __future__ import annotations

import numpy as np
import pytest

from fastagi.audiosocket.resample import ConversionBatch, Resampler


def tone(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frames(samples: np.ndarray, rate: int) -> list[bytes]:
    step = rate // 50
    return [samples[i : i + step].tobytes() for i in range(0, len(samples), step)]


def convert(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    resampler = Resampler(in_rate, out_rate, 20)
    stream = resampler.open()
    out = [resampler.convert([stream], frame) for frame in frames(samples, in_rate)]
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
    talking, silent = resampler.open(), resampler.open()
    said = frames(tone(440, 8000, 0.2), 8000)
    out = [resampler.convert([talking, silent], frame + bytes(len(frame))) for frame in said]
    alone = convert(tone(440, 8000, 0.2), 8000, 16000)
    assert np.abs(pcm(b"".join(o[:640] for o in out)) - alone).max() <= 1
    assert not any(o[640:].strip(b"\0") for o in out)


def test_a_call_left_out_of_a_batch_goes_on_where_it_was() -> None:
    resampler = Resampler(16000, 8000, 20)
    late, punctual = resampler.open(), resampler.open()
    said = frames(tone(440, 16000, 0.2), 16000)
    out = []
    for index, frame in enumerate(said):
        out.append(resampler.convert([late, punctual], frame + bytes(640))[:320])
        if index == 3:  # a frame of `late` has not come this time
            resampler.convert([punctual], bytes(640))
    assert np.abs(pcm(b"".join(out)) - convert(tone(440, 16000, 0.2), 16000, 8000)).max() <= 1


def test_a_new_call_hears_nothing_of_the_last_one_on_its_row() -> None:
    resampler = Resampler(16000, 8000, 20)
    first = resampler.open()
    resampler.convert([first], frames(tone(440, 16000, 0.02), 16000)[0])
    resampler.close(first)
    second = resampler.open()
    assert second == first
    assert resampler.convert([second], bytes(640)) == bytes(320)


class Clock:
    """`ConversionBatch`'s scheduler, run by hand."""

    def __init__(self) -> None:
        self.due: list[Handle] = []

    def schedule(self, callback) -> Handle:  # type: ignore[no-untyped-def]
        handle = Handle(callback)
        self.due.append(handle)
        return handle

    def run_due(self) -> None:
        due, self.due = self.due, []
        for handle in due:
            if not handle.cancelled:
                handle.callback()


class Handle:
    def __init__(self, callback) -> None:  # type: ignore[no-untyped-def]
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_a_batch_delivers_every_frame_in_order_once_it_is_due() -> None:
    clock = Clock()
    batch = ConversionBatch(Resampler(8000, 16000, 20), clock.schedule)
    a, b = batch.open(), batch.open()
    said = frames(tone(440, 8000, 0.06), 8000)
    heard: dict[str, list[bytes]] = {"a": [], "b": []}
    for frame in said:  # three frames of `a` before the batch runs: three rounds
        batch.add(a, frame, heard["a"].append)
    batch.add(b, said[0], heard["b"].append)
    assert heard == {"a": [], "b": []} and len(clock.due) == 1
    clock.run_due()
    assert np.abs(pcm(b"".join(heard["a"])) - convert(tone(440, 8000, 0.06), 8000, 16000)).max() <= 1
    assert heard["b"] == heard["a"][:1]


def test_running_a_batch_early_cancels_its_due_run() -> None:
    clock = Clock()
    batch = ConversionBatch(Resampler(8000, 16000, 20), clock.schedule)
    stream, heard = batch.open(), []
    batch.add(stream, bytes(320), heard.append)
    batch.run()
    assert heard == [bytes(640)] and clock.due[0].cancelled
    batch.run()
    assert heard == [bytes(640)]


def test_closing_a_stream_drops_what_it_queued() -> None:
    clock = Clock()
    batch = ConversionBatch(Resampler(8000, 16000, 20), clock.schedule)
    gone, staying = batch.open(), batch.open()
    heard: list[tuple[str, bytes]] = []
    loud = frames(tone(440, 8000, 0.02), 8000)[0]
    batch.add(gone, loud, lambda out: heard.append(("gone", out)))
    batch.add(gone, loud, lambda out: heard.append(("gone", out)))
    batch.add(staying, bytes(320), lambda out: heard.append(("staying", out)))
    batch.close(gone)
    newcomer = batch.open()
    batch.add(newcomer, bytes(320), lambda out: heard.append(("newcomer", out)))
    clock.run_due()
    assert heard == [("staying", bytes(640)), ("newcomer", bytes(640))]
