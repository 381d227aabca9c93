"""The account's own side of a call, and a party that plays a recording."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..model.audio import SILENCE
from .wav import WavPlayer, load_wav


class FrameSource(Protocol):
    """Something that says one frame (FRAME_BYTES of engine audio) per tick."""

    def read_frame(self) -> bytes: ...


class FrameSink(Protocol):
    """Something that hears one frame per tick."""

    def write_frame(self, frame: bytes) -> None: ...


class PlaybackPort:
    """Says what a source plays (a greeting, a loop) and ignores what it hears."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source

    def pull(self) -> bytes:
        return self.source.read_frame()

    def push(self, frame: bytes) -> None:
        pass


class LocalPort:
    """The account's own side of a call.

    What it says comes from one switchable source (silence when there is none): a WAV
    being played, later an AudioSocket connection. What it hears goes to every sink: a
    recorder, an AudioSocket connection.
    """

    def __init__(self) -> None:
        self._source: FrameSource | None = None
        self._sinks: tuple[FrameSink, ...] = ()
        self.held = False
        """On hold: it says and hears silence, and its source waits where it is."""

    @property
    def source(self) -> FrameSource | None:
        return self._source

    @property
    def sinks(self) -> tuple[FrameSink, ...]:
        return self._sinks

    def set_source(self, source: FrameSource | None) -> None:
        """Say what `source` says from the next tick on, replacing the previous source."""
        self._source = source

    def play(self, path: Path) -> None:
        """Play a WAV file from its start, then silence (reads the file: `MediaFileError`)."""
        self.set_source(WavPlayer(load_wav(path)))

    def add_sink(self, sink: FrameSink) -> None:
        if any(existing is sink for existing in self._sinks):
            raise ValueError("sink already attached")
        self._sinks += (sink,)

    def remove_sink(self, sink: FrameSink) -> None:
        remaining = tuple(existing for existing in self._sinks if existing is not sink)
        if len(remaining) == len(self._sinks):
            raise ValueError("sink not attached")
        self._sinks = remaining

    def pull(self) -> bytes:
        source = self._source
        return SILENCE if source is None or self.held else source.read_frame()

    def push(self, frame: bytes) -> None:
        if self.held:
            frame = SILENCE
        for sink in self._sinks:
            sink.write_frame(frame)
