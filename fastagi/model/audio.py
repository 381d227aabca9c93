"""Call audio: the 20 ms frame, and the port through which every party of a call speaks and hears.

Audio inside the gateway is signed 16-bit little-endian mono PCM at `ENGINE_RATE`, in
frames of `FRAME_MS`. Everything at an edge (WAV files, AudioSocket at 8 or 16 kHz, a
network's own codecs) converts to and from this format. A network driver hands the
media engine one `AudioPort` per call: the far party.
"""

from __future__ import annotations

from typing import Protocol

ENGINE_RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = ENGINE_RATE * FRAME_MS // 1000  # 320
FRAME_BYTES = FRAME_SAMPLES * 2  # 640
SILENCE = bytes(FRAME_BYTES)


class AudioPort(Protocol):
    """One party's attachment to a media room; the engine calls both once per tick."""

    def pull(self) -> bytes:
        """What this party says during this tick: exactly FRAME_BYTES."""

    def push(self, frame: bytes) -> None:
        """What this party hears during this tick: exactly FRAME_BYTES."""


class SilentPort:
    """A party that says nothing and ignores what it hears."""

    def pull(self) -> bytes:
        return SILENCE

    def push(self, frame: bytes) -> None:
        pass


class EchoPort:
    """Says what it heard one tick earlier: the sound-test service."""

    def __init__(self) -> None:
        self._heard = SILENCE

    def pull(self) -> bytes:
        return self._heard

    def push(self, frame: bytes) -> None:
        self._heard = frame
