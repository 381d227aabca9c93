"""Bridged calls one core sustains: N Skype calls to echo123, each bridged to an AudioSocket,
against a bare AudioSocket echo server doing only the socket work for the same N calls.

Each server runs alone in a child process pinned to one core (so is everything it runs,
threads of native libraries included); this process, pinned to another core, plays
Asterisk. For the gateway it starts each call with a FastAGI `call-start`, connects an
AudioSocket with the returned `SKYPE_CALL_UUID` and, once every call is bridged, sends
20 ms frames of a tone on a real clock for every connection while reading what comes
back. The bare server (an `asyncio.Protocol` per connection that writes back every
chunk it reads, on the default loop) gets the same connections and frames: its CPU is
the cost of the sockets alone, measured in the same run, on the same machine load.
With `--bare clocked` it holds what it reads until a 20 ms clock writes it all back,
connection after connection, as the gateway's tick does: a socket written 20 ms after it
was read has gone cold in the caches, and that costs the kernel more than an echo does.
With `--bare polled` it does the gateway's socket work and nothing else: one epoll for
every connection, polled on the 20 ms clock, each ready socket read once and what it
read written back in one `send`; the gateway's CPU beyond it is its own work.

Figures per row, over the measured window: each server's CPU per call and 20 ms period
(µs/call; of it, the part in user space) and share of its core, and their ratio; the gateway's media ticks that were
late (started > 10 ms after their deadline, skipped ones included), jitter-buffer
underruns, the audio that came back (bytes received against one frame per call and
period), its resident memory per bridged call (growth from before the first call to the
end of the window, divided by the calls), and the p99 latency of FastAGI sessions
arriving at a fixed rate (`--agi-rate`, from a process of their own) while the calls go
on (for `--agi-seconds` after the window) against the same gateway's before its first call; and this load generator's own late send
rounds (> 10 ms behind its schedule: then the servers were not offered the load the row
claims). The machine's load average is printed with every row: the figures are only as
steady as the machine is idle, their ratio to the same-run baseline steadier.

With `--phases N` the calls send in N groups spread evenly over each 20 ms, as
channels with clocks of their own do, rather than all at the same moment. `--khz 8` is
the `AudioSocket()` application's framing, `--khz 16` that of
`Dial(AudioSocket/…/c(slin16))`.

With `--rounds N` both servers take turns N times per row and each figure is the median
of its rounds: on a shared machine a single run can be off by a third.

    python -m bench.audiosocket [--seconds 5] [--khz 8|16] [--calls 250 500 750 1000] [--phases 1]
                                [--agi-rate 200] [--agi-seconds 3] [--rounds 1] [--bare echo|clocked|polled]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import resource
import select
import socket
import statistics
import struct
import tempfile
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

from .agi_load import WARM_UP, Measured, Target, offer_paced, one_session
from .harness import LOAD_CPU, SERVER_CPU, machine, percentile, pin, raise_file_limit, rss_kib

CONFIG = """
[general]
bind = 127.0.0.1
database = {folder}/state.db
media_dir = {folder}
incoming_dir = {folder}
control_socket = {folder}/control.sock
log_level = warning
max_connections = 10000
session_timeout = 600
[alice]
type = account
[echo123]
type = user
behaviour = echo
ring_delay = 0
answer_delay = 0
"""
HEADER = struct.Struct("!BH")
KINDS = {8: 0x10, 16: 0x12}
"""AudioSocket's audio kind for each rate in kHz."""
CALL_START = "call-start?account=alice&user-name=echo123"
AGI_BESIDE = "get-profile-balance?account=alice"
"""The FastAGI sessions served while the calls are bridged."""
AGI_OPEN = 200
PERIOD = 0.020
Beside = Callable[[], Awaitable[Measured]]
"""FastAGI sessions served for the seconds the gateway was told, and their figures."""
BARE_STYLES = {"echo": "echoes at once", "clocked": "writes on a 20 ms clock",
               "polled": "reads and writes on a 20 ms clock with one epoll"}


# -- the servers, each alone in its process -------------------------------------------------
def gateway_process(folder: str, pipe: Connection) -> None:
    pin(SERVER_CPU)
    asyncio.run(_gateway(folder, pipe))


async def _gateway(folder: str, pipe: Connection) -> None:
    from fastagi.app import Gateway, with_ports
    from fastagi.cli import tune_collector
    from fastagi.config import load_config

    path = Path(folder) / "bench.conf"
    path.write_text(CONFIG.format(folder=folder))
    gateway = Gateway(with_ports(load_config(path), 0, 0))
    await gateway.start()
    tune_collector()  # as `serve` does
    assert gateway.audiosocket is not None
    pipe.send((gateway.agi.port, gateway.audiosocket.port))
    media, sockets = gateway.media, gateway.audiosocket

    def report() -> dict[str, int]:
        return {"ticks": media.ticks, "late": media.late_ticks, "underruns": sockets.counters.underruns,
                "bridged": sockets.active}

    await _serve_reports(pipe, report)
    await gateway.stop()


def bare_process(style: str, pipe: Connection) -> None:
    pin(SERVER_CPU)
    asyncio.run(_bare_polled(pipe) if style == "polled" else _bare(style == "clocked", pipe))


class BareEcho(asyncio.Protocol):
    """The socket work of one AudioSocket call and nothing else: every chunk read is written back."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.write = transport.write  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.write(data)


class ClockedEcho(asyncio.Protocol):
    """The same socket work paced as the gateway's: what is read waits for the next 20 ms tick."""

    def __init__(self, echoes: list[ClockedEcho]) -> None:
        self.pending: list[bytes] = []
        echoes.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.write = transport.write  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.pending.append(data)


async def _bare(clocked: bool, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    echoes: list[ClockedEcho] = []
    server = await loop.create_server((lambda: ClockedEcho(echoes)) if clocked else BareEcho, "127.0.0.1", 0)
    pipe.send((0, server.sockets[0].getsockname()[1]))
    if clocked:
        loop.create_task(_write_every_tick(echoes))
    await _serve_reports(pipe, lambda: {})
    server.close()


async def _write_every_tick(echoes: list[ClockedEcho]) -> None:
    loop = asyncio.get_running_loop()
    origin, tick = loop.time(), 0
    while True:
        tick += 1
        await asyncio.sleep(max(0.0, origin + tick * PERIOD - loop.time()))
        for echo in echoes:
            if echo.pending:
                echo.write(b"".join(echo.pending))
                echo.pending.clear()


async def _bare_polled(pipe: Connection) -> None:
    """The gateway's socket work alone: after the UUID, one epoll for every socket, each ready one read once
    on a 20 ms clock and what it read written back in one `send`."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    listener.setblocking(False)
    pipe.send((0, listener.getsockname()[1]))
    epoll, sockets, held = select.epoll(), {}, {}

    async def accept() -> None:
        while True:
            sock, _ = await loop.sock_accept(listener)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio sets it on the gateway's sockets
            await loop.sock_recv(sock, HEADER.size + 16)  # the UUID message
            sockets[sock.fileno()] = sock
            epoll.register(sock.fileno(), select.EPOLLIN)

    async def tick() -> None:
        origin, number, view = loop.time(), 0, memoryview(bytearray(1 << 16))
        while True:
            number += 1
            await asyncio.sleep(max(0.0, origin + number * PERIOD - loop.time()))
            for fileno, _ in epoll.poll(0, max(len(sockets), 1)):
                size = sockets[fileno].recv_into(view)
                held[fileno] = bytes(view[:size])
            for fileno, data in held.items():
                sockets[fileno].send(data)
            held.clear()

    tasks = [loop.create_task(accept()), loop.create_task(tick())]
    await _serve_reports(pipe, lambda: {})
    for task in tasks:
        task.cancel()


async def _serve_reports(pipe: Connection, report: Any) -> None:
    """Answer the load's "report" (with this process's CPU time, threads included) until it says "stop"."""
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, pipe.recv) != "stop":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        pipe.send({**report(), "cpu": usage.ru_utime + usage.ru_stime, "user": usage.ru_utime})


# -- Asterisk's side ------------------------------------------------------------------------
async def call_start(port: int, uniqueid: int) -> str:
    """Asterisk runs `call-start`; the call's AudioSocket UUID."""
    ended = await one_session(port, CALL_START, uniqueid)
    return next(line.split(b'"')[1].decode() for line in ended.commands if line.startswith(b"SET VARIABLE SKYPE_CALL_UUID "))


def tone_message(kind: int) -> bytes:
    """One 20 ms AudioSocket message of a 440 Hz tone."""
    rate = 8000 if kind == KINDS[8] else 16000
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(rate * PERIOD)) / rate)).astype("<i2").tobytes()
    return HEADER.pack(kind, len(samples)) + samples


class Channels:
    """Asterisk's ends of N AudioSocket connections, on plain non-blocking sockets.

    asyncio's transports would cost this process more per frame than the servers spend:
    sending and reading with one system call each keeps the load generator ahead of them.
    """

    def __init__(self, port: int, uuids: list[str]) -> None:
        self.sockets: list[socket.socket] = []
        for call in uuids:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(HEADER.pack(0x01, 16) + uuid.UUID(call).bytes)
            sock.setblocking(False)
            self.sockets.append(sock)
        self.received = 0
        self.unsent = 0

    def send(self, group: list[socket.socket], frame: bytes) -> None:
        for sock in group:
            try:
                sent = sock.send(frame)
            except BlockingIOError:
                self.unsent += 1  # the server has stopped reading: its buffers are full
                continue
            if sent < len(frame):  # the rest of a message must follow, or the stream breaks
                sock.setblocking(True)
                sock.sendall(frame[sent:])
                sock.setblocking(False)

    def read(self) -> None:
        for sock in self.sockets:
            try:
                self.received += len(sock.recv(1 << 16))
            except BlockingIOError:
                pass

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@dataclass
class Server:
    """A server in its child process, as the load sees it."""

    process: multiprocessing.process.BaseProcess
    pipe: Connection
    agi_port: int
    audio_port: int

    @classmethod
    def start(cls, target: Any, *args: Any) -> Server:
        ours, theirs = multiprocessing.Pipe()
        process = multiprocessing.get_context("spawn").Process(target=target, args=(*args, theirs))
        process.start()
        agi_port, audio_port = ours.recv()
        return cls(process, ours, agi_port, audio_port)

    async def report(self) -> dict[str, float]:
        self.pipe.send("report")
        figures = await asyncio.get_running_loop().run_in_executor(None, self.pipe.recv)
        assert self.process.pid is not None
        return {**figures, "rss": rss_kib(self.process.pid)}

    def stop(self) -> None:
        self.pipe.send("stop")
        self.process.join(30)


async def drive(
    server: Server, uuids: list[str], seconds: float, kind: int, phases: int,
    beside: tuple[float, Beside] | None = None,
) -> dict[str, float]:
    """Connect a channel per UUID, send a tone on every one for `seconds` after a warm-up second; the figures.

    `beside`, if given (its seconds, and what it runs), runs after those `seconds` while the
    tone goes on (FastAGI sessions, for the gateway): its own CPU stays out of the figures.
    """
    frame = tone_message(kind)
    channels = Channels(server.audio_port, uuids)
    groups = [channels.sockets[phase::phases] for phase in range(phases)]
    loop = asyncio.get_running_loop()

    async def send_for(duration: float) -> tuple[int, int]:
        """Send for `duration` seconds; (periods, send rounds started > 10 ms late)."""
        origin, step, late = loop.time(), PERIOD / phases, 0
        periods = round(duration / PERIOD)
        for n in range(periods * phases):
            due = origin + n * step
            await asyncio.sleep(max(0.0, due - loop.time()))
            late += loop.time() - due > 0.010
            channels.send(groups[n % phases], frame)
            if n % phases == phases - 1:
                channels.read()
        return periods, late

    try:
        await send_for(1.0)  # warm up: jitter buffers fill, buffers settle
        before, received = await server.report(), channels.received
        periods, late_rounds = await send_for(seconds)
        after, received = await server.report(), channels.received - received
        served: Measured | None = None
        if beside is not None:
            beside_seconds, serve = beside
            _, served = await asyncio.gather(send_for(beside_seconds), serve())
    finally:
        channels.close()
    calls = len(uuids)
    cpu, user = after["cpu"] - before["cpu"], after["user"] - before["user"]
    ticks = after.get("ticks", 0) - before.get("ticks", 0)
    return {
        "us_per_call": 1e6 * cpu / (periods * calls), "user_us_per_call": 1e6 * user / (periods * calls),
        "core_pct": 100 * cpu / (periods * PERIOD),
        "late_pct": 100 * (after.get("late", 0) - before.get("late", 0)) / max(ticks, 1),
        "underruns": after.get("underruns", 0) - before.get("underruns", 0), "bridged": after.get("bridged", calls),
        "back_pct": 100 * received / (periods * calls * len(frame)), "rss": after["rss"],
        "gen_late_pct": 100 * late_rounds / (periods * phases), "unsent": channels.unsent,
        "agi_p99_ms": 1000 * percentile(served.latencies, 0.99) if served is not None else float("nan"),
        "agi_failed": served.failed if served is not None else 0,
    }


async def measure_gateway(
    server: Server, calls: int, seconds: float, kind: int, phases: int, agi_rate: float, agi_seconds: float
) -> dict[str, float]:
    """The gateway's figures, with its memory per call and its FastAGI p99 idle (before any call) and meanwhile."""
    target = Target(server.agi_port, AGI_BESIDE)
    loop = asyncio.get_running_loop()

    def fastagi() -> Awaitable[Measured]:
        return loop.run_in_executor(sessions, fastagi_process, target, agi_rate, agi_seconds)

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as sessions:
        return await _measure_gateway(server, calls, seconds, kind, phases, (agi_seconds, fastagi))


def fastagi_process(target: Target, rate: float, seconds: float) -> Measured:
    """FastAGI sessions at `rate` for `seconds`, from a process of their own: this one's send rounds would delay them.

    It shares its core with the calls' load, so it runs ahead of it when it may (real-time
    priority: root only): otherwise its own wait for the core, behind the load's send
    rounds, would count as the gateway's latency.
    """
    pin(LOAD_CPU)
    with contextlib.suppress(PermissionError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    return asyncio.run(offer_paced(target, rate, seconds - WARM_UP, AGI_OPEN))  # it warms up for WARM_UP first


async def _measure_gateway(
    server: Server, calls: int, seconds: float, kind: int, phases: int, fastagi: tuple[float, Beside]
) -> dict[str, float]:
    _, serve = fastagi
    idle_p99 = 1000 * percentile((await serve()).latencies, 0.99)
    idle_rss = (await server.report())["rss"]
    uuids: list[str] = []
    for start in range(0, calls, 50):
        uuids += await asyncio.gather(*(call_start(server.agi_port, n) for n in range(start, min(calls, start + 50))))
    await asyncio.sleep(0.2)  # echo123 answers at once
    row = await drive(server, uuids, seconds, kind, phases, beside=fastagi)
    return {**row, "kib_per_call": (row["rss"] - idle_rss) / calls, "agi_idle_p99_ms": idle_p99}


def run_row(
    calls: int, seconds: float, kind: int, phases: int, agi_rate: float, agi_seconds: float, bare_style: str
) -> tuple[dict[str, float], dict[str, float]]:
    """The bare echo server, then the gateway, with the same calls: (gateway's figures, bare server's)."""
    raise_file_limit()
    bare = Server.start(bare_process, bare_style)
    try:
        base = asyncio.run(drive(bare, [str(uuid.uuid4()) for _ in range(calls)], seconds, kind, phases))
    finally:
        bare.stop()
    with tempfile.TemporaryDirectory() as folder:
        gateway = Server.start(gateway_process, folder)
        try:
            ours = asyncio.run(measure_gateway(gateway, calls, seconds, kind, phases, agi_rate, agi_seconds))
        finally:
            gateway.stop()
    return ours, base


def median_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds (bridged calls: the fewest)."""
    merged = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    return {**merged, "bridged": min(row["bridged"] for row in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--khz", type=int, choices=sorted(KINDS), default=8, help="the AudioSocket rate")
    parser.add_argument("--calls", type=int, nargs="+", default=[250, 500, 750, 1000])
    parser.add_argument("--phases", type=int, default=1, help="send groups spread over each 20 ms")
    parser.add_argument("--agi-rate", type=float, default=200, help="FastAGI sessions/s served beside the calls")
    parser.add_argument("--agi-seconds", type=float, default=3.0,
                        help="how long FastAGI sessions are measured, idle and beside the calls")
    parser.add_argument("--rounds", type=int, default=1, help="runs of both servers per row; the medians are shown")
    parser.add_argument("--bare", choices=("echo", "clocked", "polled"), default="echo",
                        help="the bare server writes back at once; or on a 20 ms clock as the gateway does; "
                        "or reads and writes on that clock with one epoll, as the gateway does")
    args = parser.parse_args()
    pin(LOAD_CPU)
    print(machine())
    print(f"{args.khz} kHz AudioSocket, {args.phases} send phase(s) per 20 ms, {args.seconds:g} s per row, "
          f"median of {args.rounds} round(s); the bare server {BARE_STYLES[args.bare]}; "
          f"FastAGI {AGI_BESIDE.split('?')[0]} arriving at {args.agi_rate:g}/s beside the calls")
    print(f"{'calls':>6} {'bridged':>7} | {'gateway':>7} {'user':>5} {'core %':>6} {'late %':>6} {'underr':>6} {'back %':>6} "
          f"{'KiB/call':>8} | {'bare':>6} {'user':>5} {'core %':>6} | {'x bare':>6} {'+µs':>6} | {'agi p99':>7} {'x idle':>6} | "
          f"{'gen late %':>10} {'load':>5}")
    for calls in args.calls:
        rounds = [run_row(calls, args.seconds, KINDS[args.khz], args.phases, args.agi_rate, args.agi_seconds, args.bare)
                  for _ in range(args.rounds)]
        ours, base = median_row([gateway for gateway, _ in rounds]), median_row([bare for _, bare in rounds])
        print(f"{calls:>6} {int(ours['bridged']):>7} | {ours['us_per_call']:>7.2f} {ours['user_us_per_call']:>5.1f} {ours['core_pct']:>6.1f} "
              f"{ours['late_pct']:>6.2f} {int(ours['underruns']):>6} {ours['back_pct']:>6.1f} {ours['kib_per_call']:>8.1f} | "
              f"{base['us_per_call']:>6.2f} {base['user_us_per_call']:>5.1f} {base['core_pct']:>6.1f} | "
              f"{ours['us_per_call'] / max(base['us_per_call'], 1e-9):>6.2f} {ours['us_per_call'] - base['us_per_call']:>6.2f} | "
              f"{ours['agi_p99_ms']:>7.2f} {ours['agi_p99_ms'] / ours['agi_idle_p99_ms']:>6.2f} | "
              f"{max(ours['gen_late_pct'], base['gen_late_pct']):>10.2f} {os.getloadavg()[0]:>5.2f}", flush=True)
        for name, row in (("gateway", ours), ("bare server", base)):
            if row["unsent"]:
                print(f"       ({row['unsent']} frames not sent: the {name} stopped reading)")
        if ours["agi_failed"]:
            print(f"       ({ours['agi_failed']} FastAGI sessions failed)")
        if max(ours["gen_late_pct"], base["gen_late_pct"]) > 1:
            print("       (the load side fell behind its schedule: the servers were offered less than the row says)")
    print("gateway, bare: CPU µs per call and 20 ms (user: the part in user space, the rest is the kernel's); x bare: their ratio; +µs: what the gateway adds to the sockets' "
          "own cost; agi p99: FastAGI p99 in ms with the calls on, x idle: against the same gateway before its first call")


if __name__ == "__main__":
    main()
