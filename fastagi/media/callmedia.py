"""Audio for calls: which ports share a room, and the files played and recorded.

A network driver tells this module when a call's audio starts (`connect`, with the far
party's port) and when it ends (`disconnect`); the actions ask it for a call's local port
to play a WAV into or to record from, and the AudioSocket bridge puts an Asterisk channel
there. A conference shares the host's local port: every participant hears the host and
each other, nobody hears themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..model.audio import AudioPort
from ..model.calls import ENDED, HELD
from ..model.events import CallChanged, Event, EventBus
from .engine import MediaEngine
from .ports import LocalPort
from .wav import WavRecorder

log = logging.getLogger("fastagi.media")

Key = tuple[str, int]


@dataclass
class CallAudio:
    port: LocalPort = field(default_factory=LocalPort)
    far: AudioPort | None = None  # the other side, once the call's audio started
    recorders: list[WavRecorder] = field(default_factory=list)


class CallMedia:
    """Implements `network.driver.CallAudio` over the media engine."""

    def __init__(self, engine: MediaEngine, bus: EventBus) -> None:
        self.engine = engine
        self._calls: dict[Key, CallAudio] = {}
        self._conferences: dict[Key, int] = {}  # live calls in a conference, from their events
        bus.subscribe(self._on_event)

    def port(self, account: str, call_id: int) -> LocalPort:
        """The account's side of a call (created on first use: a file set before the answer plays from the answer)."""
        return self._audio((account, call_id)).port

    def record(self, account: str, call_id: int, path: Path, rate: int, fd: int | None = None) -> WavRecorder:
        """Record what the account hears on this call into a new WAV (`path`, or the new file `fd`), until the call ends."""
        recorder = WavRecorder(path, rate, fd=fd)
        audio = self._audio((account, call_id))
        audio.recorders.append(recorder)
        audio.port.add_sink(recorder)
        return recorder

    def stop_recording(self, account: str, call_id: int, recorder: WavRecorder) -> None:
        """Close one recording of a call that goes on."""
        audio = self._calls.get((account, call_id))
        if audio is not None and recorder in audio.recorders:
            audio.recorders.remove(recorder)
            audio.port.remove_sink(recorder)
        recorder.close()

    def _audio(self, key: Key) -> CallAudio:
        audio = self._calls.get(key)
        if audio is None:
            audio = self._calls[key] = CallAudio(port=self._shared_port(key) or LocalPort())
        return audio

    def _shared_port(self, key: Key) -> LocalPort | None:
        """In a conference every call of the host uses the host's one local port."""
        conference = self._conferences.get(key)
        if conference is None:
            return None
        for (account, call_id), audio in self._calls.items():
            if account == key[0] and (call_id == conference or self._conferences.get((account, call_id)) == conference):
                return audio.port
        return None

    # -- network.driver.CallAudio ------------------------------------------------------
    def connect(self, account: str, call_id: int, far: AudioPort) -> None:
        """The call's audio starts: its local port and `far` share a room (its conference's room, if any)."""
        audio = self._audio((account, call_id))
        if audio.far is not None:
            self._leave(audio.far)
        audio.far = far
        room = self.engine.room_of(audio.port) or self.engine.create_room()
        if self.engine.room_of(audio.port) is None:
            room.add(audio.port)
        room.add(far)

    def disconnect(self, account: str, call_id: int) -> None:
        """A call ended: take its far party out, close its recordings, drop empty rooms."""
        audio = self._calls.pop((account, call_id), None)
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

    def _on_event(self, event: Event) -> None:
        """Follows each call's conference; hold silences a call both ways (what it plays waits, its recording gets silence)."""
        if not isinstance(event, CallChanged):
            return
        key = (event.account, event.call_id)
        if event.conference_id is not None and event.status not in ENDED:
            self._conferences[key] = event.conference_id
        else:
            self._conferences.pop(key, None)
        audio = self._calls.get(key)
        if audio is not None:
            audio.port.held = event.status in HELD

    def close(self) -> None:
        for account, call_id in list(self._calls):
            self.disconnect(account, call_id)
