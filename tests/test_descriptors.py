"""`serve` out of file descriptors: one warning per episode and server, no flood, accepting again once some close."""

from __future__ import annotations

import re
import resource
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from doubles.asterisk_agi import environment as agi_environment
from test_cli import COMMAND, agi, served_config, wait_for_port

LIMIT = 64  # descriptors the gateway may open: about 40 left for connections once it runs
FLOOD = 300  # connections, far more than that: the rest wait in the listen queue
SHORT = (f"max_connections = 2048, but this process may open only {LIMIT} files (RLIMIT_NOFILE), its own included: "
         "out of them, the gateway stops accepting connections until some close; raise the limit "
         "(LimitNOFILE= in the systemd unit, ulimit -n) or lower max_connections")


def environment() -> dict[str, str]:
    return {"PYTHONPATH": str(Path(__file__).parents[1]), "SKYPE_FASTAGI_CONFIG": "", "PATH": "/usr/bin:/bin"}


@contextmanager
def serving_with_file_limit(tmp_path: Path, general: str, limit: int = LIMIT) -> Iterator[tuple[Path, int, Path]]:
    """`serve` (its config, FastAGI port and log file) with RLIMIT_NOFILE `limit`, soft and hard as `ulimit -n` sets it."""
    config, port = served_config(tmp_path, general)
    log = tmp_path / "gateway.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [*COMMAND, "serve", "--config", str(config)], cwd=tmp_path, stderr=stderr, env=environment(),
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
        )
    try:
        wait_for_port(port, process)
        yield config, port, log
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


def answered_in(port: int) -> float:
    """Seconds a normal session took, which must succeed."""
    began = time.monotonic()
    assert agi(port, "get-profile-balance?account=alice").skype()["SKYPE_STATUS"] == "SUCCESS"
    return time.monotonic() - began


def connections(port: int, count: int, send: Callable[[int], bytes] = lambda n: b"") -> list[socket.socket]:
    """`count` connections, connection n sending `send(n)` at once; the gateway's listen queue takes them all."""
    made = []
    for n in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(send(n))
        made.append(sock)
    return made


def waiting_session(port: int) -> Callable[[int], bytes]:
    """A whole environment of get-profile-balance without an account: the gateway asks for the channel's and waits."""
    return lambda n: agi_environment("get-profile-balance", [], f"1.{n}", f"PJSIP/{n}", port)


def exhausted(server: str) -> str:
    return (f"WARNING fastagi.listener: {server} out of file descriptors (Too many open files, RLIMIT_NOFILE {LIMIT}): "
            "not accepting connections until some close, trying again every 0.1 s")


def episode_end(server: str, text: str) -> tuple[int, int]:
    """The pauses and the connections closed to make room that `server`'s episode took, from its INFO line."""
    ended = re.search(ENDED.format(server=server), text)
    assert ended, text[-3000:]
    return int(ended.group(1)), int(ended.group(2))


ENDED = (r"INFO fastagi.listener: {server} accepting connections again after [\d.]+ s "
         r"\((\d+) pauses; (\d+) silent connections closed to make room\)")


def until_ended(log: Path, *servers: str) -> None:
    """Wait (up to 10 s) until each of `servers` said its episode ended: the gateway must still run to say it."""
    deadline = time.monotonic() + 10
    while not all(re.search(ENDED.format(server=server), log.read_text()) for server in servers):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)


def listener_warnings(text: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in text.splitlines() if " WARNING fastagi.listener: " in line]


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_out_of_descriptors_warns_once_and_accepts_again_once_some_close(tmp_path: Path, event_loop: str) -> None:
    """Sessions that hold their descriptors (each waits for a reply): nothing can be closed to make room."""
    with serving_with_file_limit(tmp_path, f"event_loop = {event_loop}") as (config, port, log):
        flood = connections(port, FLOOD, waiting_session(port))
        time.sleep(1.0)  # the gateway runs out
        admin = subprocess.Popen([*COMMAND, "show", "accounts", "--config", str(config)], cwd=tmp_path,
                                 env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)  # its connection waits in the control socket's queue; the gateway looks again and again
        during = log.read_text()
        for sock in flood:
            sock.close()
        assert answered_in(port) < 2.0
        shown, _ = admin.communicate(timeout=10)
        assert admin.returncode == 0 and b"alice" in shown
        until_ended(log, "AGI", "control")
    text = log.read_text()
    assert listener_warnings(text) == [f"WARNING fastagi.listener: {SHORT}", exhausted("AGI"), exhausted("control")]
    assert exhausted("AGI") in during and exhausted("control") in during  # said while it happened
    for server in ("AGI", "control"):
        pauses, closed = episode_end(server, text)
        assert pauses >= 10 and closed == 0
    assert "Traceback" not in text and " ERROR " not in text, text[:3000]


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_silent_connections_are_closed_to_let_a_session_in(tmp_path: Path, event_loop: str) -> None:
    """Out of descriptors, the oldest connections that sent no environment for 0.5 s make room for new ones."""
    with serving_with_file_limit(tmp_path, f"environment_timeout = 60\nevent_loop = {event_loop}") as (_, port, log):
        flood = connections(port, FLOOD)
        time.sleep(0.5)
        assert answered_in(port) < 3.0  # behind 300 silent ones in the queue
        for sock in flood:
            sock.close()
        until_ended(log, "AGI")
    text = log.read_text()
    assert listener_warnings(text) == [f"WARNING fastagi.listener: {SHORT}", exhausted("AGI")]
    _, closed = episode_end("AGI", text)
    made_room = text.count("sent no complete environment and was closed to make room: out of file descriptors")
    # more than the descriptors could hold; all of the flood when the last batch of 64 finds every remaining one silent
    # for long enough (the normal session, answered above, was not among them)
    assert closed == made_room and FLOOD - LIMIT < closed <= FLOOD, (closed, made_room)
    assert "Traceback" not in text and " ERROR " not in text, text[:3000]


@pytest.mark.parametrize("max_connections", [500, 150])
def test_start_warns_when_max_connections_exceeds_the_descriptor_limit(tmp_path: Path, max_connections: int) -> None:
    with serving_with_file_limit(tmp_path, f"max_connections = {max_connections}", 256) as (_, _, log):
        pass
    # 150 connections and the gateway's own files fit in 256 descriptors; 500 do not
    assert listener_warnings(log.read_text()) == ([f"WARNING fastagi.listener: {SHORT.replace('2048', '500').replace(str(LIMIT), '256')}"]
                        if max_connections == 500 else [])
