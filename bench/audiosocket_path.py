"""A bridged call's own CPU, without sockets: what the gateway adds to the socket work.

N AudioSocket sessions of the real server run on stub transports (a write is counted,
not sent) and are bridged as `bridge.py` bridges them: the connection is the source and
a sink of the call's local port, in a room with echo123's echo. Each tick, every session
is handed one 20 ms audio message as a socket read would hand it, then the engine ticks
(its lanes convert and write every connection's frame) and the loop runs what the tick
queued. Printed: CPU per call and tick, the best of 7 runs of `--ticks` ticks (on a
shared machine the best run is the one least disturbed). `--profile` prints cProfile's
costliest functions instead, whose own overhead inflates every figure it shows.

    python -m bench.audiosocket_path [--khz 8|16] [--calls 250 500 1000] [--ticks 200] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import struct
import time
import uuid
from typing import Any

import numpy as np

from fastagi.audiosocket.server import AudioSocketConnection, AudioSocketServer, _Session
from fastagi.media.engine import MediaEngine
from fastagi.media.ports import LocalPort
from fastagi.model.audio import EchoPort

from .audiosocket import KINDS
from .harness import SERVER_CPU, machine, pin

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
    rate = 8000 if kind == KINDS[8] else 16000
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(rate // 50) / rate)).astype("<i2").tobytes()
    message = struct.pack("!BH", kind, len(samples)) + samples
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--khz", type=int, choices=sorted(KINDS), default=8)
    parser.add_argument("--calls", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    pin(SERVER_CPU)
    print(f"{machine(placement=False)}; on core {SERVER_CPU}")
    print(f"{args.khz} kHz AudioSocket on stub sockets, bridged to echo123; best of {RUNS} runs of {args.ticks} ticks")
    print(f"{'calls':>6} {'µs/call/tick':>12}")
    for calls in args.calls:
        cost = asyncio.run(measure(calls, KINDS[args.khz], args.ticks, args.profile))
        print(f"{calls:>6} {1e6 * cost:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
