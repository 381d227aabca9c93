"""The serve command's log: logging's own line format, INFO lines of a loop iteration written together."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest

from conftest import run
from fastagi.logs import BatchingStreamHandler, Formatter, JournalFormatter, under_journald, utc_offset


class CountingStream:
    """A text stream that keeps what each write(2) would have carried."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, CountingStream]]:
    stream = CountingStream()
    handler = BatchingStreamHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.logs")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield log, stream
    log.removeHandler(handler)


def test_info_lines_of_one_iteration_are_one_write(logger: tuple[logging.Logger, CountingStream]) -> None:
    log, stream = logger

    async def body() -> None:
        for n in range(3):
            log.info("session %d", n)
        assert stream.writes == []  # not yet: the loop has not come round
        await asyncio.sleep(0)
        assert stream.writes == ["INFO session 0\nINFO session 1\nINFO session 2\n"]
        log.debug("next")
        await asyncio.sleep(0)
        assert stream.writes[1:] == ["DEBUG next\n"]
    run(body())


def test_a_warning_is_written_at_once_after_the_lines_before_it(logger: tuple[logging.Logger, CountingStream]) -> None:
    log, stream = logger

    async def body() -> None:
        log.info("before")
        log.warning("trouble")
        assert stream.writes == ["INFO before\nWARNING trouble\n"]
        await asyncio.sleep(0)
        assert stream.writes == ["INFO before\nWARNING trouble\n"]  # the scheduled flush finds nothing
        log.info("after")
        await asyncio.sleep(0)
        assert stream.writes[1:] == ["INFO after\n"]
    run(body())


def test_lines_outside_a_loop_are_written_at_once(logger: tuple[logging.Logger, CountingStream]) -> None:
    log, stream = logger
    log.info("starting")
    assert stream.writes == ["INFO starting\n"]


def test_a_loop_that_stops_before_flushing_loses_nothing(logger: tuple[logging.Logger, CountingStream]) -> None:
    log, stream = logger

    async def last_words() -> None:
        log.info("last words")

    run(last_words())  # asyncio.run may close the loop before the flush it scheduled
    log.info("after the loop")
    assert "".join(stream.writes) == "INFO last words\nINFO after the loop\n"

    async def next_loop() -> None:
        log.info("in a new loop")
        await asyncio.sleep(0)
        assert "".join(stream.writes).endswith("INFO in a new loop\n")
    run(next_loop())


def test_formatter_time_is_local_time_with_its_utc_offset() -> None:
    ours = Formatter("%(asctime)s %(message)s")
    now = time.time()
    for created in (now, now + 0.0005, now + 0.9999, now + 1.25, now + 3600, 1782000000.5, 1798000000.25):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        expected = datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")
        assert ours.format(record) == f"{expected} m"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d m", ours.format(record))


def test_utc_offsets() -> None:
    assert [utc_offset(s) for s in (0, 3600, -12600, 20700)] == ["+00:00", "+01:00", "-03:30", "+05:45"]


def test_under_journald_lines_carry_their_priority_and_no_time(tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "w") as stream, open(tmp_path / "other", "w") as other:
        info = os.fstat(stream.fileno())
        journal = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert under_journald(stream, journal)
        assert not under_journald(other, journal)  # the variable names another stream (a child's redirected stderr)
        assert not under_journald(stream, {})
        assert not under_journald(stream, {"JOURNAL_STREAM": "junk"})
    formatter = JournalFormatter()
    lines = []
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        record = logging.LogRecord("fastagi.agi", level, __file__, 1, "refused %s", ("10.0.0.9",), None)
        lines.append(formatter.format(record))
    assert lines == [f"<{p}>fastagi.agi: refused 10.0.0.9" for p in (7, 6, 4, 3, 2)]
