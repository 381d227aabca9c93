"""The one interface between the media engine and whatever produces or consumes audio.

Audio inside the engine is signed 16-bit little-endian mono PCM at `ENGINE_RATE`, in
frames of `FRAME_MS`. Everything at an edge (WAV files, AudioSocket at 8 or 16 kHz)
converts to and from this format.
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
