"""Voicemail the gateway runs itself, for networks that have none (XMPP).

A call sent there hears the account's greeting (a WAV), then a short beep, and what the
caller says after the beep is recorded into a new WAV under the media folder's
`voicemail/<account>/`, until the caller hangs up or the message reaches its longest.
The network driver says when each step starts (it owns the call's statuses); this module
does the audio.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..model.audio import ENGINE_RATE
from .callmedia import CallMedia
from .engine import FRAME_SECONDS
from .paths import CREATE_FLAGS, open_subfolder
from .wav import WavPlayer, WavRecorder, load_wav

log = logging.getLogger("fastagi.media")

BEEP_HZ = 1000.0
BEEP_SECONDS = 0.4


def beep() -> np.ndarray:
    """The tone that says 'speak now': 0.4 s of 1 kHz at -12 dBFS, faded in and out over 10 ms."""
    n = np.arange(int(BEEP_SECONDS * ENGINE_RATE))
    envelope = np.minimum(1.0, np.minimum(n, n[::-1]) / (0.01 * ENGINE_RATE))
    return (0.25 * 32767 * envelope * np.sin(2 * np.pi * BEEP_HZ * n / ENGINE_RATE)).astype("<i2")


class VoicemailBox:
    """Implements `network.driver.Voicemail` with the calls' media."""

    def __init__(self, media: CallMedia, folder: Path, rate: int) -> None:
        self._media = media
        self._folder = folder
        self._rate = rate
        self._recordings: dict[tuple[str, int], WavRecorder] = {}

    async def greet(self, account: str, call_id: int, greeting: Path | None) -> None:
        """Play the greeting (if it can be read: else only the beep) and the beep into the call; return when done."""
        samples = [beep()]
        if greeting is not None:
            try:
                samples.insert(0, load_wav(greeting))
            except Exception as exc:  # noqa: BLE001 - a broken greeting must not lose the caller's message
                log.warning("voicemail greeting of %s unusable (%s): the beep only", account, exc)
        player = WavPlayer(np.concatenate(samples))
        self._media.port(account, call_id).set_source(player)
        while not player.finished:
            await asyncio.sleep(FRAME_SECONDS)

    def record(self, account: str, call_id: int) -> Path:
        """Start recording the caller into a new file of the account's voicemail folder."""
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-call{call_id}.wav"
        path = self._folder / account / name
        folder = open_subfolder(self._folder.parent, self._folder.name, account)  # media/voicemail/<account>
        try:
            fd = os.open(name, CREATE_FLAGS, 0o640, dir_fd=folder)  # never through a link swapped in
        finally:
            os.close(folder)
        self._recordings[(account, call_id)] = self._media.record(account, call_id, path, self._rate, fd=fd)
        log.info("voicemail of %s: call %d recording into %s", account, call_id, path)
        return path

    def stop(self, account: str, call_id: int) -> tuple[Path, float] | None:
        """End the recording of a call: the message's file and seconds, or None if none was started."""
        recorder = self._recordings.pop((account, call_id), None)
        if recorder is None:
            return None
        self._media.stop_recording(account, call_id, recorder)
        return recorder.path, recorder.seconds
