"""Audio for calls: which ports share a room, and the files played and recorded.

The embedded network tells this module when a call is answered (`connect`) and when a
leg goes away (`disconnect`); the actions ask it for a call's local port to play a WAV
into or to record from. A conference shares the host's local port: every participant
hears the host and each other, nobody hears themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..manager.events import Event, EventKind
from ..network.embedded import Leg, MediaHooks
from .engine import MediaEngine
from .ports import EchoPort, LocalPort, PlaybackPort, SilentPort
from .port import AudioPort
from .wav import WavPlayer, WavRecorder, load_wav

log = logging.getLogger("fastagi.media")

Key = tuple[str, int]
HELD = {"LOCALHOLD", "REMOTEHOLD", "ONHOLD"}


@dataclass
class CallAudio:
    port: LocalPort = field(default_factory=LocalPort)
    far: AudioPort | None = None  # the scripted party's port, when the far side is one
    recorders: list[WavRecorder] = field(default_factory=list)


class CallMedia(MediaHooks):
    def __init__(self, engine: MediaEngine, conference_of: Callable[[str, int], int | None]) -> None:
        self.engine = engine
        self._conference_of = conference_of
        self._calls: dict[Key, CallAudio] = {}

    def port(self, account: str, call_id: int) -> LocalPort:
        """The account's side of a call (created on first use: a file set before the answer plays from the answer)."""
        return self._audio((account, call_id)).port

    def record(self, account: str, call_id: int, path: Path, rate: int) -> None:
        """Record what the account hears on this call into a new WAV, until the call ends."""
        recorder = WavRecorder(path, rate)
        audio = self._audio((account, call_id))
        audio.recorders.append(recorder)
        audio.port.add_sink(recorder)

    def _audio(self, key: Key) -> CallAudio:
        audio = self._calls.get(key)
        if audio is None:
            audio = self._calls[key] = CallAudio(port=self._shared_port(key) or LocalPort())
        return audio

    def _shared_port(self, key: Key) -> LocalPort | None:
        """In a conference every call of the host uses the host's one local port."""
        conference = self._conference_of(*key)
        if conference is None:
            return None
        for (account, call_id), audio in self._calls.items():
            if account == key[0] and (call_id == conference or self._conference_of(account, call_id) == conference):
                return audio.port
        return None

    # -- MediaHooks --------------------------------------------------------------
    def connect(self, leg: Leg, far: Leg) -> None:
        """A call was answered: put its parties in a room (or into its conference's room)."""
        if leg.account is None or leg.call_id is None:
            leg, far = far, leg
        if leg.account is None or leg.call_id is None:
            return
        audio = self._audio((leg.account, leg.call_id))
        if far.account is not None and far.call_id is not None:
            other: AudioPort = self._audio((far.account, far.call_id)).port
        else:
            audio.far = other = scripted_port(far)
        room = self.engine.room_of(audio.port) or self.engine.room_of(other)
        if room is None:
            room = self.engine.create_room()
        for port in (audio.port, other):
            current = self.engine.room_of(port)
            if current is None:
                room.add(port)
            elif current is not room:
                room.merge(current)

    def disconnect(self, leg: Leg) -> None:
        """A leg ended: take its parties out, close its recordings, drop empty rooms."""
        if leg.account is None or leg.call_id is None:
            return
        audio = self._calls.pop((leg.account, leg.call_id), None)
        if audio is None:
            return
        for recorder in audio.recorders:
            audio.port.remove_sink(recorder)
            recorder.close()
        if audio.far is not None:
            self._leave(audio.far)
        if not any(other.port is audio.port for other in self._calls.values()):
            audio.port.set_source(None)
            self._leave(audio.port)

    def _leave(self, port: AudioPort) -> None:
        room = self.engine.room_of(port)
        if room is None:
            return
        room.remove(port)
        if len(room.ports) < 2:
            room.close()

    def on_event(self, event: Event) -> None:
        """Hold silences a call both ways: what it plays waits, its recording gets silence."""
        if event.kind is not EventKind.CALL_STATUS:
            return
        audio = self._calls.get((event.account, int(event.fields["CallID"])))
        if audio is not None:
            audio.port.held = event.fields["Status"] in HELD

    def close(self) -> None:
        for key in list(self._calls):
            self.disconnect(Leg(key[0], key[1]))


def scripted_port(leg: Leg) -> AudioPort:
    """What a scripted user sounds like: echo users echo, others play their greeting or stay silent."""
    user = leg.user
    if user is None:
        return SilentPort()
    if user.behaviour == "echo":
        return EchoPort()
    if user.greeting is not None:
        try:
            return PlaybackPort(WavPlayer(load_wav(user.greeting), loop=True))
        except Exception as exc:  # noqa: BLE001 - a broken greeting must not break the call
            log.warning("greeting of %s unusable (%s): silent instead", user.profile.handle, exc)
    return SilentPort()


