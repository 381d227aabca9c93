"""The serve command's log: logging's own format, with its per-record cost cut.

Under load the gateway logs a line per AGI session. Each line as its own write(2) and
its timestamp formatted anew with `strftime` cost about a sixth of a session's CPU, so:

- `BatchingStreamHandler` writes the lines logged during one event-loop iteration
  together, when the loop next gets to it. WARNING and above, and anything logged
  outside the loop (start-up, shutdown, other threads), are written at once, after the
  lines before them, so nothing is reordered and a crash report is never held back.
- `Formatter` computes the date and time part of `asctime` once per second.

Under systemd, when stderr is the journal's stream (`JOURNAL_STREAM` names it), a line
carries no time (the journal stamps it) and starts with its syslog priority (`<6>` for
INFO), which the journal reads as the entry's priority (`journalctl -p warning`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Mapping, TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"
# syslog priorities (sd-daemon.h: SD_CRIT … SD_DEBUG), from the most severe level down
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7


class Formatter(logging.Formatter):
    """`asctime` as ISO 8601 local time with its UTC offset (`2026-11-27T03:34:56.123+01:00`, as `show events`
    writes it), its `strftime` run once per second."""

    def __init__(self, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""
        self._offset = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        second = int(record.created)
        if second != self._second:
            local = time.localtime(second)
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local)
            self._offset = utc_offset(local.tm_gmtoff)
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}{self._offset}"


def utc_offset(seconds: int) -> str:
    """`+01:00`, `-03:30`, `+00:00`."""
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


class JournalFormatter(logging.Formatter):
    """`<6>fastagi.agi: …`: the syslog priority first, no time (the journal has its own)."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return f"<{priority(record.levelno)}>{super().format(record)}"


def priority(level: int) -> int:
    return next((value for least, value in PRIORITIES if level >= least), DEBUG_PRIORITY)


def under_journald(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether `stream` is the journal's stream: `JOURNAL_STREAM` is `device:inode` of it (systemd.exec(5))."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):  # no such variable, or a stream without a file (tests)
        return False


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
    """The root logger for `serve`: one batching handler on `stream`, in the journal's format under systemd."""
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JournalFormatter() if under_journald(stream) else Formatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # the format uses none of these: not collecting them makes each log record much cheaper
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # no caller lookup per record (the logging HOWTO's own advice)
