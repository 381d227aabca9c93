"""Many deadlines of one length, kept by one event-loop timer.

A timer per connection (`call_later`, or `asyncio.timeout` per session) puts a handle
into the loop's heap and, when the connection ends first, a cancelled one that stays
there until the heap is cleaned: at thousands of sessions a second that was about a
tenth of each session's CPU. Deadlines that all have the same length expire in the
order they were set, so an insertion-ordered dict and one timer, due at the oldest
deadline, do the same job: setting or clearing a deadline is a dict operation.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Callable, Generic, Hashable, TypeVar

T = TypeVar("T", bound=Hashable)

log = logging.getLogger("fastagi.agi")


class Deadlines(Generic[T]):
    """Calls `expire(item)` `seconds` after `start(item)`, unless `clear(item)` came first."""

    def __init__(self, seconds: float, expire: Callable[[T], None]) -> None:
        self.seconds = seconds
        self._expire = expire
        self._due: dict[T, float] = {}  # in the order set, so oldest first
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def start(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + self.seconds
        self._due[item] = when
        if self._timer is None:
            self._timer = loop.call_at(when, self._fire)

    def clear(self, item: T) -> None:
        """Forget `item`'s deadline; the timer stays due as it was and simply finds nothing then."""
        self._due.pop(item, None)

    def started_before(self, moment: float, most: int) -> list[T]:
        """Up to `most` items whose deadline was started before `moment` (loop time), oldest first."""
        due = moment + self.seconds
        return list(itertools.islice(itertools.takewhile(lambda item: self._due[item] <= due, self._due), most))

    def close(self) -> None:
        """Forget every deadline and stop the timer."""
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        expired = []
        for item, when in self._due.items():
            if when > now:
                break
            expired.append(item)
        for item in expired:
            del self._due[item]
        if self._due:
            self._timer = loop.call_at(next(iter(self._due.values())), self._fire)
        for item in expired:
            try:
                self._expire(item)
            except Exception:  # noqa: BLE001 - one expiry's bug must not cost the others theirs
                log.exception("deadline of %r: expiry failed", item)
