"""WAV files in and out of the engine.

Reading: `decode_wav` turns the bytes of a RIFF/WAVE file into engine audio (mono int16
at `ENGINE_RATE`); `load_wav` is the thin file layer around it. Accepted: integer PCM of
8, 16, 24 or 32 bits and IEEE float of 32 or 64 bits, plain or WAVE_FORMAT_EXTENSIBLE,
mono or stereo (averaged to mono), any rate from 4 kHz to 384 kHz (resampled with
soxr). Everything else, compressed WAVs included, is a `MediaFileError`.

Writing: `WavRecorder` records engine frames into a new 16-bit mono WAV at 8 or 16 kHz
whose header is valid at every moment; `repair_wav_header` fixes the sizes of a
recording left behind by a crash.
"""

from __future__ import annotations

import itertools
import logging
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from ..model.audio import ENGINE_RATE, FRAME_BYTES, FRAME_SAMPLES, SILENCE
from .errors import MediaFileError

log = logging.getLogger(__name__)

INVALID = "invalid-argument"

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# KSDATAFORMAT_SUBTYPE_* GUIDs are the format tag followed by these 14 bytes.
_SUBFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")
_COMPRESSED_NAMES = {
    0x0002: "MS ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MP3",
}
_SAMPLE_BITS = {WAVE_FORMAT_PCM: (8, 16, 24, 32), WAVE_FORMAT_IEEE_FLOAT: (32, 64)}

MIN_RATE = 4000
MAX_RATE = 384000
MAX_CHANNELS = 2
# 256 MiB is 2.3 hours of 16 kHz 16-bit mono; a bigger file is held whole in memory.
MAX_FILE_BYTES = 256 * 1024 * 1024
RECORD_RATES = (8000, 16000)

_RIFF = struct.Struct("<4sI4s")
_CHUNK = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")
_HEADER_BYTES = 44
# A little under 4 GiB, the most a RIFF size field can describe; a multiple of any block.
_MAX_DATA_BYTES = 0xFFFF0000
# Recordings started on the same tick would all write on the same later ticks; each new
# one starts at the next point of its write cycle, which spreads the disk work over ticks.
_flush_phase = itertools.count()


@dataclass(frozen=True)
class WavFormat:
    encoding: int  # WAVE_FORMAT_PCM or WAVE_FORMAT_IEEE_FLOAT
    channels: int
    rate: int
    bits: int

    @property
    def block_align(self) -> int:
        return self.channels * self.bits // 8


@dataclass(frozen=True)
class WavHeader:
    format: WavFormat
    data_offset: int
    data_size: int  # as declared: may exceed the file in a truncated or crashed one


def _invalid(text: str) -> MediaFileError:
    return MediaFileError(INVALID, text)


def parse_wav_header(head: bytes) -> WavHeader:
    """Find the format and where the audio starts in the first bytes of a WAV file.

    `head` must reach at least the data chunk's own header; chunks after it are ignored.
    """
    if len(head) < _RIFF.size:
        raise _invalid("not a WAV file (shorter than a RIFF header)")
    riff, _, wave = _RIFF.unpack_from(head)
    if riff in (b"RF64", b"RIFX"):
        raise _invalid(f"{riff.decode()} WAV is not supported: convert it to RIFF PCM")
    if riff != b"RIFF" or wave != b"WAVE":
        raise _invalid("not a WAV file (no RIFF/WAVE header)")
    fmt: WavFormat | None = None
    pos = _RIFF.size
    while True:
        if pos + _CHUNK.size > len(head):
            raise _invalid("truncated WAV file: it ends before the data chunk")
        chunk_id, size = _CHUNK.unpack_from(head, pos)
        body = pos + _CHUNK.size
        if chunk_id == b"data":
            if fmt is None:
                raise _invalid("broken WAV file: data chunk before the fmt chunk")
            return WavHeader(fmt, body, size)
        if chunk_id == b"fmt ":
            if fmt is not None:
                raise _invalid("broken WAV file: two fmt chunks")
            if body + size > len(head):
                raise _invalid("truncated WAV file: the fmt chunk is cut short")
            fmt = _parse_fmt(head[body : body + size])
        pos = body + size + (size & 1)  # chunks are padded to an even size


def _parse_fmt(body: bytes) -> WavFormat:
    if len(body) < _FMT.size:
        raise _invalid("broken WAV file: fmt chunk too short")
    tag, channels, rate, _, block_align, bits = _FMT.unpack_from(body)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise _invalid("broken WAV file: extensible fmt chunk too short")
        subformat = body[24:40]
        if subformat[2:] != _SUBFORMAT_TAIL:
            raise _invalid("WAV sub-format is not PCM: convert it to PCM")
        tag = int.from_bytes(subformat[:2], "little")
    if tag not in _SAMPLE_BITS:
        name = _COMPRESSED_NAMES.get(tag, f"format 0x{tag:04x}")
        raise _invalid(f"compressed WAV ({name}) is not supported: convert it to PCM")
    if channels == 0:
        raise _invalid("broken WAV file: zero channels")
    if channels > MAX_CHANNELS:
        raise _invalid(f"WAV has {channels} channels: only mono or stereo is supported")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise _invalid(f"WAV sample rate {rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    if bits not in _SAMPLE_BITS[tag]:
        kind = "float" if tag == WAVE_FORMAT_IEEE_FLOAT else "integer"
        raise _invalid(f"{bits}-bit {kind} WAV is not supported")
    wav_format = WavFormat(tag, channels, rate, bits)
    if block_align != wav_format.block_align:
        raise _invalid(f"broken WAV file: block size {block_align} does not match the format")
    return wav_format


def decode_wav(data: bytes) -> np.ndarray:
    """The audio of a whole WAV file as mono int16 at `ENGINE_RATE`."""
    header = parse_wav_header(data)
    fmt = header.format
    end = header.data_offset + header.data_size
    if end > len(data):
        raise _invalid(
            f"truncated WAV file: the data chunk declares {header.data_size} bytes,"
            f" the file holds {len(data) - header.data_offset}"
        )
    if header.data_size % fmt.block_align:
        raise _invalid("broken WAV file: the data chunk ends inside a sample")
    samples = _decode_samples(fmt, memoryview(data)[header.data_offset : end])
    mono = samples.mean(axis=1, dtype=np.float32) if fmt.channels > 1 else samples[:, 0]
    if fmt.rate != ENGINE_RATE:
        mono = soxr.resample(mono, fmt.rate, ENGINE_RATE)
    return np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)


def _decode_samples(fmt: WavFormat, payload: memoryview) -> np.ndarray:
    """Samples as float32 in [-1, 1], shaped (frames, channels)."""
    width = fmt.bits // 8
    if fmt.encoding == WAVE_FORMAT_IEEE_FLOAT:
        values = np.nan_to_num(np.frombuffer(payload, f"<f{width}"), posinf=1.0, neginf=-1.0)
        values = np.clip(values, -1.0, 1.0)
    elif fmt.bits == 8:  # 8-bit WAV is unsigned
        values = (np.frombuffer(payload, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt.bits == 24:  # widen to int32 with the sample in the top three bytes
        packed = np.frombuffer(payload, np.uint8).reshape(-1, 3)
        widened = np.zeros((len(packed), 4), np.uint8)
        widened[:, 1:] = packed
        values = widened.view("<i4").ravel() / 2.0**31
    else:
        values = np.frombuffer(payload, f"<i{width}") / 2.0 ** (fmt.bits - 1)
    return values.astype(np.float32, copy=False).reshape(-1, fmt.channels)


def load_wav(path: Path) -> np.ndarray:
    """Read a WAV file as mono int16 at `ENGINE_RATE`; every failure is a `MediaFileError`."""
    try:
        # O_NONBLOCK: a FIFO put in place of the file must not block the event loop.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise MediaFileError("file_missing", f"{path} does not exist") from None
    except OSError as exc:
        raise _invalid(f"{path}: cannot open: {exc.strerror}") from None
    try:
        return read_wav(fd, path)
    finally:
        os.close(fd)


def read_wav(fd: int, path: Path) -> np.ndarray:
    """`load_wav` of a file already open (`path` names it in errors); the caller closes `fd`."""
    data = _read_regular_file(path, fd)
    try:
        return decode_wav(data)
    except MediaFileError as exc:
        raise MediaFileError(exc.code, f"{path}: {exc.text}") from None


def _read_regular_file(path: Path, fd: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise _invalid(f"{path} is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise _invalid(f"{path} is too large ({info.st_size} bytes, limit {MAX_FILE_BYTES})")
    try:
        with open(fd, "rb", closefd=False) as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _invalid(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:  # it grew since fstat
        raise _invalid(f"{path} is too large (limit {MAX_FILE_BYTES} bytes)")
    return data


class WavPlayer:
    """Plays engine audio frame by frame: once then silence, or in a loop.

    The audio is padded with silence to whole frames, so a loop has up to one frame of
    silence at the joint.
    """

    def __init__(self, samples: np.ndarray, loop: bool = False) -> None:
        padding = -len(samples) % FRAME_SAMPLES
        self._data = np.concatenate([samples.astype("<i2"), np.zeros(padding, "<i2")]).tobytes()
        self._loop = loop and len(self._data) > 0
        self._pos = 0

    @property
    def finished(self) -> bool:
        """True once a non-looping player has played everything."""
        return not self._loop and self._pos >= len(self._data)

    def read_frame(self) -> bytes:
        pos = self._pos
        if pos >= len(self._data):
            if not self._loop:
                return SILENCE
            pos = 0
        self._pos = pos + FRAME_BYTES
        return self._data[pos : pos + FRAME_BYTES]


def wav_header(rate: int, data_size: int) -> bytes:
    """The 44-byte header of a 16-bit mono PCM WAV holding `data_size` bytes of audio."""
    return (
        _RIFF.pack(b"RIFF", _HEADER_BYTES - 8 + data_size, b"WAVE")
        + _CHUNK.pack(b"fmt ", _FMT.size)
        + _FMT.pack(WAVE_FORMAT_PCM, 1, rate, rate * 2, 2, 16)
        + _CHUNK.pack(b"data", data_size)
    )


class WavRecorder:
    """Records engine frames into a new 16-bit mono WAV at 8 or 16 kHz.

    The file is created exclusively (`FileExistsError` if the name exists, so two
    recordings racing for one name cannot both win). Frames are buffered and written
    every `flush_frames` frames (0.5 s by default; the first write comes sooner, at a
    point that differs from one recorder to the next) and on `close`; after each write the
    header is rewritten, so at every moment the file is a valid WAV of all the audio
    written so far. A write error (a full disk) stops the recording, keeps the file
    valid, and is kept in `error`. Frames written after `close` are dropped: a call may
    end between two ticks.
    """

    def __init__(self, path: Path, rate: int = ENGINE_RATE, flush_frames: int = 25, fd: int | None = None) -> None:
        """Record into `path`, created here; or into `fd`, a new file created there (closed by the recorder)."""
        if rate not in RECORD_RATES:
            if fd is not None:
                os.close(fd)
            raise ValueError(f"record rate must be one of {RECORD_RATES}, not {rate}")
        self.path = path
        self.rate = rate
        self.error: OSError | None = None
        self._flush_frames = flush_frames
        self._until_flush = flush_frames - next(_flush_phase) % flush_frames
        self._pending: list[bytes] = []
        self._data_size = 0
        self._resampler = None
        if rate != ENGINE_RATE:
            self._resampler = soxr.ResampleStream(ENGINE_RATE, rate, 1, dtype="int16")
        self._fd: int | None = fd
        if fd is None:
            self._fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o640)
        try:
            os.write(self._fd, wav_header(rate, 0))
        except OSError:
            os.close(self._fd)
            if fd is None:  # a file created elsewhere is not unlinked by name: the name may lead elsewhere now
                os.unlink(path)
            raise

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def seconds(self) -> float:
        """The audio written to the file so far (all of it once closed)."""
        return self._data_size / (2 * self.rate)

    def write_frame(self, frame: bytes) -> None:
        if self._fd is None or self.error is not None:
            return
        self._pending.append(frame)
        self._until_flush -= 1
        if self._until_flush == 0:
            self._until_flush = self._flush_frames
            self._flush(last=False)

    def close(self) -> None:
        """Write what is buffered, finish the header and close the file."""
        if self._fd is None:
            return
        try:
            if self.error is None:
                self._flush(last=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def _flush(self, last: bool) -> None:
        assert self._fd is not None
        pcm = b"".join(self._pending)
        self._pending.clear()
        if self._resampler is not None:
            samples = np.frombuffer(pcm, np.int16)
            pcm = self._resampler.resample_chunk(samples, last=last).tobytes()
        pcm = pcm[: _MAX_DATA_BYTES - self._data_size]
        try:
            _write_all(self._fd, pcm)
            self._data_size += len(pcm)
            os.pwrite(self._fd, wav_header(self.rate, self._data_size), 0)
        except OSError as exc:
            self.error = exc
            log.error("recording to %s stopped: %s", self.path, exc.strerror)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def repair_wav_header(path: Path, scan_bytes: int = 65536) -> bool:
    """Make the sizes in a WAV's header match its file; True if anything changed.

    For a recording cut short by a crash: its audio is taken to run from the data chunk
    to the end of the file (a trailing partial sample is cut off). A file whose header
    is already consistent is left alone, even with chunks after the audio.
    """
    with open(path, "r+b") as file:
        header = parse_wav_header(file.read(scan_bytes))
        file_size = os.fstat(file.fileno()).st_size
        file.seek(4)
        (riff_size,) = struct.unpack("<I", file.read(4))
        declared_end = header.data_offset + header.data_size
        if declared_end <= file_size and riff_size + 8 == file_size:
            return False
        available = min(file_size - header.data_offset, _MAX_DATA_BYTES)
        data_size = available - available % header.format.block_align
        end = header.data_offset + data_size
        file.truncate(end)
        os.pwrite(file.fileno(), struct.pack("<I", end - 8), 4)
        os.pwrite(file.fileno(), struct.pack("<I", data_size), header.data_offset - 4)
    return True
