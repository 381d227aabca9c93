"""A jitter buffer between Asterisk's bursty frames and the engine's steady tick."""

from __future__ import annotations


class JitterBuffer:
    """PCM bytes in as they arrive, exactly one frame out per tick.

    Playout starts once `target_frames` are buffered; that cushion is what absorbs
    late arrivals. When the buffer runs dry it counts an underrun, answers silence and
    rebuilds the cushion before playing again, so one late frame costs one gap rather
    than a stutter on every tick after it. Beyond `max_frames` the oldest audio is
    dropped (counted), which bounds the delay a burst can add.
    """

    def __init__(self, frame_bytes: int, target_frames: int = 2, max_frames: int = 10) -> None:
        if frame_bytes <= 0 or frame_bytes % 2:
            raise ValueError(f"frame of {frame_bytes} bytes")
        if not 1 <= target_frames <= max_frames:
            raise ValueError(f"target {target_frames} frames, max {max_frames} frames")
        self.frame_bytes = frame_bytes
        self._target = target_frames * frame_bytes
        self._max = max_frames * frame_bytes
        self._silence = bytes(frame_bytes)
        self._fifo = bytearray()
        self._playing = False
        self.dropped = 0
        """Frames thrown away because the buffer was full."""
        self.underruns = 0
        """Times playout ran dry and had to rebuild its cushion."""

    @property
    def buffered(self) -> int:
        """Bytes waiting to be played."""
        return len(self._fifo)

    def put(self, pcm: bytes) -> None:
        self._fifo += pcm
        excess = len(self._fifo) - self._max
        if excess > 0:
            frames = -(-excess // self.frame_bytes)
            del self._fifo[: frames * self.frame_bytes]
            self.dropped += frames

    def get(self) -> bytes:
        """The next frame, or silence while the cushion is (re)building."""
        if self._playing and len(self._fifo) < self.frame_bytes:
            self._playing = False
            self.underruns += 1
        if not self._playing:
            if len(self._fifo) < self._target:
                return self._silence
            self._playing = True
        frame = bytes(self._fifo[: self.frame_bytes])
        del self._fifo[: self.frame_bytes]
        return frame
