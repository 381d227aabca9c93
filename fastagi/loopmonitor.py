"""How late the event loop runs its callbacks: the lag every session and media tick also suffers."""

from __future__ import annotations

import asyncio


class LoopMonitor:
    """A timer due every `interval` seconds notes how late it actually ran.

    `lag` is the last reading, `worst` the largest since start (both in seconds); the
    metrics endpoint shows both, so a stall of the loop is visible to an administrator.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.lag = 0.0
        self.worst = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._schedule(loop, loop.time())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        due = now + self.interval
        self._timer = loop.call_at(due, self._woke, loop, due)

    def _woke(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        self.lag = now - due
        self.worst = max(self.worst, self.lag)
        self._schedule(loop, now)
