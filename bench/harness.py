"""What the benchmarks share: core pinning, a live gateway in its own process, and readings of a process.

A benchmarked server runs as its own process pinned to one core (`SERVER_CPU`) while the
load generator runs pinned to another (`LOAD_CPU`), so the two never compete for a core.
The gateway is started exactly as an administrator starts it, `skype-fastagi serve
--config FILE`, with its log in a file.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

SERVER_CPU, LOAD_CPU = 0, 1
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

GENERAL = """
[general]
bind = 127.0.0.1
port = {port}
database = {folder}/state.db
media_dir = {folder}
incoming_dir = {folder}
control_socket = {folder}/control.sock
max_connections = 4096
{extra}
[audiosocket]
port = {audio_port}
"""
"""A benchmarked gateway's own files in `folder`, its listeners on free ports (never a running gateway's defaults)."""
EMBEDDED = "[alice]\ntype = account\n[bob]\ntype = user\n"


def gateway_config(port: int, folder: Path | str, extra: str = "", sections: str = EMBEDDED) -> str:
    """A benchmarked gateway's configuration: `extra` lines of [general], then `sections` (accounts, users, [ami])."""
    return GENERAL.format(port=port, folder=folder, extra=extra, audio_port=free_port()) + sections


def pin(cpu: int) -> None:
    """Run this process on `cpu` only, where the machine has cores to spare."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > max(SERVER_CPU, LOAD_CPU):
        os.sched_setaffinity(0, {cpu})


def raise_file_limit(wanted: int = 16384) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, wanted), hard), hard))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until `port` listens, without connecting: panoramisk's handler spins forever on a connection closed early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before listening")
        if listening(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


def listening(port: int) -> bool:
    """Whether a TCP socket listens on `port` (read from /proc/net/tcp: state 0A is LISTEN)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            return True
    return False


@dataclass
class Server:
    """A server process under test, pinned to `SERVER_CPU`."""

    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, argv: Sequence[str], port: int, log: Path, env: dict[str, str] | None = None) -> Server:
        with open(log, "ab") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                preexec_fn=_child_setup,
            )
        wait_for_port(port, process)
        return cls(process, port)

    @classmethod
    def gateway(cls, folder: Path, extra: str = "") -> Server:
        """`skype-fastagi serve` on a fresh state in `folder` (alice is its account, bob a user)."""
        port = free_port()
        config = folder / "gateway.conf"
        # (AudioSocket on a free port too: its default one may be another gateway's on this machine)
        config.write_text(gateway_config(port, folder, extra))
        argv = [sys.executable, "-m", "fastagi", "serve", "--config", str(config)]
        return cls.start(argv, port, folder / "gateway.log")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(30)


def _child_setup() -> None:
    """In a server process before it runs: its core, its file limit, and death with its parent."""
    pin(SERVER_CPU)
    raise_file_limit()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # no orphan left spinning


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, threads included, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(cpu: int) -> float:
    """CPU time core `cpu` spent on anything but idling and waiting for I/O since boot, from /proc/stat."""
    line = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith(f"cpu{cpu} "))
    ticks = [int(value) for value in line.split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def machine(placement: bool = True) -> str:
    """The machine a benchmark ran on, its load at that moment, and (`placement`) where the two sides run."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    load = "/".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"machine: {os.cpu_count()} cores{f' ({models[0]})' if models else ''}, {platform.platform()}, "
            f"Python {platform.python_version()}, load average {load}"
            + (f"; server on core {SERVER_CPU}, this load on core {LOAD_CPU}" if placement else ""))
