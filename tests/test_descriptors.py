"""`serve` out of file descriptors: one warning per episode and server, no flood, accepting again once some close."""

from __future__ import annotations

import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from test_cli import COMMAND, agi, served_config, wait_for_port

LIMIT = 64  # descriptors the gateway may open: about 40 left for connections once it runs
FLOOD = 300  # idle connections, far more than that; the rest wait in the listen queue
SHORT = (f"max_connections = 2048, but this process may open only {LIMIT} files (RLIMIT_NOFILE), its own included: "
         "out of them, the gateway stops accepting connections until some close; raise the limit "
         "(LimitNOFILE= in the systemd unit, ulimit -n) or lower max_connections")


def environment() -> dict[str, str]:
    return {"PYTHONPATH": str(Path(__file__).parents[1]), "SKYPE_FASTAGI_CONFIG": "", "PATH": "/usr/bin:/bin"}


def serve_with_file_limit(tmp_path: Path, config: Path, limit: int) -> tuple[subprocess.Popen[bytes], Path]:
    """`serve --config config` with RLIMIT_NOFILE `limit` (soft and hard, as `ulimit -n` sets it), its log in a file."""
    log = tmp_path / "gateway.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [*COMMAND, "serve", "--config", str(config)], cwd=tmp_path, stderr=stderr,
            env=environment(),
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
        )
    return process, log


def idle_connections(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_out_of_descriptors_warns_once_and_accepts_again_once_some_close(tmp_path: Path, event_loop: str) -> None:
    # the gateway never reaps the idle ones itself here: the episode lasts until they close
    config, port = served_config(tmp_path, f"environment_timeout = 60\nevent_loop = {event_loop}")
    process, log = serve_with_file_limit(tmp_path, config, LIMIT)
    try:
        wait_for_port(port, process)
        flood = idle_connections(port, FLOOD)
        time.sleep(1.0)  # the gateway runs out
        admin = subprocess.Popen([*COMMAND, "show", "accounts", "--config", str(config)], cwd=tmp_path,
                                 env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)  # its connection waits in the control socket's queue; the gateway looks again and again
        during = log.read_text()
        for sock in flood:
            sock.close()
        began = time.monotonic()
        result = agi(port, "get-profile-balance?account=alice")
        answered = time.monotonic() - began
        assert result.skype()["SKYPE_STATUS"] == "SUCCESS"
        assert answered < 2.0, answered
        shown, _ = admin.communicate(timeout=10)
        assert admin.returncode == 0 and b"alice" in shown
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    text = log.read_text()
    warnings = [line.split(" ", 1)[1] for line in text.splitlines() if " WARNING fastagi.listener: " in line]
    assert warnings == [
        f"WARNING fastagi.listener: {SHORT}",  # at start: max_connections is 2048
        *(f"WARNING fastagi.listener: {server} out of file descriptors (Too many open files, RLIMIT_NOFILE {LIMIT}): "
          "not accepting connections until some close, trying again every 0.1 s" for server in ("AGI", "control")),
    ]
    assert all(warning in during for warning in warnings)  # said while it happened, not at the end
    for server in ("AGI", "control"):
        ended = re.search(rf"INFO fastagi.listener: {server} accepting connections again after [\d.]+ s "
                          r"\((\d+) pauses out of file descriptors\)", text)
        assert ended and int(ended.group(1)) >= 2, text[-3000:]
    assert "Traceback" not in text and " ERROR " not in text, text[:3000]


@pytest.mark.parametrize("max_connections", [500, 150])
def test_start_warns_when_max_connections_exceeds_the_descriptor_limit(tmp_path: Path, max_connections: int) -> None:
    config, port = served_config(tmp_path, f"max_connections = {max_connections}")
    process, log = serve_with_file_limit(tmp_path, config, 256)
    try:
        wait_for_port(port, process)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    warnings = [line.split(" ", 1)[1] for line in log.read_text().splitlines() if " WARNING " in line]
    # 150 connections and the gateway's own files fit in 256 descriptors; 500 do not
    assert warnings == ([f"WARNING fastagi.listener: {SHORT.replace('2048', '500').replace(str(LIMIT), '256')}"]
                        if max_connections == 500 else [])
