"""Work started now and finished later, that nobody awaits: kept, logged, cancelled on close."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine

from .model.errors import SkypeError


class Background:
    """Holds a reference to each task (asyncio keeps only weak ones) until it ends.

    A task refused with a `SkypeError` is logged as information (the state said no);
    any other failure is logged with its traceback. `close()` cancels what still runs.
    """

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, SkypeError):
            self._log.info("refused: %s", error.text)
        elif error is not None:
            self._log.error("background task failed", exc_info=error)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
