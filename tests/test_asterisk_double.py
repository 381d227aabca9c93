"""The doubles behave like Asterisk 22 where it matters: pipelined commands stall unless the
server half-closes (seen on a real Asterisk 22.11), HANGUP interleaves, and the AMI double
answers PlayDTMF byte for byte as the captured Asterisk 22.11 did."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

from conftest import run
from doubles.ami_server import AmiServer, Channel
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


def captured_ami_session(title_start: str) -> list[tuple[str, bytes]]:
    """One session of captures/ami-sessions.txt: (``A``/``C``, line) in order."""
    text = (Path(__file__).parent / "captures" / "ami-sessions.txt").read_text(encoding="utf-8")
    session = text.split(f"# --- {title_start}", 1)[1].split("\n# --- ", 1)[0]
    return [(line[0], ast.literal_eval(line[3:])) for line in session.splitlines()[1:] if line[1:3] == "> "]


def test_the_ami_double_answers_playdtmf_as_asterisk_22_did() -> None:
    """Replays the client side of the captured PlayDTMF session: the double's bytes are Asterisk's."""
    async def body() -> None:
        lines = captured_ami_session("PlayDTMF")
        channel_line = next(line for who, line in lines if who == "C" and line.startswith(b"Channel: Local/"))
        ami = AmiServer()
        ami.channels[channel_line[len(b"Channel: "):-2].decode()] = channel = Channel(send_dtmf=sent.append)
        await ami.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", ami.port)
        heard = []
        for who, line in lines:
            if who == "C":
                writer.write(line)
            else:
                heard.append(await asyncio.wait_for(reader.readline(), 2))
        assert heard == [line for who, line in lines if who == "A"]
        assert (channel.received_dtmf, sent) == (["5"], ["5"])  # Receive: yes, then sent out
        writer.close()
        await ami.stop()

    sent: list[str] = []
    run(body())
