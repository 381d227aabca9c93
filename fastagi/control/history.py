"""The recent events `show events` prints, kept across restarts.

Each event of the bus is kept in memory (the last `size`) and in the store's `events`
table. The events of one turn of the event loop are written together, in one
transaction, when the loop comes round: a session that publishes two events pays for one
commit, and a burst of sessions shares one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import deque
from typing import Any, Callable

from ..ami import userevents
from ..manager.store import Store
from ..model.events import Event, EventBus

log = logging.getLogger("fastagi.control")

EVENT_HISTORY = 500  # events `show events` remembers

Record = dict[str, Any]  # {"time": epoch seconds, "kind", "account", "fields"}


class EventHistory:
    def __init__(self, store: Store, bus: EventBus, size: int = EVENT_HISTORY) -> None:
        self._store = store
        self.size = size
        self._recent: deque[Record] = deque(
            ({"time": row["time"], "kind": row["kind"], "account": row["account"], "fields": json.loads(row["fields"])}
             for row in store.recent_events(size)),
            maxlen=size,
        )
        self._pending: list[tuple[float, Event]] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = bus.subscribe(self._on_event)

    def __len__(self) -> int:
        return len(self._recent) + len(self._pending)

    def records(self) -> list[Record]:
        """The remembered events, oldest first (`time` in epoch seconds)."""
        self.flush()
        return list(self._recent)

    def _on_event(self, event: Event) -> None:
        self._pending.append((time.time(), event))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._flush_on is not loop:
            self._flush_on = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the events not yet written, in one transaction."""
        self._flush_on = None
        if not self._pending:
            return
        records = [{"time": when, "kind": userevents.kind(event), "account": event.account,
                    "fields": userevents.fields(event)} for when, event in self._pending]
        self._pending.clear()
        self._recent.extend(records)
        rows = [(r["time"], r["kind"], r["account"], json.dumps(r["fields"], ensure_ascii=False)) for r in records]
        try:
            self._store.add_events(rows, self.size)
        except sqlite3.Error as exc:  # the events stay shown until a restart; the gateway goes on
            log.warning("%d event(s) not saved to the history: %s", len(rows), exc)

    def close(self) -> None:
        """Stop listening and write what is left (before the store closes)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.flush()
