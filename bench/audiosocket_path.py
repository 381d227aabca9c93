"""A bridged call's own CPU, without sockets: what the gateway adds to the socket work.

N AudioSocket sessions of the real server run on stub transports (a write is counted,
not sent) and are bridged as `bridge.py` bridges them: the connection is the source and
a sink of the call's local port, in a room with echo123's echo. Each tick, every session
is handed one 20 ms audio message as a socket read would hand it, then the engine ticks
(its lanes convert and write every connection's frame) and the loop runs what the tick
queued. Printed: CPU per call and tick, the best of 7 runs of `--ticks` ticks (on a
shared machine the best run is the one least disturbed). `--profile` prints cProfile's
costliest functions instead, whose own overhead inflates every figure it shows.

With `--sockets` the sessions are real loopback TCP connections instead, read and written
by the server's poller as in the gateway: Asterisk's side (plain sockets in this process)
sends every connection its message before each tick and drains what came back after it,
outside the timed part; what is timed is the tick alone, wall-clock, so it counts the
gateway's own work and its system calls (with the kernel's work for the receiving end of
each send, which a tick pays too). `bench.audiosocket` measures the same on a real clock
from another process, where the machine's noise between runs is larger than most changes.

    python -m bench.audiosocket_path [--khz 8|16] [--calls 250 500 1000] [--ticks 200] [--sockets] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import socket
import time
import uuid
from typing import Any

from fastagi.audiosocket.server import AudioSocketConnection, AudioSocketServer, _Session
from fastagi.media.engine import MediaEngine
from fastagi.media.ports import LocalPort
from fastagi.model.audio import EchoPort

from .audiosocket import HEADER, KINDS, tone_message
from .harness import SERVER_CPU, machine, pin, raise_file_limit

RUNS = 7


class StubTransport(asyncio.Transport):
    """A socket that takes every write at once and counts the bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 0) if name == "peername" else default

    def close(self) -> None:
        pass


class EchoCalls:
    """Binds every connection as `bridge.py` does, to a call whose far party is echo123."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine

    def attach(self, call: uuid.UUID, conn: AudioSocketConnection) -> bool:
        local = LocalPort()
        local.set_source(conn)
        local.add_sink(conn)
        room = self.engine.create_room()
        room.add(local)
        room.add(EchoPort())
        return True

    def dtmf(self, call: uuid.UUID, digit: str) -> None:
        pass

    def detached(self, call: uuid.UUID) -> None:
        pass


async def measure(calls: int, kind: int, ticks: int, profile: bool) -> float:
    """CPU seconds per call and tick, the best of `RUNS` runs (one profiled run with `profile`)."""
    engine = MediaEngine()
    server = AudioSocketServer("127.0.0.1", 0, EchoCalls(engine), clock=engine, poll_sockets=False)
    message = tone_message(kind)
    sessions = []
    for _ in range(calls):
        session = _Session(server, ("127.0.0.1", 40000))
        session.connection_made(StubTransport())
        session.data_received(b"\x01\x00\x10" + uuid.uuid4().bytes)
        sessions.append(session)

    async def run(count: int) -> None:
        for _ in range(count):
            for session in sessions:
                session.data_received(message)
            engine.tick()
            await asyncio.sleep(0)

    await run(50)  # the jitter buffers fill, every lane is built
    profiler = cProfile.Profile() if profile else None
    best = float("inf")
    for _ in range(1 if profile else RUNS):
        started = time.process_time()
        if profiler:
            profiler.enable()
        await run(ticks)
        if profiler:
            profiler.disable()
        best = min(best, (time.process_time() - started) / ticks / calls)
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    for session in sessions:  # Asterisk hangs up: every session ends as it would
        session.connection_lost(None)
    await asyncio.gather(*server._handlers)
    return best


async def measure_on_sockets(calls: int, kind: int, ticks: int) -> float:
    """Seconds per call and tick of the engine's tick on real sockets, the best of `RUNS` runs."""
    engine = MediaEngine()
    server = AudioSocketServer("127.0.0.1", 0, EchoCalls(engine), clock=engine)
    await server.start()
    message = tone_message(kind)
    channels = []
    for _ in range(calls):
        channel = socket.create_connection(("127.0.0.1", server.port))
        channel.sendall(HEADER.pack(0x01, 16) + uuid.uuid4().bytes)
        channel.setblocking(False)
        channels.append(channel)
        while server.active < len(channels):  # accepted and attached before the next: the backlog is short
            await asyncio.sleep(0.0005)

    def tick() -> float:
        for channel in channels:
            channel.send(message)
        started = time.perf_counter()
        engine.tick()
        spent = time.perf_counter() - started
        for channel in channels:
            try:
                channel.recv(1 << 16)
            except BlockingIOError:
                pass
        return spent

    for _ in range(50):  # the jitter buffers fill, every lane is built
        tick()
        await asyncio.sleep(0)
    best = float("inf")
    for _ in range(RUNS):
        spent = 0.0
        for _ in range(ticks):
            spent += tick()
            await asyncio.sleep(0)
        best = min(best, spent / ticks / calls)
    for channel in channels:
        channel.close()
    await server.stop()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--khz", type=int, choices=sorted(KINDS), default=8)
    parser.add_argument("--calls", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--sockets", action="store_true", help="real loopback sockets, polled as in the gateway")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    pin(SERVER_CPU)
    raise_file_limit()  # three descriptors a call with --sockets: both ends, and the poller's duplicate
    print(f"{machine(placement=False)}; on core {SERVER_CPU}")
    where = "loopback sockets (the tick alone timed)" if args.sockets else "stub sockets"
    print(f"{args.khz} kHz AudioSocket on {where}, bridged to echo123; best of {RUNS} runs of {args.ticks} ticks")
    print(f"{'calls':>6} {'µs/call/tick':>12}")
    for calls in args.calls:
        if args.sockets:
            cost = asyncio.run(measure_on_sockets(calls, KINDS[args.khz], args.ticks))
        else:
            cost = asyncio.run(measure(calls, KINDS[args.khz], args.ticks, args.profile))
        print(f"{calls:>6} {1e6 * cost:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
