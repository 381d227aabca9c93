"""The driver seam for audio: any network's far party, given as a port through `CallAudio`, is heard,
recorded and played to, with no knowledge of the network that made it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastagi.media.callmedia import CallMedia
from fastagi.media.engine import MediaEngine
from fastagi.model.audio import ENGINE_RATE, FRAME_SAMPLES, SILENCE
from fastagi.model.calls import CallStatus
from fastagi.model.events import CallChanged, EventBus
from fastagi.network.driver import CallAudio
from test_media_engine import dominant_hz, read_wav, write_tone


class ToneParty:
    """A far party as a live driver would give it: it says a 600 Hz tone and keeps what it hears."""

    def __init__(self) -> None:
        self.heard: list[bytes] = []
        self._sample = 0

    def pull(self) -> bytes:
        n = np.arange(self._sample, self._sample + FRAME_SAMPLES)
        self._sample += FRAME_SAMPLES
        return (8000 * np.sin(2 * np.pi * 600 * n / ENGINE_RATE)).astype("<i2").tobytes()

    def push(self, frame: bytes) -> None:
        self.heard.append(frame)


def changed(status: CallStatus) -> CallChanged:
    return CallChanged("alice", 7, "bob@example.org", "Bob", status, "outgoing")


def test_a_far_party_given_through_call_audio_is_recorded_and_hears_what_is_played(tmp_path: Path) -> None:
    engine, bus = MediaEngine(), EventBus()
    media = CallMedia(engine, bus)
    seam: CallAudio = media  # what a driver holds
    write_tone(tmp_path / "tone.wav", 440, 1.0)
    media.record("alice", 7, tmp_path / "heard.wav", 16000)
    media.port("alice", 7).play(tmp_path / "tone.wav")
    far = ToneParty()
    seam.connect("alice", 7, far)
    for _ in range(50):
        engine.tick()
    seam.disconnect("alice", 7)  # the call ended: the recording is closed, the room is gone

    rate, heard = read_wav(tmp_path / "heard.wav")
    assert dominant_hz(heard, rate) == 600  # what the far party said
    said = np.frombuffer(b"".join(far.heard), "<i2")
    assert dominant_hz(said, ENGINE_RATE) == 440  # what the call played reached the far party
    assert engine.rooms == 0


def test_hold_from_the_call_event_silences_both_ways(tmp_path: Path) -> None:
    engine, bus = MediaEngine(), EventBus()
    media = CallMedia(engine, bus)
    write_tone(tmp_path / "tone.wav", 440, 1.0)
    media.port("alice", 7).play(tmp_path / "tone.wav")
    far = ToneParty()
    media.connect("alice", 7, far)
    bus.publish(changed(CallStatus.LOCALHOLD))
    media.record("alice", 7, tmp_path / "held.wav", 16000)
    for _ in range(10):
        engine.tick()
    assert far.heard[-10:] == [SILENCE] * 10
    bus.publish(changed(CallStatus.INPROGRESS))
    engine.tick()
    assert far.heard[-1] != SILENCE
    media.disconnect("alice", 7)
    _, held = read_wav(tmp_path / "held.wav")
    assert not held[: 10 * FRAME_SAMPLES].any()
