"""Asterisk's end of an AudioSocket connection, as captured in captures/audiosocket.txt.

It sends the UUID message first, then 20 ms audio messages on a real clock (kind 0x10
with 320 bytes of 8 kHz slin, or kind 0x12 with 640 bytes of slin16) and DTMF as kind
0x03 with one ASCII digit. It never sends a hangup message: hanging up closes the
socket. Like Asterisk, it ends the session on a hangup message from the server or on
any kind it does not accept from a server (anything but audio and hangup). It records
every message it receives with its arrival time. It has its own framing code, so it
does not share mistakes with the code under test.
"""

from __future__ import annotations

import asyncio
import re
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HEADER = struct.Struct("!BH")
HANGUP, UUID, DTMF, SLIN, SLIN16 = 0x00, 0x01, 0x03, 0x10, 0x12
AUDIO_KINDS = range(0x10, 0x19)
RATES = {SLIN: 8000, SLIN16: 16000}
FRAME_SECONDS = 0.020
CAPTURE = Path(__file__).parent.parent / "captures" / "audiosocket.txt"
_CAPTURED_MESSAGE = re.compile(r"A> kind=0x([0-9a-f]+) len=(\d+) payload=([0-9a-f]*)")


@dataclass(frozen=True)
class CapturedMessage:
    kind: int
    length: int
    payload: bytes
    """As far as the capture shows it (long audio payloads are cut short there)."""

    def on_the_wire(self) -> bytes:
        """The message as sent, the part of the payload the capture leaves out as zeros."""
        return HEADER.pack(self.kind, self.length) + self.payload.ljust(self.length, b"\0")


def captured_sessions() -> dict[str, list[CapturedMessage]]:
    """The sessions of captures/audiosocket.txt, by their title line."""
    sessions: dict[str, list[CapturedMessage]] = {}
    for line in CAPTURE.read_text().splitlines():
        if line.startswith("# "):
            title = line[2:]
            sessions[title] = []
        elif match := _CAPTURED_MESSAGE.match(line):
            kind, length, payload = match.groups()
            sessions[title].append(CapturedMessage(int(kind, 16), int(length), bytes.fromhex(payload)))
    return sessions


@dataclass(frozen=True)
class Received:
    kind: int
    payload: bytes
    at: float
    """Event-loop time of arrival."""


@dataclass
class AsteriskAudioSocket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    kind: int
    received: list[Received] = field(default_factory=list)
    eof_at: float | None = None
    """When the server closed the connection."""
    violation: int | None = None
    """A kind Asterisk refuses from a server, if one came (Asterisk then ends the session)."""
    after_end: bytes = b""
    """Bytes the server sent after the message that ended the session."""
    _reading: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int, call: uuid.UUID, kind: int = SLIN) -> AsteriskAudioSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer, kind)
        writer.write(HEADER.pack(UUID, 16) + call.bytes)
        client._reading = asyncio.create_task(client._read())
        return client

    @property
    def rate(self) -> int:
        return RATES[self.kind]

    @property
    def frame_bytes(self) -> int:
        return self.rate // 50 * 2

    async def send_audio(self, pcm: bytes) -> list[float]:
        """Send `pcm` as 20 ms messages, one every 20 ms; returns each message's send time."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = []
        for index, offset in enumerate(range(0, len(pcm), self.frame_bytes)):
            await asyncio.sleep(max(0.0, start + index * FRAME_SECONDS - loop.time()))
            chunk = pcm[offset : offset + self.frame_bytes]
            self.writer.write(HEADER.pack(self.kind, len(chunk)) + chunk)
            sent.append(loop.time())
        return sent

    def send_dtmf(self, digit: str) -> None:
        self.writer.write(HEADER.pack(DTMF, 1) + digit.encode("ascii"))

    async def hang_up(self) -> None:
        """What Asterisk does when its channel hangs up: close the socket, no message."""
        self.writer.close()
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the session ends (server closed, or a message Asterisk ends it on)."""
        assert self._reading is not None
        await asyncio.wait_for(asyncio.shield(self._reading), timeout)

    def audio(self) -> bytes:
        """Every audio payload received, in order."""
        return b"".join(r.payload for r in self.received if r.kind in AUDIO_KINDS)

    def kinds(self) -> list[int]:
        return [r.kind for r in self.received]

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (kind := await self._read_message(loop)) in AUDIO_KINDS:
                pass
            if kind != HANGUP:
                self.violation = kind
            # Asterisk stops reading here and closes; wait a little to see the server close too.
            self.after_end = await asyncio.wait_for(self.reader.read(), 1.0)
            self.eof_at = loop.time()
        except asyncio.IncompleteReadError:
            self.eof_at = loop.time()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.writer.close()

    async def _read_message(self, loop: asyncio.AbstractEventLoop) -> int:
        kind, length = HEADER.unpack(await self.reader.readexactly(HEADER.size))
        payload = await self.reader.readexactly(length)
        self.received.append(Received(kind, payload, loop.time()))
        return kind
