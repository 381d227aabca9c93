"""The jitter buffer: steady frames out of bursty input, silence and a rebuilt cushion
when it runs dry, the oldest audio dropped when it overflows."""

from __future__ import annotations

import pytest

from fastagi.audiosocket.jitter import JitterBuffer

FRAME = 320
SILENCE = bytes(FRAME)


def frame(n: int) -> bytes:
    """A recognisable frame: every sample is n."""
    return n.to_bytes(2, "little") * (FRAME // 2)


def test_playout_waits_for_the_target_depth_then_keeps_order() -> None:
    buffer = JitterBuffer(FRAME, target_frames=2, max_frames=5)
    assert buffer.get() == SILENCE
    buffer.put(frame(1))
    assert buffer.get() == SILENCE
    buffer.put(frame(2))
    outputs = [buffer.get()]
    for n in range(3, 8):
        buffer.put(frame(n))
        outputs.append(buffer.get())
    assert outputs == [frame(n) for n in range(1, 7)]
    assert (buffer.underruns, buffer.dropped) == (0, 0)


def test_a_burst_is_played_out_one_frame_per_tick() -> None:
    buffer = JitterBuffer(FRAME, target_frames=2, max_frames=10)
    buffer.put(b"".join(frame(n) for n in range(1, 6)))
    assert [buffer.get() for _ in range(5)] == [frame(n) for n in range(1, 6)]


def test_chunks_that_do_not_align_with_frames_are_reassembled() -> None:
    stream = b"".join(frame(n) for n in range(1, 5))
    buffer = JitterBuffer(FRAME, target_frames=1, max_frames=10)
    for start in range(0, len(stream), 100):
        buffer.put(stream[start : start + 100])
    assert [buffer.get() for _ in range(4)] == [frame(n) for n in range(1, 5)]


def test_underrun_gives_silence_counts_and_rebuilds_the_cushion() -> None:
    buffer = JitterBuffer(FRAME, target_frames=2, max_frames=10)
    buffer.put(frame(1) + frame(2))
    assert [buffer.get(), buffer.get()] == [frame(1), frame(2)]
    assert buffer.get() == SILENCE
    assert buffer.underruns == 1
    buffer.put(frame(3))
    assert buffer.get() == SILENCE  # one frame is not a cushion yet
    buffer.put(frame(4))
    assert [buffer.get(), buffer.get()] == [frame(3), frame(4)]
    assert buffer.underruns == 1
    assert buffer.get() == SILENCE
    assert buffer.underruns == 2


def test_overflow_drops_the_oldest_frames_and_counts_them() -> None:
    buffer = JitterBuffer(FRAME, target_frames=2, max_frames=4)
    buffer.put(b"".join(frame(n) for n in range(1, 7)))
    assert buffer.dropped == 2
    assert buffer.buffered == 4 * FRAME
    assert [buffer.get() for _ in range(4)] == [frame(n) for n in range(3, 7)]


def test_overflow_by_part_of_a_frame_drops_a_whole_frame() -> None:
    buffer = JitterBuffer(FRAME, target_frames=1, max_frames=2)
    buffer.put(frame(1) + frame(2) + frame(3)[:100])
    assert buffer.dropped == 1
    assert buffer.get() == frame(2)


@pytest.mark.parametrize(
    ("frame_bytes", "target", "most"), [(0, 2, 10), (321, 2, 10), (320, 0, 10), (320, 5, 4)]
)
def test_bad_settings_are_refused(frame_bytes: int, target: int, most: int) -> None:
    with pytest.raises(ValueError):
        JitterBuffer(frame_bytes, target, most)
