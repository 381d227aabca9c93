"""Media engine load: N echo calls on the real clock, each playing a WAV and recording.

Every room holds an echo user and the account's side of a call, which plays a looping
WAV and records what it hears at the record rate, as `call-set-input-file` and
`call-set-output-file` do. The first run (1 room) is the baseline: the cost of the clock
itself. An unreported half-second run before it pays the one-time costs (first
allocations, lazy set-up), which would otherwise inflate the baseline and make the cost
per room look smaller, or even negative. Figures per run: ticks, late ticks (started
> 10 ms after the deadline, skips included), process CPU per tick, the slowest tick and
the cost per room above baseline. Each run records into its own folder.

    python -m bench.media [--seconds 3] [--rate 8000] [--rooms 1 50 100 200 400 500]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from fastagi.media.engine import MediaEngine
from fastagi.media.ports import LocalPort
from fastagi.media.wav import WavPlayer, WavRecorder, load_wav
from fastagi.model.audio import ENGINE_RATE, EchoPort


class TimedEngine(MediaEngine):
    """Keeps the duration of every tick the clock runs (its slices and the turns of the loop between them), for the slowest one."""

    def __init__(self) -> None:
        super().__init__()
        self.durations: list[float] = []

    async def _tick_in_slices(self) -> None:
        started = time.perf_counter()
        await super()._tick_in_slices()
        self.durations.append(time.perf_counter() - started)


def write_tone(path: Path) -> None:
    samples = 0.3 * 32767 * np.sin(2 * np.pi * 440 * np.arange(5 * ENGINE_RATE) / ENGINE_RATE)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(ENGINE_RATE)
        writer.writeframes(samples.astype("<i2").tobytes())


async def measure(rooms: int, seconds: float, rate: int, folder: Path) -> dict[str, float]:
    folder.mkdir()
    engine = TimedEngine()
    tone = load_wav(folder.parent / "tone.wav")
    recorders = []
    for number in range(rooms):
        local = LocalPort()
        local.set_source(WavPlayer(tone, loop=True))
        recorder = WavRecorder(folder / f"rec-{number}.wav", rate)
        local.add_sink(recorder)
        recorders.append(recorder)
        room = engine.create_room()
        room.add(local)
        room.add(EchoPort())
    cpu, wall = time.process_time(), time.perf_counter()
    engine.start()
    await asyncio.sleep(seconds)
    await engine.stop()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for recorder in recorders:
        recorder.close()
    return {
        "rooms": rooms,
        "ticks": engine.ticks,
        "expected": wall / 0.020,
        "late": engine.late_ticks,
        "skipped": engine.skipped_ticks,
        "cpu_ms": 1000 * cpu / engine.ticks,
        "max_ms": 1000 * max(engine.durations),
        "load": cpu / wall,
    }


WARM_UP = 0.5  # seconds of one room, unreported, before the runs
COLUMNS = "rooms ticks expected late% skipped CPU-ms/tick max-tick-ms core% us/room".split()


def report(results: list[dict[str, float]]) -> None:
    """One row per run; us/room is the CPU per room and tick above the baseline."""
    base = results[0]
    print(" ".join(f"{name:>11}" for name in COLUMNS))
    for r in results:
        extra = r["rooms"] - base["rooms"]
        per_room = 1000 * (r["cpu_ms"] - base["cpu_ms"]) / extra if extra > 0 else 0.0
        row = (
            f"{r['rooms']:.0f}", f"{r['ticks']:.0f}", f"{r['expected']:.0f}",
            f"{100 * r['late'] / r['ticks']:.2f}", f"{r['skipped']:.0f}", f"{r['cpu_ms']:.3f}",
            f"{r['max_ms']:.2f}", f"{100 * r['load']:.1f}", f"{per_room:.1f}",
        )
        print(" ".join(f"{cell:>11}" for cell in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=int, choices=(8000, 16000), default=8000)
    parser.add_argument("--rooms", type=int, nargs="+", default=[1, 50, 100, 200, 400, 500])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_tone(folder / "tone.wav")
        asyncio.run(measure(1, WARM_UP, args.rate, folder / "warm-up"))  # one-time costs, not the baseline's
        results = [asyncio.run(measure(n, args.seconds, args.rate, folder / f"run-{i}")) for i, n in enumerate(args.rooms)]
    print(f"{args.seconds:g} s per run, recording at {args.rate} Hz; baseline = first row")
    report(results)


if __name__ == "__main__":
    main()
