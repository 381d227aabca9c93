"""Every connection of a rate crosses to and from the engine together, once a tick: what
each one says reaches the engine at its pitch and level (sample for sample at the
engine's own rate), what the engine writes goes back to each as whole messages, and
connections converted together never hear each other."""

from __future__ import annotations

import numpy as np
import pytest

from fastagi.audiosocket.jitter import JitterBuffer
from fastagi.audiosocket.lanes import Lane
from fastagi.audiosocket.protocol import Kind
from fastagi.model.audio import FRAME_BYTES, SILENCE
from test_audiosocket_resample import convert, frames, pcm, peak_frequency, tone


class Member:
    """A connection as its lane sees it: keeps every message it is given to send."""

    def __init__(self, lane: Lane) -> None:
        self.buffer = JitterBuffer(lane.frame_bytes, target_frames=1, max_frames=10)
        self.slot = lane.join(self, self.buffer)
        self.messages: list[bytes] = []

    def send(self, message: bytes | memoryview) -> None:
        self.messages.append(bytes(message))


def tick(lane: Lane, writes: dict[Member, bytes]) -> list[bytes]:
    """One engine tick: every slot's frame as the engine reads it, then the engine's writes."""
    lane.begin_tick()
    assert lane.said is not None
    said = list(lane.said)
    for member, frame in writes.items():
        lane.heard[member.slot] = frame
        lane.written.append((member.slot, member))
    list(lane.end_tick())
    assert lane.said is None
    return said


def test_at_the_engines_rate_a_tone_passes_untouched_both_ways() -> None:
    lane = Lane(Kind.AUDIO_16K)
    member = Member(lane)
    said = frames(tone(440, 16000, 1.0), 16000)
    heard = frames(tone(1000, 16000, 1.0, amplitude=4000), 16000)
    engine_got = []
    for frame, back in zip(said, heard):
        member.buffer.put(frame)
        engine_got.append(tick(lane, {member: back})[member.slot])
    assert engine_got == said  # not one sample changed, not one frame late (a one-frame cushion)
    assert member.messages == [b"\x12\x02\x80" + frame for frame in heard]
    samples = pcm(b"".join(engine_got))
    assert peak_frequency(samples, 16000) == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(8000 / np.sqrt(2), rel=0.01)


def test_at_8_khz_calls_converted_together_each_sound_as_if_alone() -> None:
    lane = Lane(Kind.AUDIO_8K)
    talking, silent = Member(lane), Member(lane)
    said = frames(tone(440, 8000, 0.4), 8000)
    heard = frames(tone(1000, 16000, 0.4), 16000)
    engine_got: dict[Member, list[bytes]] = {talking: [], silent: []}
    for frame, back in zip(said, heard):
        talking.buffer.put(frame)
        silent.buffer.put(bytes(320))
        got = tick(lane, {talking: back, silent: SILENCE})
        for member in engine_got:
            engine_got[member].append(got[member.slot])
    assert {len(frame) for frame in engine_got[talking]} == {FRAME_BYTES}
    alone_up = convert(tone(440, 8000, 0.4), 8000, 16000)
    assert np.abs(pcm(b"".join(engine_got[talking])) - alone_up).max() <= 1
    assert not b"".join(engine_got[silent]).strip(b"\0")

    assert {message[:3] for message in talking.messages + silent.messages} == {b"\x10\x01\x40"}
    alone_down = convert(tone(1000, 16000, 0.4), 16000, 8000)
    assert np.abs(pcm(b"".join(message[3:] for message in talking.messages)) - alone_down).max() <= 1
    assert not b"".join(message[3:] for message in silent.messages).strip(b"\0")
    steady = alone_down[800:]
    assert peak_frequency(steady, 8000) == pytest.approx(1000, abs=2)


def test_only_the_connections_written_in_a_tick_are_sent_to() -> None:
    lane = Lane(Kind.AUDIO_8K)
    members = [Member(lane) for _ in range(3)]
    tick(lane, {members[1]: SILENCE})
    tick(lane, {})
    assert [len(member.messages) for member in members] == [0, 1, 0]


def test_a_slot_left_and_taken_again_while_sending_gets_nothing_of_the_last_call() -> None:
    """The engine may hand the loop back between sends: a connection that joins meanwhile hears nothing meant for another."""
    lane = Lane(Kind.AUDIO_16K)
    members = [Member(lane) for _ in range(40)]
    lane.begin_tick()
    for member in members:
        lane.heard[member.slot] = bytes([member.slot]) * FRAME_BYTES
        lane.written.append((member.slot, member))
    sending = lane.end_tick()
    next(sending)  # the first members are sent to, then the loop may run
    last = members[-1]
    lane.leave(last.slot)
    newcomer = Member(lane)
    assert newcomer.slot == last.slot
    assert list(sending) == []
    assert [len(member.messages) for member in members] == [1] * 39 + [0]
    assert newcomer.messages == []


@pytest.mark.parametrize("kind", [Kind.AUDIO_8K, Kind.AUDIO_16K])
def test_a_connection_that_joins_during_a_tick_says_nothing_in_it(kind: Kind) -> None:
    """The engine may hand the loop back between the lanes' reading and the rooms: a newcomer, in the slot of a
    call that just left or in a new one, is read as silence in that tick, never as the call before it."""
    lane = Lane(kind)
    rate = 8000 if kind == Kind.AUDIO_8K else 16000
    loud = frames(tone(440, rate, 0.02), rate)[0]
    members = [Member(lane) for _ in range(3)]
    for member in members:
        member.buffer.put(loud)
    lane.begin_tick()
    assert lane.said is not None and lane.said[members[1].slot] != SILENCE
    lane.leave(members[1].slot)
    newcomer, another = Member(lane), Member(lane)
    assert newcomer.slot == members[1].slot and another.slot == len(members)
    assert lane.said[newcomer.slot] == SILENCE and lane.said[another.slot] == SILENCE
    assert lane.said[members[0].slot] != SILENCE
    list(lane.end_tick())


def test_a_slot_left_and_taken_again_starts_from_silence() -> None:
    lane = Lane(Kind.AUDIO_8K)
    first = Member(lane)
    loud = frames(tone(440, 8000, 0.02), 8000)[0]
    first.buffer.put(loud)
    assert tick(lane, {})[first.slot] != SILENCE
    lane.leave(first.slot)
    second = Member(lane)
    assert second.slot == first.slot
    second.buffer.put(bytes(320))
    assert tick(lane, {})[second.slot] == SILENCE  # the filter holds nothing of the last call's tone
    assert lane.members == 1


def test_a_lane_without_members_costs_a_tick_nothing() -> None:
    lane = Lane(Kind.AUDIO_8K)
    lane.leave(Member(lane).slot)
    lane.begin_tick()
    assert lane.said is None
    assert list(lane.end_tick()) == []
