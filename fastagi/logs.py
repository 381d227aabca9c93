"""The serve command's log: logging's own format, with its per-record cost cut.

Under load the gateway logs a line per AGI session. Each line as its own write(2) and
its timestamp formatted anew with `strftime` cost about a sixth of a session's CPU, so:

- `BatchingStreamHandler` writes the lines logged during one event-loop iteration
  together, when the loop next gets to it. WARNING and above, and anything logged
  outside the loop (start-up, shutdown, other threads), are written at once, after the
  lines before them, so nothing is reordered and a crash report is never held back.
- `Formatter` computes the date and time part of `asctime` once per second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Formatter(logging.Formatter):
    """logging's default `asctime` (`2026-11-27 03:34:56,123`), its `strftime` run once per second."""

    def __init__(self, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A `StreamHandler` that writes the INFO and DEBUG lines of one loop iteration in one write."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:  # noqa: BLE001 - logging's contract: a bad record is reported, never raised
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or record.levelno >= logging.WARNING:
            self.flush()
        elif self._flush_on is not loop:
            self._flush_on = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self.acquire()
        try:
            self._flush_on = None
            if self._pending:
                self.stream.write("".join(self._pending))
                self._pending.clear()
            super().flush()
        except Exception:  # noqa: BLE001 - a broken log stream must not break the gateway; there is nowhere left to say so
            self._pending.clear()
        finally:
            self.release()


def configure(level: str, stream: TextIO) -> None:
    """The root logger for `serve`: one batching handler on `stream`, logging's default line format."""
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(Formatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # the format uses none of these: not collecting them makes each log record much cheaper
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # no caller lookup per record (the logging HOWTO's own advice)
