"""The queue of AMI actions waiting for Asterisk: one FIFO, bounded, nothing reordered."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from .actions import Outgoing

log = logging.getLogger("fastagi.ami.listener")


class Outbox:
    """Actions in the order they happened; an action leaves only once Asterisk answered it.

    When `size` actions wait, the *newest* is dropped (counted in `dropped`, logged once
    per episode), so what Asterisk gets is always a gap-free prefix of what happened.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: deque[Outgoing] = deque()
        self._ready = asyncio.Event()
        self._dropping = 0  # drops since the queue was last below its bound
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Outgoing) -> bool:
        """Queue `item`; False when the queue was full and it was dropped."""
        if len(self._items) >= self._size:
            self.dropped += 1
            if not self._dropping:
                log.warning("AMI queue full (%d actions wait for Asterisk): dropping new ones, counted in 'dropped'",
                            len(self._items))
            self._dropping += 1
            return False
        if self._dropping:
            log.warning("AMI queue has room again after dropping %d action(s)", self._dropping)
            self._dropping = 0
        self._items.append(item)
        self._ready.set()
        return True

    async def head(self) -> Outgoing:
        """The oldest action, once there is one (it stays queued until `pop`)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items[0]

    def pop(self) -> None:
        """The head was answered: it leaves the queue."""
        self._items.popleft()
