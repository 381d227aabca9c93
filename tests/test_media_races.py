"""A link swapped in between the check and the open never leads out of the media folder.

A thread exchanges a name inside the media folder with a symbolic link to the outside
(`renameat2(RENAME_EXCHANGE)`: both names always exist) in a tight loop, while actions
use the name.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Dialplan, Recorder, running_gateway, run
from fastagi.media.callmedia import CallMedia
from fastagi.media.engine import MediaEngine
from fastagi.media.errors import MediaFileError
from fastagi.media.voicemail import VoicemailBox
from fastagi.model.events import EventBus
from test_media_calls import ACCOUNTS, USERS, answered_call, tone

ROUNDS = 300
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(folder: Path, a: str, b: str) -> None:
    if _libc.renameat2(-100, os.fsencode(folder / a), -100, os.fsencode(folder / b), RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


@contextmanager
def swapping(folder: Path, a: str, b: str) -> Iterator[list[int]]:
    """Exchange `a` and `b` in `folder` until the block ends; the count of exchanges made."""
    done = threading.Event()
    count = [0]

    def loop() -> None:
        while not done.is_set():
            exchange(folder, a, b)
            count[0] += 1

    thread = threading.Thread(target=loop, daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the swapper gets the GIL often, not only when the event loop's thread blocks
    thread.start()
    try:
        yield count
    finally:
        done.set()
        thread.join()
        sys.setswitchinterval(interval)


def test_file_send_never_sends_the_outside_file(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            dial = Dialplan(gw.agi.port)
            media = tmp_path / "media"
            (tmp_path / "secret.txt").write_text("outside")
            (media / "swap.txt").write_text("inside")
            (media / "other.txt").symlink_to(tmp_path / "secret.txt")
            results = []
            with swapping(media, "swap.txt", "other.txt") as swaps:
                for _ in range(ROUNDS):
                    results.append((await dial("alice", "file-send", user_name="bob", file="swap.txt"))["SKYPE_ERROR"])
            assert swaps[0] > ROUNDS
            copies = [p.read_text() for p in (tmp_path / "incoming" / "bob").iterdir()]
            assert copies.count("outside") == 0
            assert set(copies) == {"inside"} and len(copies) == results.count("")
            assert set(results) <= {"", "invalid-argument"} and results.count("") > 0
    run(body())


def test_call_set_input_file_never_plays_the_outside_wav(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, ACCOUNTS + USERS) as gw:
            dial, rec = Dialplan(gw.agi.port), Recorder(gw.bus)
            media = tmp_path / "media"
            tone(tmp_path / "outside.wav", 440, 0.1)
            (media / "swap.wav").write_text("this is not a WAV file")
            (media / "other.wav").symlink_to(tmp_path / "outside.wav")
            call, _ = await answered_call(gw, dial, rec, "alice", "echo123")
            results = []
            with swapping(media, "swap.wav", "other.wav"):
                for _ in range(ROUNDS):
                    result = await dial("alice", "call-set-input-file", call_id=call, file_name="swap.wav")
                    results.append((result["SKYPE_STATUS"], result["SKYPE_ERROR"]))
            assert results.count(("SUCCESS", "")) == 0
            assert set(results) == {("FAILED", "invalid-argument")}
    run(body())


def test_call_set_output_file_never_creates_outside(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, ACCOUNTS + USERS) as gw:
            dial, rec = Dialplan(gw.agi.port), Recorder(gw.bus)
            media, outside = tmp_path / "media", tmp_path / "outside"
            (media / "recdir").mkdir()
            outside.mkdir()
            (media / "otherdir").symlink_to(outside)
            call, _ = await answered_call(gw, dial, rec, "alice", "echo123")
            results = []
            with swapping(media, "recdir", "otherdir"):
                for n in range(ROUNDS):
                    result = await dial("alice", "call-set-output-file", call_id=call, file_name=f"recdir/r{n}.wav")
                    results.append(result["SKYPE_ERROR"])
            assert len(list(outside.iterdir())) == 0
            made = sorted(p.name for p in (media / "recdir").iterdir()) + sorted(p.name for p in (media / "otherdir").iterdir())
            assert len(made) == results.count("") > 0
            assert set(results) <= {"", "invalid-argument"}
    run(body())


def test_received_files_never_land_outside(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            dial = Dialplan(gw.agi.port)
            incoming, outside = tmp_path / "incoming", tmp_path / "outside"
            (tmp_path / "media" / "note.txt").write_text("inside")
            (incoming / "bob").mkdir(parents=True)
            outside.mkdir()
            (incoming / "other").symlink_to(outside)
            results = []
            with swapping(incoming, "bob", "other"):
                for _ in range(ROUNDS):
                    results.append((await dial("alice", "file-send", user_name="bob", file="note.txt"))["SKYPE_ERROR"])
            assert len(list(outside.iterdir())) == 0
            kept = [p for folder in ("bob", "other") for p in (incoming / folder).iterdir()]
            assert len(kept) == results.count("") > 0
            assert set(results) <= {"", "invalid-argument"}
    run(body())


@pytest.mark.parametrize("swapped", ["voicemail/alice", "voicemail"])
def test_voicemail_recordings_never_land_outside(tmp_path: Path, swapped: str) -> None:
    """The voicemail box of XMPP calls, driven directly, while the account's folder or the voicemail folder is swapped."""
    media, outside = tmp_path / "media", tmp_path / "outside"
    box = VoicemailBox(CallMedia(MediaEngine(), EventBus()), media / "voicemail", 8000)
    (media / "voicemail" / "alice").mkdir(parents=True)
    (outside / "alice").mkdir(parents=True)
    target = media / swapped
    (target.parent / "other").symlink_to(outside / "alice" if swapped.endswith("alice") else outside)
    made = refused = 0
    with swapping(target.parent, target.name, "other"):
        for call_id in range(ROUNDS):
            try:
                box.record("alice", call_id)
                made += 1
            except MediaFileError:
                refused += 1
            box.stop("alice", call_id)
    assert len(list((outside / "alice").iterdir())) == 0
    assert made + refused == ROUNDS and made > 0
