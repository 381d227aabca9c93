"""WAV files: every accepted layout decodes to the right sound, every other file is a
clear MediaFileError, and recordings are valid WAVs at every moment."""

from __future__ import annotations

import itertools
import os
import stat
import struct
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastagi.media import wav as wav_module
from fastagi.media.errors import MediaFileError
from fastagi.model.audio import ENGINE_RATE, FRAME_SAMPLES, SILENCE
from fastagi.media.wav import (
    WavPlayer,
    WavRecorder,
    decode_wav,
    load_wav,
    repair_wav_header,
)

PCM, FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def tone(freq: float, seconds: float, rate: int, level: float = 0.5) -> np.ndarray:
    return level * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


def encode(signal: np.ndarray, bits: int, encoding: int = PCM) -> bytes:
    """Interleaved sample bytes of `signal` (frames, channels) in [-1, 1]."""
    if encoding == FLOAT:
        return signal.astype(f"<f{bits // 8}").tobytes()
    if bits == 8:
        return (np.round(signal * 127) + 128).astype(np.uint8).tobytes()
    wide = np.round(signal * (2.0 ** (bits - 1) - 1)).astype("<i4")
    if bits == 24:
        return wide.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return wide.astype(f"<i{bits // 8}").tobytes()


def fmt_chunk(
    channels: int, rate: int, bits: int, encoding: int = PCM, extensible: bool = False
) -> bytes:
    align = channels * bits // 8
    tag = EXTENSIBLE if extensible else encoding
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    if extensible:
        body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", encoding) + GUID_TAIL
    return chunk(b"fmt ", body)


def chunk(chunk_id: bytes, body: bytes, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    return struct.pack("<4sI", chunk_id, size) + body + b"\0" * (len(body) & 1)


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return struct.pack("<4sI", b"RIFF", len(body)) + body


def wav_bytes(
    signal: np.ndarray, rate: int, bits: int, encoding: int = PCM, extensible: bool = False
) -> bytes:
    channels = signal.shape[1]
    return riff(
        fmt_chunk(channels, rate, bits, encoding, extensible),
        chunk(b"data", encode(signal, bits, encoding)),
    )


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """(rate, samples) of a 16-bit mono WAV, read with the standard library."""
    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
        return reader.getframerate(), np.frombuffer(reader.readframes(reader.getnframes()), "<i2")


def assert_tone(samples: np.ndarray, freq: float, level: float) -> None:
    assert len(samples) == pytest.approx(ENGINE_RATE, abs=2)
    assert dominant_hz(samples, ENGINE_RATE) == pytest.approx(freq, abs=2)
    # the middle avoids the resampler's edges
    peak = np.abs(samples[1000:-1000]).max() / 32768
    assert peak == pytest.approx(level, rel=0.03)


# ---------------------------------------------------------------- accepted files


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
@pytest.mark.parametrize("bits", [8, 16, 24, 32])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("extensible", [False, True])
def test_pcm_loads_at_engine_rate_with_its_frequency(tmp_path, rate, bits, channels, extensible):
    signal = np.repeat(tone(440, 1.0, rate)[:, None], channels, axis=1)
    path = tmp_path / "in.wav"
    path.write_bytes(wav_bytes(signal, rate, bits, extensible=extensible))
    samples = load_wav(path)
    assert samples.dtype == np.int16
    assert_tone(samples, 440, 0.5)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("extensible", [False, True])
def test_float_loads(tmp_path, bits, extensible):
    path = tmp_path / "in.wav"
    path.write_bytes(wav_bytes(tone(1000, 1.0, 44100)[:, None], 44100, bits, FLOAT, extensible))
    assert_tone(load_wav(path), 1000, 0.5)


def test_float_out_of_range_and_nan_are_clipped():
    signal = np.array([[2.0], [-3.0], [np.nan], [0.25]] * 80)
    samples = decode_wav(wav_bytes(signal, ENGINE_RATE, 32, FLOAT))
    assert samples[:4].tolist() == [32767, -32768, 0, 8192]


def test_16khz_16bit_mono_is_taken_as_it_is():
    samples = np.random.default_rng(1).integers(-32768, 32767, 4000, dtype=np.int16)
    data = riff(fmt_chunk(1, ENGINE_RATE, 16), chunk(b"data", samples.tobytes()))
    assert np.array_equal(decode_wav(data), samples)


def test_stereo_is_mixed_down_to_mono():
    left, right = tone(440, 1.0, ENGINE_RATE), tone(1000, 1.0, ENGINE_RATE)
    samples = decode_wav(wav_bytes(np.stack([left, right], axis=1), ENGINE_RATE, 16))
    spectrum = np.abs(np.fft.rfft(samples))
    assert spectrum[440] == pytest.approx(spectrum[1000], rel=0.01)
    assert np.abs(samples).max() / 32768 == pytest.approx(0.5, rel=0.03)


def test_chunks_around_the_audio_are_skipped():
    samples = (tone(440, 1.0, ENGINE_RATE) * 32767).astype("<i2")
    data = riff(
        chunk(b"JUNK", b"x" * 27),  # odd size: followed by a pad byte
        fmt_chunk(1, ENGINE_RATE, 16),
        chunk(b"LIST", b"INFOsome tags"),
        chunk(b"data", samples.tobytes()),
        chunk(b"LIST", b"INFOtrailing"),
    )
    assert np.array_equal(decode_wav(data), samples)


def test_empty_data_is_no_audio():
    assert len(decode_wav(riff(fmt_chunk(1, 8000, 16), chunk(b"data", b"")))) == 0


# ---------------------------------------------------------------- refused files

GOOD_FMT = fmt_chunk(1, 8000, 16)
GOOD_DATA = chunk(b"data", bytes(320))


def fmt_with(**fields: int) -> bytes:
    values = dict(tag=PCM, channels=1, rate=8000, byte_rate=16000, align=2, bits=16)
    values.update(fields)
    return chunk(b"fmt ", struct.pack("<HHIIHH", *values.values()))


def extensible_fmt(subformat: bytes) -> bytes:
    body = struct.pack("<HHIIHH", EXTENSIBLE, 1, 8000, 16000, 2, 16)
    return chunk(b"fmt ", body + struct.pack("<HHI", 22, 16, 0) + subformat)


BAD_FILES = {
    "empty": (b"", "not a WAV file"),
    "text": (b"just some text, certainly not audio\n", "not a WAV file"),
    "avi": (b"RIFF\x04\x00\x00\x00AVI " + bytes(40), "not a WAV file"),
    "rf64": (b"RF64\xff\xff\xff\xffWAVE" + bytes(40), "RF64 WAV is not supported"),
    "alaw": (riff(fmt_with(tag=6, bits=8, align=1), GOOD_DATA), "compressed WAV (A-law)"),
    "ulaw": (riff(fmt_with(tag=7, bits=8, align=1), GOOD_DATA), "compressed WAV (mu-law)"),
    "ima_adpcm": (riff(fmt_with(tag=0x11, bits=4, align=256), GOOD_DATA), "(IMA ADPCM)"),
    "mp3": (riff(fmt_with(tag=0x55), GOOD_DATA), "compressed WAV (MP3)"),
    "unknown_tag": (riff(fmt_with(tag=0x1234), GOOD_DATA), "compressed WAV (format 0x1234)"),
    "extensible_alaw": (
        riff(extensible_fmt(struct.pack("<H", 6) + GUID_TAIL), GOOD_DATA),
        "compressed WAV (A-law)",
    ),
    "extensible_guid": (riff(extensible_fmt(bytes(16)), GOOD_DATA), "sub-format is not PCM"),
    "extensible_short": (
        riff(chunk(b"fmt ", struct.pack("<HHIIHH", EXTENSIBLE, 1, 8000, 16000, 2, 16)), GOOD_DATA),
        "extensible fmt chunk too short",
    ),
    "12_bit": (riff(fmt_with(bits=12), GOOD_DATA), "12-bit integer WAV is not supported"),
    "16_bit_float": (riff(fmt_with(tag=FLOAT), GOOD_DATA), "16-bit float WAV is not supported"),
    "zero_channels": (riff(fmt_with(channels=0, align=0), GOOD_DATA), "zero channels"),
    "six_channels": (riff(fmt_with(channels=6, align=12), GOOD_DATA), "6 channels"),
    "rate_zero": (riff(fmt_with(rate=0), GOOD_DATA), "sample rate 0 Hz"),
    "rate_absurd": (riff(fmt_with(rate=4_000_000_000), GOOD_DATA), "sample rate 4000000000 Hz"),
    "block_align": (riff(fmt_with(align=3), GOOD_DATA), "block size 3"),
    "fmt_too_short": (riff(chunk(b"fmt ", bytes(14)), GOOD_DATA), "fmt chunk too short"),
    "fmt_cut_short": (riff(GOOD_FMT)[:30], "fmt chunk is cut short"),
    "header_cut_short": (riff(GOOD_FMT, GOOD_DATA)[:40], "ends before the data chunk"),
    "no_data_chunk": (riff(GOOD_FMT, chunk(b"LIST", b"INFO")), "ends before the data chunk"),
    "data_before_fmt": (riff(GOOD_DATA, GOOD_FMT), "data chunk before the fmt chunk"),
    "two_fmt": (riff(GOOD_FMT, GOOD_FMT, GOOD_DATA), "two fmt chunks"),
    "data_truncated": (riff(GOOD_FMT, chunk(b"data", bytes(100), 2000)), "declares 2000 bytes"),
    "data_absurd": (riff(GOOD_FMT, chunk(b"data", bytes(8), 0xFFFFFFFF)), "declares 4294967295"),
    "chunk_absurd": (riff(GOOD_FMT, chunk(b"LIST", b"", 0xFFFFFFF0), GOOD_DATA), "ends before"),
    "half_sample": (riff(GOOD_FMT, chunk(b"data", bytes(321))), "ends inside a sample"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_is_a_clear_media_error(tmp_path, case):
    data, reason = BAD_FILES[case]
    path = tmp_path / "bad.wav"
    path.write_bytes(data)
    with pytest.raises(MediaFileError) as caught:
        load_wav(path)
    assert caught.value.code == "invalid-argument"
    assert caught.value.text.startswith(f"{path}: ")
    assert reason in caught.value.text
    assert "\n" not in caught.value.text


def test_missing_file_is_file_missing(tmp_path):
    with pytest.raises(MediaFileError) as caught:
        load_wav(tmp_path / "nope.wav")
    assert caught.value.code == "file_missing"
    assert "does not exist" in caught.value.text


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_not_a_regular_file_is_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "thing.wav"
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    with pytest.raises(MediaFileError) as caught:
        load_wav(path)
    assert caught.value.code == "invalid-argument"
    assert caught.value.text == f"{path} is not a regular file"


def test_too_large_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.wav"
    path.write_bytes(riff(GOOD_FMT, chunk(b"data", bytes(2000))))
    monkeypatch.setattr(wav_module, "MAX_FILE_BYTES", 1000)
    with pytest.raises(MediaFileError, match="too large"):
        load_wav(path)


VALID = wav_bytes(tone(440, 0.05, 8000)[:, None], 8000, 16)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8),
    st.integers(0, len(VALID)),
)
def test_damaged_files_only_ever_raise_media_errors(edits, length):
    damaged = bytearray(VALID[:length])
    for offset, value in edits:
        if offset < len(damaged):
            damaged[offset] = value
    try:
        samples = decode_wav(bytes(damaged))
    except MediaFileError as exc:
        assert exc.code == "invalid-argument" and exc.text
    else:
        assert samples.dtype == np.int16


# ---------------------------------------------------------------- playing


def frames_of(samples: np.ndarray) -> list[bytes]:
    data = samples.astype("<i2").tobytes()
    return [data[i : i + 2 * FRAME_SAMPLES] for i in range(0, len(data), 2 * FRAME_SAMPLES)]


def test_player_plays_once_padded_then_silence():
    samples = np.arange(1, 2 * FRAME_SAMPLES + 11, dtype=np.int16)
    player = WavPlayer(samples)
    played = [player.read_frame() for _ in range(2)]
    assert not player.finished
    played.append(player.read_frame())
    assert player.finished
    assert b"".join(played) == samples.tobytes() + bytes((FRAME_SAMPLES - 10) * 2)
    assert player.read_frame() == SILENCE


def test_player_loops():
    samples = np.arange(1, FRAME_SAMPLES + 1, dtype=np.int16)
    player = WavPlayer(samples, loop=True)
    assert [player.read_frame() for _ in range(3)] == [samples.tobytes()] * 3
    assert not player.finished


def test_empty_looping_player_is_silent():
    player = WavPlayer(np.zeros(0, np.int16), loop=True)
    assert player.read_frame() == SILENCE


# ---------------------------------------------------------------- recording


@pytest.mark.parametrize("rate", [8000, 16000])
def test_recording_keeps_its_frequency_and_length(tmp_path, rate):
    source = (tone(440, 1.0, ENGINE_RATE) * 32767).astype("<i2")
    recorder = WavRecorder(tmp_path / "out.wav", rate)
    for frame in frames_of(source):
        recorder.write_frame(frame)
    recorder.close()
    got_rate, samples = read_wav(tmp_path / "out.wav")
    assert got_rate == rate
    assert len(samples) == pytest.approx(rate, abs=rate * 0.002)
    assert dominant_hz(samples, rate) == pytest.approx(440, abs=2)
    if rate == ENGINE_RATE:
        assert np.array_equal(samples, source)


def test_recording_file_is_new_and_private(tmp_path):
    path = tmp_path / "out.wav"
    WavRecorder(path).close()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~umask
    with pytest.raises(FileExistsError):
        WavRecorder(path)
    assert read_wav(path)[1].size == 0


def test_two_recordings_racing_for_one_name_one_wins(tmp_path):
    path = tmp_path / "race.wav"
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def record() -> None:
        barrier.wait()
        try:
            WavRecorder(path).close()
            outcomes.append("won")
        except FileExistsError:
            outcomes.append("exists")

    threads = [threading.Thread(target=record) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["exists"] * 7 + ["won"]


def test_a_symbolic_link_is_never_written_through(tmp_path):
    target = tmp_path / "target.wav"
    (tmp_path / "link.wav").symlink_to(target)
    with pytest.raises(FileExistsError):
        WavRecorder(tmp_path / "link.wav")
    assert not target.exists()


@pytest.mark.parametrize("rate", [8000, 16000])
def test_header_is_valid_while_recording(tmp_path, rate, monkeypatch):
    # flushes at frames 5, 10, 15, 20 (not staggered by earlier recorders): 21-23 wait for close
    monkeypatch.setattr(wav_module, "_flush_phase", itertools.count())
    source = (tone(440, 0.46, ENGINE_RATE) * 32767).astype("<i2")
    recorder = WavRecorder(tmp_path / "live.wav", rate, flush_frames=5)
    seen = [0]
    for frame in frames_of(source):
        recorder.write_frame(frame)
        got_rate, samples = read_wav(tmp_path / "live.wav")
        assert got_rate == rate
        assert len(samples) >= seen[-1]
        seen.append(len(samples))
        if rate == ENGINE_RATE:  # at most the last 4 frames are not in the file yet
            assert len(samples) >= (len(seen) - 5) * FRAME_SAMPLES
            assert np.array_equal(samples, source[: len(samples)])
    recorder.close()
    final = read_wav(tmp_path / "live.wav")[1]
    assert 0 < seen[-1] < len(final)
    if rate == ENGINE_RATE:
        assert np.array_equal(final, source)


def test_frames_after_close_are_dropped(tmp_path):
    recorder = WavRecorder(tmp_path / "out.wav")
    recorder.write_frame(b"\1\0" * FRAME_SAMPLES)
    recorder.close()
    recorder.write_frame(b"\2\0" * FRAME_SAMPLES)
    recorder.close()
    assert recorder.closed
    assert read_wav(tmp_path / "out.wav")[1].tolist() == [1] * FRAME_SAMPLES


def test_full_disk_stops_the_recording_and_keeps_the_file_valid(tmp_path, monkeypatch):
    recorder = WavRecorder(tmp_path / "out.wav", flush_frames=1)
    recorder.write_frame(b"\1\0" * FRAME_SAMPLES)

    def no_space(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    recorder.write_frame(b"\2\0" * FRAME_SAMPLES)
    recorder.write_frame(b"\3\0" * FRAME_SAMPLES)
    monkeypatch.undo()
    recorder.close()
    assert recorder.error is not None and recorder.error.errno == 28
    assert read_wav(tmp_path / "out.wav")[1].tolist() == [1] * FRAME_SAMPLES


def test_record_rate_must_be_8_or_16_khz(tmp_path):
    with pytest.raises(ValueError):
        WavRecorder(tmp_path / "out.wav", 44100)
    assert not (tmp_path / "out.wav").exists()


# ---------------------------------------------------------------- repair


def test_repair_after_crash(tmp_path):
    path = tmp_path / "crashed.wav"
    source = (tone(440, 0.4, ENGINE_RATE) * 32767).astype("<i2")
    WavRecorder(path).close()
    with open(path, "ab") as file:  # audio written, the header never updated, half a sample
        file.write(source.tobytes() + b"\x7f")
    assert read_wav(path)[1].size == 0
    assert repair_wav_header(path) is True
    rate, samples = read_wav(path)
    assert rate == ENGINE_RATE and np.array_equal(samples, source)
    assert path.stat().st_size == 44 + source.nbytes
    assert repair_wav_header(path) is False


def test_repair_leaves_a_consistent_file_alone(tmp_path):
    path = tmp_path / "fine.wav"
    data = riff(GOOD_FMT, GOOD_DATA, chunk(b"LIST", b"INFOtags"))
    path.write_bytes(data)
    assert repair_wav_header(path) is False
    assert path.read_bytes() == data


def test_repair_refuses_a_non_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_bytes(b"hello")
    with pytest.raises(MediaFileError):
        repair_wav_header(path)
    assert path.read_bytes() == b"hello"
