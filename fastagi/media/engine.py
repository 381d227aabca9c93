"""The media engine: one clock moves 20 ms of audio through every room at once.

A room is a set of parties (ports) that hear each other. On every tick the engine pulls
one frame from each port of each room and pushes to each port the mix of all the others.
`tick()` does one tick synchronously; `start()` runs a single asyncio task that ticks
on absolute deadlines `t0 + n * 20 ms`, so timing errors never accumulate, and hands the
event loop back whenever a tick has held it for `SLICE_SECONDS`: with a thousand calls a
tick takes several milliseconds, and a FastAGI session's round trip would wait for all of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..model.audio import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, SILENCE, AudioPort

log = logging.getLogger(__name__)

FRAME_SECONDS = FRAME_MS / 1000
LATE_AFTER = 0.010  # a tick starting later than this after its deadline is late
# Further behind than this, the clock drops the missed ticks (counted late) instead of
# running them back to back: a burst that long would only reach the far end as a glitch.
SKIP_AFTER = 5 * FRAME_SECONDS
SLICE_SECONDS = 0.0005
"""The longest the clock holds the event loop before letting it run what waits: a FastAGI
session's round trips each wait at most about this long behind a tick (with 500 bridged
calls, 2 ms made FastAGI's p99 three times an idle gateway's)."""
HAND_BACK_TURNS = 8
"""Turns of the loop one hand-back gives at most: enough for a FastAGI session from its accept to its answer."""
ROOMS_PER_STEP = 64
"""Rooms ticked between two points where the clock may hand the loop back."""
Hook = Callable[[], Iterable[None] | None]
"""A tick hook: work done at once, or steps (an iterator) between which the loop may run."""


def mix_minus(frames: Sequence[bytes]) -> list[bytes]:
    """What each party hears: the saturating sum of every other party's frame."""
    count = len(frames)
    if count == 1:
        return [SILENCE]
    parties = np.frombuffer(b"".join(frames), np.int16).reshape(count, FRAME_SAMPLES)
    others = parties.sum(axis=0, dtype=np.int32) - parties
    np.clip(others, -32768, 32767, out=others)
    heard = others.astype(np.int16).tobytes()
    return [heard[offset : offset + FRAME_BYTES] for offset in range(0, len(heard), FRAME_BYTES)]


async def _let_the_loop_run() -> None:
    """Hand the loop back until it has run what its polls found, and what that queued in turn.

    After one `sleep(0)` this task is first in the loop's queue, ahead of the callbacks of
    the poll that follows; after a second one it comes after them. Each of those may queue
    a next step behind this task (accepting a FastAGI connection takes four turns of the
    loop before its session's first read, and the session's task one more), so the loop is
    handed back again while anything waits in its queue, for at most `HAND_BACK_TURNS`
    turns. (A short timer would not do: the selector rounds its timeout up to a whole millisecond.)
    """
    ready = getattr(asyncio.get_running_loop(), "_ready", None)  # asyncio has no public "is anything queued?"
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    if ready is None:  # another loop (uvloop): one more turn, for the task the first callbacks woke
        await asyncio.sleep(0)
        return
    for _ in range(HAND_BACK_TURNS - 2):
        if not ready:
            return
        await asyncio.sleep(0)


class Pacer:
    """The clock's schedule: tick n is due at `origin + n * period` (sans-I/O)."""

    def __init__(self, origin: float, period: float = FRAME_SECONDS) -> None:
        self._origin = origin
        self._period = period
        self._number = 1

    @property
    def deadline(self) -> float:
        """When the next tick is due."""
        return self._origin + self._number * self._period

    def arrive(self, now: float) -> tuple[bool, int]:
        """Account for a tick starting at `now`: (is it late, how many ticks it skips)."""
        lateness = now - self.deadline
        skipped = int(lateness / self._period) if lateness > SKIP_AFTER else 0
        self._number += skipped + 1
        return lateness - skipped * self._period > LATE_AFTER, skipped


class Room:
    """Parties that hear each other; made by `MediaEngine.create_room`."""

    def __init__(self, engine: MediaEngine) -> None:
        self._engine = engine
        self._ports: tuple[AudioPort, ...] = ()
        self._closed = False
        self._failed = False

    @property
    def ports(self) -> tuple[AudioPort, ...]:
        return self._ports

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, port: AudioPort) -> None:
        """Join `port` to this room; a port is in at most one room at a time."""
        self._check_open()
        self._engine._attach(port, self)
        self._ports += (port,)

    def remove(self, port: AudioPort) -> None:
        if self._engine.room_of(port) is not self:
            raise ValueError("port is not in this room")
        self._ports = tuple(member for member in self._ports if member is not port)
        self._engine._detach(port)

    def merge(self, other: Room) -> None:
        """Move every port of `other` into this room and close `other` (a conference)."""
        if other is self:
            raise ValueError("cannot merge a room into itself")
        self._check_open()
        other._check_open()
        moved = other._ports
        other.close()
        for port in moved:
            self.add(port)

    def close(self) -> None:
        """Release every port and leave the engine; closing twice is harmless."""
        if self._closed:
            return
        for port in self._ports:
            self._engine._detach(port)
        self._ports = ()
        self._closed = True
        self._engine._drop(self)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("room is closed")

    def _tick(self) -> None:
        ports = self._ports
        if len(ports) == 2:  # a call: each party hears the other as it is
            first, second = ports
            said = first.pull()
            first.push(second.pull())
            second.push(said)
            return
        if not ports:
            return
        frames = [port.pull() for port in ports]
        for port, heard in zip(ports, mix_minus(frames)):
            port.push(heard)


class MediaEngine:
    """All rooms and the one clock that drives them.

    Counters: `ticks` (ticks run), `late_ticks` (ticks that started more than
    `LATE_AFTER` after their deadline, plus ticks skipped), `skipped_ticks`,
    `busy_seconds` (time spent inside `tick`), `errors` (room ticks and tick hooks
    that raised).
    """

    def __init__(self) -> None:
        self._rooms: dict[Room, None] = {}  # insertion-ordered set
        self._active: tuple[Room, ...] = ()
        self._port_rooms: dict[int, Room] = {}  # id(port): ports need not be hashable
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.late_ticks = 0
        self.skipped_ticks = 0
        self.busy_seconds = 0.0
        self.errors = 0
        self._before: tuple[Hook, ...] = ()
        self._after: tuple[Hook, ...] = ()
        self._failed_hooks: list[Hook] = []

    @property
    def rooms(self) -> int:
        """How many rooms are open."""
        return len(self._rooms)

    @property
    def running(self) -> bool:
        return self._task is not None

    def create_room(self) -> Room:
        room = Room(self)
        self._rooms[room] = None
        self._active = tuple(self._rooms)
        return room

    def add_tick_hooks(self, before: Hook, after: Hook) -> None:
        """Call `before` as every tick begins and `after` as it ends.

        Ports that move their audio in bulk (every AudioSocket connection of a rate at
        once) gather it there rather than one port at a time. A hook that returns an
        iterator is run step by step: the clock may hand the loop back between steps.
        """
        self._before += (before,)
        self._after += (after,)

    def room_of(self, port: AudioPort) -> Room | None:
        """The room `port` is in, if any."""
        return self._port_rooms.get(id(port))

    def tick(self) -> None:
        """Move one frame through every room now.

        A room whose port raises is logged (once) and skipped for this tick; the other
        rooms go on.
        """
        started = time.perf_counter()
        for _ in self._steps():
            pass
        self.ticks += 1
        self.busy_seconds += time.perf_counter() - started

    def _steps(self) -> Iterator[None]:
        """One tick, yielding where the loop may run: within hooks, and every `ROOMS_PER_STEP` rooms.

        A room closed while the loop ran is not ticked; a room opened meanwhile waits for
        the next tick. (A port moved from one room to another meanwhile may be heard twice
        or not at all in this one tick: a frame's glitch as a conference forms.)
        """
        yield from self._run_hooks(self._before)
        rooms = self._rooms
        for count, room in enumerate(self._active, 1):
            if not count % ROOMS_PER_STEP:
                yield
            if room not in rooms:
                continue
            try:
                room._tick()
            except Exception:
                self.errors += 1
                if not room._failed:
                    room._failed = True
                    log.exception("media room with %d ports failed a tick", len(room.ports))
        yield from self._run_hooks(self._after)

    async def _tick_in_slices(self) -> None:
        """`tick()`, handing the loop back each time it has held it for `SLICE_SECONDS`.

        A tick once begun is finished, even if the clock is stopped meanwhile.
        """
        steps = self._steps()
        started = time.perf_counter()
        try:
            for _ in steps:
                now = time.perf_counter()
                if now - started > SLICE_SECONDS:
                    self.busy_seconds += now - started
                    await _let_the_loop_run()
                    started = time.perf_counter()
        finally:
            for _ in steps:
                pass
            self.ticks += 1
            self.busy_seconds += time.perf_counter() - started

    def _run_hooks(self, hooks: tuple[Hook, ...]) -> Iterator[None]:
        """Run each hook; one that raises is logged (once) and counted, and the tick goes on."""
        for hook in hooks:
            try:
                steps = hook()
                if steps is not None:
                    yield from steps
            except Exception:
                self.errors += 1
                if hook not in self._failed_hooks:
                    self._failed_hooks.append(hook)
                    log.exception("media tick hook %r failed", hook)

    def start(self) -> None:
        """Run the real-time clock in the running event loop."""
        if self._task is not None:
            raise RuntimeError("media engine already running")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="media-clock")

    async def stop(self) -> None:
        """Stop the clock; rooms stay as they are."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer(loop.time())
        while True:
            await asyncio.sleep(max(pacer.deadline - loop.time(), 0.0))  # 0 still yields
            late, skipped = pacer.arrive(loop.time())
            self.skipped_ticks += skipped
            self.late_ticks += skipped + late
            await self._tick_in_slices()

    def _attach(self, port: AudioPort, room: Room) -> None:
        if id(port) in self._port_rooms:
            raise ValueError("port is already in a room")
        self._port_rooms[id(port)] = room

    def _detach(self, port: AudioPort) -> None:
        del self._port_rooms[id(port)]

    def _drop(self, room: Room) -> None:
        del self._rooms[room]
        self._active = tuple(self._rooms)
