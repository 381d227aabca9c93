"""The serve command's log: logging's own line format, INFO lines of a loop iteration written together."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Iterator

import pytest

from conftest import run
from fastagi.logs import BatchingStreamHandler, Formatter


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


def test_formatter_time_is_loggings_own() -> None:
    ours, stdlib = Formatter("%(asctime)s %(message)s"), logging.Formatter("%(asctime)s %(message)s")
    now = time.time()
    for created in (now, now + 0.0005, now + 0.9999, now + 1.25, now + 3600):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        assert ours.format(record) == stdlib.format(record)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} m", ours.format(record))
