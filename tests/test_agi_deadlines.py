"""`Deadlines`: same-length deadlines on one loop timer, expiring in order, each at its own time."""

from __future__ import annotations

import asyncio

import pytest

from conftest import run
from fastagi.agi.deadlines import Deadlines


class Clock:
    """Records when each item expired, in seconds after the clock started."""

    def __init__(self) -> None:
        self.start = asyncio.get_running_loop().time()
        self.expired: list[tuple[str, float]] = []

    def __call__(self, item: str) -> None:
        self.expired.append((item, asyncio.get_running_loop().time() - self.start))

    @property
    def order(self) -> list[str]:
        """The items, in the order they expired."""
        return [item for item, _ in self.expired]


def timers(loop: asyncio.AbstractEventLoop) -> int:
    """Live timer handles in asyncio's loop."""
    return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]


def test_each_deadline_expires_at_its_own_time_in_order() -> None:
    async def body() -> None:
        clock = Clock()
        deadlines = Deadlines(0.1, clock)
        deadlines.start("a")
        await asyncio.sleep(0.03)
        deadlines.start("b")
        deadlines.start("c")
        assert timers(asyncio.get_running_loop()) == 1  # one timer, however many deadlines
        await asyncio.sleep(0.2)
        assert clock.order == ["a", "b", "c"]
        times = dict(clock.expired)
        assert 0.1 <= times["a"] < 0.12
        assert 0.13 <= times["b"] < 0.15 and 0.13 <= times["c"] < 0.15
        assert len(deadlines) == 0
        assert timers(asyncio.get_running_loop()) == 0
    run(body())


def test_a_cleared_deadline_never_expires_and_the_next_keeps_its_time() -> None:
    async def body() -> None:
        clock = Clock()
        deadlines = Deadlines(0.1, clock)
        deadlines.start("a")
        await asyncio.sleep(0.05)
        deadlines.start("b")
        deadlines.clear("a")
        deadlines.clear("never started")
        await asyncio.sleep(0.15)
        assert clock.order == ["b"]
        assert 0.15 <= clock.expired[0][1] < 0.17
    run(body())


def test_deadlines_started_after_all_expired_get_a_new_timer() -> None:
    async def body() -> None:
        clock = Clock()
        deadlines = Deadlines(0.05, clock)
        deadlines.start("a")
        await asyncio.sleep(0.08)
        deadlines.start("b")
        await asyncio.sleep(0.08)
        assert clock.order == ["a", "b"]
    run(body())


def test_an_expiry_may_start_another_and_close_stops_everything() -> None:
    async def body() -> None:
        clock = Clock()

        def expire(item: str) -> None:
            clock(item)
            if item == "a":
                deadlines.start("again")

        deadlines = Deadlines(0.05, expire)
        deadlines.start("a")
        await asyncio.sleep(0.12)
        assert clock.order == ["a", "again"]
        deadlines.start("closed before its time")
        deadlines.close()
        await asyncio.sleep(0.08)
        assert clock.order == ["a", "again"]
        assert timers(asyncio.get_running_loop()) == 0
    run(body())


def test_a_callback_that_raises_is_logged_and_costs_no_other_its_expiry(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        clock = Clock()

        def expire(item: str) -> None:
            clock(item)
            if item == "bad":
                raise RuntimeError("boom")

        deadlines = Deadlines(0.05, expire)
        deadlines.start("bad")
        deadlines.start("same time")
        await asyncio.sleep(0.02)
        deadlines.start("later")
        await asyncio.sleep(0.1)
        assert clock.order == ["bad", "same time", "later"]
    run(body())
    assert [r.getMessage() for r in caplog.records] == ["deadline of 'bad': expiry failed"]
