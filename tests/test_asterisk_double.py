"""The FastAGI double behaves like Asterisk 22 where it matters: pipelined commands stall
unless the server half-closes (seen on a real Asterisk 22.11), and HANGUP interleaves."""

from __future__ import annotations

import asyncio

from conftest import run
from doubles.asterisk_agi import FakeAsterisk

COMMANDS = b'SET VARIABLE A "1"\nSET VARIABLE B "2"\nSET VARIABLE C "3"\n'


async def serve_once(half_close: bool) -> list[bytes]:
    """A bare server that pipelines three commands and collects the replies for 0.5 s."""
    replies: list[bytes] = []
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline() not in (b"\n", b""):
            pass  # the environment
        writer.write(COMMANDS)
        if half_close:
            writer.write_eof()
        try:
            while line := await asyncio.wait_for(reader.readline(), 0.5):
                replies.append(line)
        except asyncio.TimeoutError:
            pass
        writer.close()
        done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = FakeAsterisk(port)
    client = asyncio.create_task(channel.agi("x"))
    await done.wait()
    await client
    server.close()
    return replies


def test_pipelined_commands_stall_after_the_first_reply() -> None:
    assert run(serve_once(half_close=False)) == [b"200 result=1\n"]


def test_half_close_releases_every_reply() -> None:
    assert run(serve_once(half_close=True)) == [b"200 result=1\n"] * 3
