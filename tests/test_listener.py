"""The Listener's accept loop against a listening socket whose accept(2) fails as Linux's can."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

import pytest

from conftest import run
from fastagi.listener import PAUSE, Listener


class ScriptedSocket:
    """A listening socket whose accept() gives `outcomes` in turn, then EAGAIN (the queue is empty)."""

    def __init__(self, *outcomes: OSError | tuple[socket.socket, tuple[str, int]]) -> None:
        self.outcomes = list(outcomes)
        self._fd = socket.create_server(("127.0.0.1", 0))  # a descriptor for the loop to watch: nobody connects

    def fileno(self) -> int:
        return self._fd.fileno()

    def accept(self) -> tuple[socket.socket, tuple[str, int]]:
        outcome = self.outcomes.pop(0) if self.outcomes else BlockingIOError(errno.EAGAIN, "empty")
        if isinstance(outcome, OSError):
            raise outcome
        return outcome

    def close(self) -> None:
        self._fd.close()


class Seen(asyncio.Protocol):
    peers: list[tuple[str, int]] = []

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peers.append(peer)


def emfile() -> OSError:
    return OSError(errno.EMFILE, "Too many open files")


def test_descriptors_running_out_is_one_warning_then_a_look_every_pause(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> list[str]:
        pair = socket.socketpair()
        # fails three times (the first accept and two looks after a pause), then a descriptor is free again
        scripted = ScriptedSocket(emfile(), emfile(), emfile(), (pair[0], ("127.0.0.1", 5000)))
        listener = Listener("AGI", Seen)
        listener.serve([scripted], backlog=8)  # type: ignore[list-item]
        try:
            listener._accept(scripted)  # type: ignore[arg-type] - as the loop would, once a connection waits
            await asyncio.sleep(PAUSE * 3.5)
            return [record.getMessage() for record in caplog.records]
        finally:
            listener.close()
            pair[1].close()

    Seen.peers = []
    with caplog.at_level(logging.INFO, logger="fastagi.listener"):
        messages = run(body())
    assert messages[0].startswith("AGI out of file descriptors (Too many open files, RLIMIT_NOFILE ")
    assert messages[1].startswith("AGI accepting connections again after 0.")
    assert messages[1].endswith(" s (3 pauses; 0 silent connections closed to make room)")
    assert len(messages) == 2
    assert Seen.peers == [("127.0.0.1", 5000)]


def test_an_episode_ends_when_the_queue_emptied_while_paused(caplog: pytest.LogCaptureFixture) -> None:
    """Peers that left while the listener paused leave nothing to wake a reader: the look after the pause says so."""
    async def body() -> list[str]:
        scripted = ScriptedSocket(emfile())
        listener = Listener("AGI", Seen)
        listener.serve([scripted], backlog=8)  # type: ignore[list-item]
        try:
            listener._accept(scripted)  # type: ignore[arg-type]
            await asyncio.sleep(PAUSE * 1.5)
            return [record.getMessage() for record in caplog.records]
        finally:
            listener.close()

    with caplog.at_level(logging.INFO, logger="fastagi.listener"):
        messages = run(body())
    assert len(messages) == 2 and messages[1].startswith("AGI accepting connections again after 0.1 s (1 pauses;")


@pytest.mark.parametrize("code", [errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETUNREACH])
def test_a_connection_that_failed_in_the_queue_is_skipped_quietly(caplog: pytest.LogCaptureFixture, code: int) -> None:
    async def body() -> None:
        pair = socket.socketpair()
        scripted = ScriptedSocket(OSError(code, "gone"), (pair[0], ("127.0.0.1", 5001)))
        listener = Listener("AGI", Seen)
        listener.serve([scripted], backlog=8)  # type: ignore[list-item]
        listener._accept(scripted)  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        listener.close()
        pair[1].close()

    Seen.peers = []
    with caplog.at_level(logging.DEBUG):
        run(body())
    assert Seen.peers == [("127.0.0.1", 5001)]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_room_made_is_a_look_again_at_once_not_a_pause(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> list[str]:
        pair = socket.socketpair()
        scripted = ScriptedSocket(emfile(), (pair[0], ("127.0.0.1", 5002)))
        ready = socket.create_connection(scripted._fd.getsockname())  # the loop sees the socket readable from now on
        listener = Listener("AGI", Seen, make_room=lambda: 2)
        listener.serve([scripted], backlog=8)  # type: ignore[list-item]
        try:
            await asyncio.sleep(PAUSE / 2)  # less than one pause: the room made is used at once
            return [record.getMessage() for record in caplog.records]
        finally:
            listener.close()
            ready.close()
            pair[1].close()

    Seen.peers = []
    with caplog.at_level(logging.INFO, logger="fastagi.listener"):
        messages = run(body())
    assert Seen.peers == [("127.0.0.1", 5002)]
    assert messages[0].startswith("AGI out of file descriptors")
    assert messages[1].startswith("AGI accepting connections again after 0.0 s")
    assert messages[1].endswith(" s (0 pauses; 2 silent connections closed to make room)")
