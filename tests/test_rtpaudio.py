"""The media worker's codecs and rate conversion (`rtpaudio`): a tone through each codec and back keeps its
frequency and level, packets become whole 20 ms frames in order, and batches convert like single frames."""

from __future__ import annotations

import av
import numpy as np
import pytest

from fastagi.model.audio import ENGINE_RATE, FRAME_SAMPLES
from fastagi.network.xmpp.rtpaudio import Inbound, Rates, codec


def tone(freq: float, seconds: float, rate: int = ENGINE_RATE, amplitude: float = 8000.0) -> np.ndarray:
    n = np.arange(int(seconds * rate))
    return (amplitude * np.sin(2 * np.pi * freq * n / rate)).astype(np.int16)


def measured(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """(frequency of the strongest bin in Hz, RMS level in dBFS)."""
    values = samples.astype(float)
    spectrum = np.abs(np.fft.rfft(values * np.hanning(len(values))))
    return float(np.argmax(spectrum)) * rate / len(values), 20 * np.log10(np.sqrt(np.mean(values ** 2)) / 32768)


def through(name: str, sent: np.ndarray) -> np.ndarray:
    """`sent` (16 kHz) through a call's sending side and another's receiving side, as the worker does it."""
    rates, sender, receiver = Rates(), codec(name), Inbound(codec(name))
    heard = []
    for sequence, frame in enumerate(sent.reshape(-1, FRAME_SAMPLES)):
        (converted,) = rates.convert([(0, ENGINE_RATE, sender.encode_rate, frame)])
        for pcm in receiver.packet(sequence, sender.encode(converted)):
            heard += rates.convert([(1, receiver.codec.decode_rate, ENGINE_RATE, pcm)])
    return np.concatenate(heard)


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "opus"])
def test_a_tone_through_each_codec_keeps_its_frequency_and_level(name: str) -> None:
    sent = tone(1000, 1.0)
    heard = through(name, sent)
    assert len(heard) == len(sent)
    frequency, level = measured(heard[ENGINE_RATE // 5:], ENGINE_RATE)  # past the codec's and filters' delay
    assert frequency == pytest.approx(1000, abs=5)
    assert level == pytest.approx(measured(sent, ENGINE_RATE)[1], abs=0.5)


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_g711_is_ffmpegs_g711(name: str) -> None:
    """The look-up tables give the bytes FFmpeg's own encoder gives, and its samples back."""
    samples = tone(440, 0.02, rate=8000, amplitude=30000.0)
    context = av.CodecContext.create("pcm_mulaw" if name == "PCMU" else "pcm_alaw", "w")
    context.format, context.layout, context.sample_rate = "s16", "mono", 8000
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    ffmpeg = b"".join(bytes(packet) for packet in context.encode(frame))
    g711 = codec(name)
    assert g711.encode(samples) == ffmpeg
    assert np.abs(g711.decode(ffmpeg).astype(int) - samples).max() < 32768 // 32  # within a quantisation step


def test_packets_of_any_length_become_20_ms_frames_and_a_late_or_repeated_one_is_dropped() -> None:
    inbound = Inbound(codec("PCMU"))
    pcmu = codec("PCMU")
    samples = (np.arange(8000) % 200 * 100 - 10000).astype(np.int16)  # a ramp: every sample tells its place
    payloads = [pcmu.encode(samples[start:start + 80]) for start in range(0, 800, 80)]  # 10 ms packets
    frames = []
    for sequence in (65530, 65531, 65532, 65531, 65533, 65530, 65534, 65535, 0, 1, 2, 3):
        frames += inbound.packet(sequence, payloads[(sequence - 65530) % 65536])
    assert [len(frame) for frame in frames] == [160] * 5
    assert np.array_equal(np.concatenate(frames), pcmu.decode(b"".join(payloads)))  # in order, each once


def test_a_batch_converts_each_call_as_if_alone_and_a_calls_frames_in_order() -> None:
    calls = {3: tone(440, 0.1), 7: tone(700, 0.1), 9: tone(300, 0.1)}
    alone = {}
    for slot, pcm in calls.items():  # each alone, with one resampler for all frames of the call
        rates = Rates()
        alone[slot] = np.concatenate([rates.convert([(slot, ENGINE_RATE, 8000, f)])[0] for f in pcm.reshape(-1, 320)])
    rates = Rates()
    frames = [(slot, ENGINE_RATE, 8000, frame) for n in range(0, 5, 2) for slot, pcm in calls.items()
              for frame in pcm.reshape(-1, 320)[n:n + 2]]  # two frames of each call per batch
    converted = rates.convert(frames)
    together = {slot: np.concatenate([pcm for (s, *_), pcm in zip(frames, converted) if s == slot]) for slot in calls}
    for slot in calls:  # (a product of another shape may round a float the other way: one step at most)
        assert len(together[slot]) == len(alone[slot]) == 800
        assert np.abs(together[slot].astype(int) - alone[slot]).max() <= 1


def test_a_released_slot_starts_from_silence() -> None:
    rates = Rates()
    loud = tone(440, 0.02, amplitude=30000.0)
    rates.convert([(0, ENGINE_RATE, 8000, loud)])
    rates.release(0)
    (after,) = rates.convert([(0, ENGINE_RATE, 8000, np.zeros(FRAME_SAMPLES, np.int16))])
    assert not after.any()
