"""Hostile and broken FastAGI clients: none may stall the event loop or crash the server."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import re
import resource
import socket
import struct
import time
from pathlib import Path

import pytest

from conftest import connect_from, running_gateway, run
from doubles.asterisk_agi import FakeAsterisk, environment
from fastagi.agi.protocol import AgiConnection
from fastagi.agi.session import AgiSession, SessionClosed

HALF_ENVIRONMENT = b"agi_network: yes\nagi_network_script: get-profile-balance?account=alice\nagi_chan"


class LoopLag:
    """Measures how late a 10 ms ticker wakes up: a stalled loop shows here.

    The garbage earlier tests left is collected first: a full collection of it in the
    middle of the measure is the test process's pause, not the server's (`serve` freezes
    its start-up objects and collects the young ones less often, see cli.GC_THRESHOLDS).
    """

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.monotonic() - start - 0.01)

    def __enter__(self) -> "LoopLag":
        gc.collect()
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def normal_request(port: int) -> float:
    start = time.monotonic()
    result = await FakeAsterisk(port).agi("get-profile-balance?account=alice")
    assert result.skype()["SKYPE_BALANCE"] == "1050"
    return time.monotonic() - start


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server ends the connection without a reply (FIN, or RST over unread data)."""
    try:
        return await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionResetError:
        return True


async def send_raw(port: int, data: bytes, then_close: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if then_close:
        writer.close()
    return reader, writer


def test_half_environment_then_close_or_silence(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, general="environment_timeout = 0.5") as gw:
            with LoopLag() as lag:
                await send_raw(gw.agi.port, HALF_ENVIRONMENT, then_close=True)
                reader, writer = await send_raw(gw.agi.port, HALF_ENVIRONMENT, then_close=False)
                assert await normal_request(gw.agi.port) < 1.0
                # the silent client is dropped after the environment deadline, having cost nothing
                silent_since = time.monotonic()
                assert await asyncio.wait_for(reader.read(), 2) == b""
                assert time.monotonic() - silent_since > 0.3  # not before its deadline (0.5 s from connecting)
                writer.close()
                await asyncio.sleep(0.05)
                assert gw.agi.active == 0
            assert lag.worst < 0.1
    with caplog.at_level(logging.INFO, "fastagi.agi"):
        run(body())
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "AGI peer 127.0.0.1 closed before sending its whole environment",
        "AGI peer 127.0.0.1 sent no complete environment within 0.5s",
    ]


def test_one_megabyte_line_and_invalid_utf8_are_dropped(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            with LoopLag() as lag:
                reader, writer = await send_raw(gw.agi.port, b"agi_network: yes\nagi_x: " + b"A" * 1_000_000, then_close=False)
                assert await closed_by_server(reader)
                writer.close()
                reader, writer = await send_raw(gw.agi.port, b"agi_network_script: get-user\xff\xfe\n\n", then_close=False)
                assert await closed_by_server(reader)
                writer.close()
                assert await normal_request(gw.agi.port) < 1.0
            assert lag.worst < 0.1
    run(body())


def test_500_idle_connections_do_not_delay_a_real_request(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))

    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            with LoopLag() as lag:
                idle = [await asyncio.open_connection("127.0.0.1", gw.agi.port) for _ in range(500)]
                await asyncio.sleep(0.1)
                assert gw.agi.active == 500
                elapsed = await normal_request(gw.agi.port)
                for _, writer in idle:
                    writer.close()
            assert elapsed < 1.0, elapsed
            assert lag.worst < 0.1
    run(body())


def test_address_outside_permit_is_refused_before_reading(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, general="permit = 127.0.0.1/32") as gw:
            reader, writer = await connect_from("127.0.0.2", gw.agi.port)
            writer.write(b"agi_network: yes\nagi_network_script: get-profile-balance?account=alice\n\n")
            assert await closed_by_server(reader)
            writer.close()
            assert gw.agi.refused == 1
            assert await normal_request(gw.agi.port) < 1.0  # 127.0.0.1 itself is permitted
    run(body())


def test_session_time_cap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    counted: dict[str, float | None] = {}

    async def body() -> None:
        async with running_gateway(tmp_path, general="session_timeout = 0.3\nmetrics = 127.0.0.1:0") as gw:
            start = time.monotonic()
            reader, writer = await send_raw(
                gw.agi.port,
                b"agi_network: yes\nagi_network_script: get-profile-balance\nagi_channel: PJSIP/1000-0000002a\n"
                b"agi_uniqueid: 1795732263.42\n\n",
                then_close=False,
            )
            # the gateway asks for SKYPE_ACCOUNT; a client that never answers is cut at the cap
            assert (await reader.readline()) == b"GET VARIABLE SKYPE_ACCOUNT\n"
            assert await asyncio.wait_for(reader.read(), 2) == b""
            assert 0.3 <= time.monotonic() - start < 1.0
            writer.close()
            assert await normal_request(gw.agi.port) < 1.0  # sessions after it get the whole cap again
            for result in ("CUT_OFF", "SUCCESS"):
                counted[result] = gw.action_metrics.registry.get_sample_value(
                    "skype_fastagi_actions_total", {"action": "get-profile-balance", "result": result, "via": "agi"})
    with caplog.at_level(logging.INFO):
        run(body())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "AGI session uniqueid=1795732263.42 channel=PJSIP/1000-0000002a from 127.0.0.1 exceeded 0.3s and was closed"
    ]
    assert any(r.getMessage().startswith(
        "uniqueid=1795732263.42 channel=PJSIP/1000-0000002a action=get-profile-balance (no arguments) -> "
        "not finished: cut off by session_timeout or by the server stopping (3") for r in caplog.records)
    assert counted == {"CUT_OFF": 1.0, "SUCCESS": 1.0}


def test_stopping_cuts_a_session_past_the_grace_without_calling_it_late(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            reader, writer = await send_raw(
                gw.agi.port, b"agi_network: yes\nagi_network_script: get-profile-balance\n\n", then_close=False
            )
            assert (await reader.readline()) == b"GET VARIABLE SKYPE_ACCOUNT\n"
            await gw.agi.stop(grace=0.1)
            assert await asyncio.wait_for(reader.read(), 2) == b""
            assert gw.agi.active == 0
            writer.close()
    with caplog.at_level(logging.INFO):
        run(body())
    messages = [r.getMessage() for r in caplog.records]
    assert "waiting up to 0.1s for 1 AGI session(s)" in messages
    assert any("action=get-profile-balance (no arguments) -> not finished: cut off by session_timeout or by the server stopping"
               in m for m in messages)
    assert not any("exceeded" in m for m in messages)


def test_client_gone_while_the_gateway_waits_for_a_reply(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            with LoopLag() as lag:
                reader, writer = await send_raw(gw.agi.port, b"agi_network: yes\nagi_network_script: get-profile-balance\n\n", then_close=False)
                assert (await reader.readline()) == b"GET VARIABLE SKYPE_ACCOUNT\n"
                writer.close()  # the channel's AGI died mid-command
                await asyncio.sleep(0.05)
                assert gw.agi.active == 0
                assert await normal_request(gw.agi.port) < 1.0
            assert lag.worst < 0.1
    run(body())


def test_closed_connections_are_freed_without_the_cycle_collector(tmp_path: Path) -> None:
    """Garbage cycles are only freed by full collections, which stall the loop under load."""

    def served_here(thing: object, port: int) -> bool:
        if not isinstance(thing, asyncio.BaseTransport):
            return False
        sockname = thing.get_extra_info("sockname")
        return isinstance(sockname, tuple) and sockname[1] == port

    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            gc.collect()
            gc.disable()
            try:
                for _ in range(20):
                    await normal_request(gw.agi.port)
                await send_raw(gw.agi.port, HALF_ENVIRONMENT, then_close=True)
                await asyncio.sleep(0.1)
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                cyclic = [thing for thing in gc.garbage if served_here(thing, gw.agi.port)]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
            assert cyclic == []
    run(body())


@pytest.mark.parametrize("then", [b"", b"200 result=1 (R\xe9ception)\n", b"200 res"])
def test_peer_leaving_while_a_reply_is_awaited_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, then: bytes
) -> None:
    """Closing, invalid UTF-8 or a cut reply while the gateway waits: logged as a lost peer, never as a failure."""

    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.agi.port)
            writer.write(environment("get-profile-balance", [], "1.7", "PJSIP/1000-1", gw.agi.port))
            assert await reader.readline() == b"GET VARIABLE SKYPE_ACCOUNT\n"  # two accounts: it asks the channel
            writer.write(then)
            writer.close()
            await closed_by_server(reader)
            await asyncio.sleep(0.1)
            assert gw.agi.active == 0

    with caplog.at_level(logging.INFO):
        run(body())
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any("action=get-profile-balance (no arguments) -> not run: the peer closed the connection" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
@pytest.mark.parametrize("script", ["list-registered", "get-profile-balance", "nosuch?account=alice",
                                    "chatmessage-send?account=alice&user-name=bob&message-body=%ff"])
def test_a_peer_that_sends_its_environment_and_leaves_is_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, script: str, reset: bool
) -> None:
    """The session's own line says the peer left (not run, or not delivered); no `lost: [Errno …]` line beside it,
    and arguments never read are not called `(no arguments)`."""
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            with socket.create_connection(("127.0.0.1", gw.agi.port)) as peer:
                peer.sendall(environment(script, [], "1.9", "PJSIP/1000-9", gw.agi.port))
                if reset:
                    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            for _ in range(100):
                if any(r.name == "fastagi.session" for r in caplog.records) and gw.agi.active == 0:
                    break
                await asyncio.sleep(0.02)

    with caplog.at_level(logging.DEBUG):
        run(body())
    [line] = [r.getMessage() for r in caplog.records if "1.9" in r.getMessage() or "AGI connection" in r.getMessage()]
    name = script.partition("?")[0]
    arguments = "(arguments not read)" if "?" in script else "(no arguments)"
    assert line.startswith(f"uniqueid=1.9 channel=PJSIP/1000-9 action={name} {arguments} -> "), line
    assert re.search(r" -> (not run|.*, not delivered): the peer closed the connection \(\d+\.\d ms\)$", line), line


class _GoneTransport(asyncio.Transport):
    """A connection whose peer reset it before the gateway half-closed it."""

    def write(self, data: bytes) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")


def test_a_peer_gone_when_the_results_are_half_closed_is_a_closed_session() -> None:
    async def body() -> None:
        connection = AgiConnection()
        [environment] = connection.receive_data(b"agi_network_script: list-registered\n\n")
        session = AgiSession(_GoneTransport(), connection, environment)
        with pytest.raises(SessionClosed):
            await session.finish(['SET VARIABLE SKYPE_STATUS "SUCCESS"'])
    run(body())
