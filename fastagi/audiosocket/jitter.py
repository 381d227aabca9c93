"""A jitter buffer between Asterisk's bursty frames and the engine's steady tick."""

from __future__ import annotations

from collections import deque


class JitterBuffer:
    """PCM bytes in as they arrive, exactly one frame out per tick.

    Playout starts once `target_frames` are buffered; that cushion is what absorbs
    late arrivals. When the buffer runs dry it counts an underrun, answers silence and
    rebuilds the cushion before playing again, so one late frame costs one gap rather
    than a stutter on every tick after it. Beyond `max_frames` the oldest audio is
    dropped (counted), which bounds the delay a burst can add.

    Whole frames are kept as they came, so a frame put in one piece (nearly every one)
    comes out as the same object, never copied; other chunks are cut into frames.
    """

    def __init__(self, frame_bytes: int, target_frames: int = 2, max_frames: int = 10) -> None:
        if frame_bytes <= 0 or frame_bytes % 2:
            raise ValueError(f"frame of {frame_bytes} bytes")
        if not 1 <= target_frames <= max_frames:
            raise ValueError(f"target {target_frames} frames, max {max_frames} frames")
        self.frame_bytes = frame_bytes
        self._target = target_frames
        self._max = max_frames
        self._silence = bytes(frame_bytes)
        self._frames: deque[bytes] = deque()
        self._partial = bytearray()
        """The start of a frame whose end has not come yet."""
        self._playing = False
        self.dropped = 0
        """Frames thrown away because the buffer was full."""
        self.underruns = 0
        """Times playout ran dry and had to rebuild its cushion."""

    @property
    def buffered(self) -> int:
        """Bytes waiting to be played."""
        return len(self._frames) * self.frame_bytes + len(self._partial)

    def put(self, pcm: bytes) -> None:
        frames = self._frames
        if len(pcm) == self.frame_bytes and not self._partial:
            frames.append(pcm)
        else:
            self._cut(pcm)
        if len(frames) > self._max or (len(frames) == self._max and self._partial):  # more than max_frames of bytes
            self._drop()

    def get(self) -> bytes:
        """The next frame, or silence while the cushion is (re)building."""
        frames = self._frames
        if not self._playing:
            if len(frames) < self._target:
                return self._silence
            self._playing = True
        elif not frames:
            self._playing = False
            self.underruns += 1
            return self._silence
        return frames.popleft()

    def _cut(self, pcm: bytes) -> None:
        partial, size = self._partial, self.frame_bytes
        partial += pcm
        whole = len(partial) - len(partial) % size
        self._frames.extend(bytes(partial[start : start + size]) for start in range(0, whole, size))
        del partial[:whole]

    def _drop(self) -> None:
        """The oldest whole frames go until what is buffered fits within the maximum."""
        excess = self.buffered - self._max * self.frame_bytes
        count = -(-excess // self.frame_bytes)
        for _ in range(count):
            self._frames.popleft()
        self.dropped += count
