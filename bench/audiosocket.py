"""Bridged calls one core sustains: N Skype calls to echo123, each bridged to an AudioSocket.

The gateway runs alone in a child process, pinned to one core (so is everything it
runs, threads of native libraries included); this process, pinned to another core,
plays Asterisk: it starts each call with a FastAGI `call-start`, connects an
AudioSocket with the returned `SKYPE_CALL_UUID`, and sends 20 ms frames of a tone on a
real clock for every connection while reading what comes back. Figures per run, over
the measured window: the gateway's media ticks, late ticks (started > 10 ms after
their deadline, skipped ones included), the gateway's CPU per tick and its share of one
core, jitter-buffer underruns, the audio that came back (bytes received against one
frame per call and tick), and this load generator's own late send rounds (> 10 ms
behind its schedule: then the gateway was not offered the load the row claims). The
first run is the baseline.

With `--phases N` the calls send in N groups spread evenly over each 20 ms, as
channels with clocks of their own do, rather than all at the same moment.

    python -m bench.audiosocket [--seconds 5] [--kind 10|12] [--calls 1 100 250 500] [--phases 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import resource
import struct
import tempfile
from pathlib import Path

import numpy as np

from .agi_load import one_session
from .harness import LOAD_CPU, SERVER_CPU, pin, raise_file_limit

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
CALL_START = "call-start?account=alice&user-name=echo123"


# -- the gateway, alone in its process ---------------------------------------------------
def gateway_process(folder: str, pipe) -> None:  # type: ignore[no-untyped-def]
    pin(SERVER_CPU)
    asyncio.run(_gateway(folder, pipe))


async def _gateway(folder: str, pipe) -> None:  # type: ignore[no-untyped-def]
    from fastagi.app import Gateway, with_ports
    from fastagi.config import load_config

    path = Path(folder) / "bench.conf"
    path.write_text(CONFIG.format(folder=folder))
    gateway = Gateway(with_ports(load_config(path), 0, 0))
    await gateway.start()
    gc.freeze()  # as `serve` does
    assert gateway.audiosocket is not None
    pipe.send((gateway.agi.port, gateway.audiosocket.port))
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "stop":
            break
        media, sockets = gateway.media, gateway.audiosocket
        usage = resource.getrusage(resource.RUSAGE_SELF)
        pipe.send({
            "ticks": media.ticks, "late": media.late_ticks, "cpu": usage.ru_utime + usage.ru_stime,
            "underruns": sockets.counters.underruns, "active": sockets.active, "calls": len(gateway.manager.calls.live),
        })
    await gateway.stop()


# -- Asterisk's side ------------------------------------------------------------------------
async def call_start(port: int, uniqueid: int) -> str:
    """Asterisk runs `call-start`; the call's AudioSocket UUID."""
    ended = await one_session(port, CALL_START, uniqueid)
    return next(line.split(b'"')[1].decode() for line in ended.commands if line.startswith(b"SET VARIABLE SKYPE_CALL_UUID "))


class AsteriskSide(asyncio.Protocol):
    """Asterisk's end of one AudioSocket connection: counts what the gateway sends back."""

    def __init__(self) -> None:
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)


async def load(  # type: ignore[no-untyped-def]
    agi_port: int, audio_port: int, calls: int, seconds: float, kind: int, phases: int, pipe
) -> dict[str, float]:
    uuids: list[str] = []
    for start in range(0, calls, 50):
        uuids += await asyncio.gather(*(call_start(agi_port, n) for n in range(start, min(calls, start + 50))))
    await asyncio.sleep(0.2)  # echo123 answers at once
    rate = 8000 if kind == 0x10 else 16000
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(rate // 50) / rate)).astype("<i2").tobytes()
    frame = HEADER.pack(kind, len(samples)) + samples
    loop = asyncio.get_running_loop()
    transports: list[asyncio.Transport] = []
    sides: list[AsteriskSide] = []
    for uuid in uuids:
        transport, side = await loop.create_connection(AsteriskSide, "127.0.0.1", audio_port)
        transport.write(HEADER.pack(0x01, 16) + bytes.fromhex(uuid.replace("-", "")))
        transports.append(transport)
        sides.append(side)
    groups = [transports[phase::phases] for phase in range(phases)]

    async def send_for(duration: float) -> tuple[int, int]:
        """Send for `duration` seconds; (send rounds, rounds started > 10 ms late)."""
        origin, period, late = loop.time(), 0.02 / phases, 0
        rounds = int(duration * 50) * phases
        for n in range(rounds):
            due = origin + n * period
            await asyncio.sleep(max(0.0, due - loop.time()))
            late += loop.time() - due > 0.010
            for transport in groups[n % phases]:
                transport.write(frame)
        return rounds, late

    await send_for(1.0)  # warm up: jitter buffers fill, resamplers settle
    before, received = await _report(pipe), sum(side.received for side in sides)
    rounds, late_rounds = await send_for(seconds)
    after, received = await _report(pipe), sum(side.received for side in sides) - received
    for transport in transports:
        transport.close()
    ticks = after["ticks"] - before["ticks"]
    return {
        "calls": calls, "bridged": after["active"], "ticks": ticks,
        "late_pct": 100 * (after["late"] - before["late"]) / max(ticks, 1),
        "cpu_ms_per_tick": 1000 * (after["cpu"] - before["cpu"]) / max(ticks, 1),
        "core_pct": 100 * (after["cpu"] - before["cpu"]) / seconds,
        "underruns": after["underruns"] - before["underruns"],
        "back_pct": 100 * received / max(ticks * calls * len(frame), 1),
        "gen_late_pct": 100 * late_rounds / rounds,
    }


async def _report(pipe) -> dict[str, float]:  # type: ignore[no-untyped-def]
    pipe.send("report")
    return await asyncio.get_running_loop().run_in_executor(None, pipe.recv)


def run_one(calls: int, seconds: float, kind: int, phases: int = 1) -> dict[str, float]:
    raise_file_limit()
    with tempfile.TemporaryDirectory() as folder:
        ours, theirs = multiprocessing.Pipe()
        child = multiprocessing.get_context("spawn").Process(target=gateway_process, args=(folder, theirs))
        child.start()
        agi_port, audio_port = ours.recv()
        try:
            return asyncio.run(load(agi_port, audio_port, calls, seconds, kind, phases, ours))
        finally:
            ours.send("stop")
            child.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--kind", type=lambda v: int(v, 16), default=0x10, help="10 (8 kHz) or 12 (16 kHz), hex")
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 100, 250, 500])
    parser.add_argument("--phases", type=int, default=1, help="send groups spread over each 20 ms")
    args = parser.parse_args()
    pin(LOAD_CPU)
    print(f"{'calls':>6} {'bridged':>8} {'ticks':>6} {'late %':>7} {'cpu ms/tick':>12} {'core %':>7} {'x base':>7} "
          f"{'underruns':>9} {'back %':>7} {'gen late %':>10}")
    baseline = None
    for calls in args.calls:
        row = run_one(calls, args.seconds, args.kind, args.phases)
        baseline = baseline or row["cpu_ms_per_tick"]
        print(f"{row['calls']:>6} {row['bridged']:>8} {row['ticks']:>6} {row['late_pct']:>7.2f} "
              f"{row['cpu_ms_per_tick']:>12.3f} {row['core_pct']:>7.1f} {row['cpu_ms_per_tick'] / baseline:>7.1f} "
              f"{row['underruns']:>9} {row['back_pct']:>7.1f} {row['gen_late_pct']:>10.2f}")


if __name__ == "__main__":
    main()
