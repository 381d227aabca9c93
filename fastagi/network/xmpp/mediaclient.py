"""The gateway's side of the media worker: the process, its calls, and each call's audio port.

`MediaWorker` starts `mediaworker` as a child process on a socket pair and follows it;
each call gets a number and a `CallPort`, the far party the media engine mixes. Frames
the engine pushes go out once per turn of the event loop, all calls' in one write.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ...model.audio import FRAME_BYTES, SILENCE
from . import mediawire
from .batching import BatchedWriter

log = logging.getLogger("fastagi.network.xmpp")

JITTER_FRAMES = 2
"""Frames from the worker held before playing out: the cushion against its scheduling jitter."""
MAX_FRAMES = 8


class CallPort:
    """A call's far party for the media engine: what the XMPP user says (`pull`) and hears (`push`)."""

    def __init__(self, worker: MediaWorker, number: int) -> None:
        self._worker = worker
        self._number = number
        self._heard: deque[bytes] = deque(maxlen=MAX_FRAMES)
        self._playing = False

    def received(self, pcm: bytes) -> None:
        if len(pcm) == FRAME_BYTES:
            self._heard.append(pcm)

    def pull(self) -> bytes:
        if not self._playing:
            if len(self._heard) < JITTER_FRAMES:
                return SILENCE
            self._playing = True
        if not self._heard:
            self._playing = False
            return SILENCE
        return self._heard.popleft()

    def push(self, frame: bytes) -> None:
        self._worker.send_audio(self._number, frame)


@dataclass
class _Call:
    port: CallPort
    on_state: Callable[[str, str], None]
    on_dtmf: Callable[[str], None]
    description: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    on_packet: Callable[[dict[str, Any]], None] | None = None


class MediaWorker(asyncio.Protocol):
    """The child process doing every call's ICE, DTLS-SRTP and codecs, and the link to it."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._decoder = mediawire.Decoder()
        self._calls: dict[int, _Call] = {}
        self._numbers = iter(range(1, 1 << 31))
        self._writer = BatchedWriter()  # a tick's frames of every call in one write
        self.lost: asyncio.Future[None] | None = None

    async def start(self) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "fastagi.network.xmpp.mediaworker", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        loop = asyncio.get_running_loop()
        self.lost = loop.create_future()
        await loop.connect_accepted_socket(lambda: self, sock=ours)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._process is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._process.wait), 5)
            except asyncio.TimeoutError:
                self._process.kill()
            self._process = None

    # -- calls --------------------------------------------------------------------------------
    def open(self, on_state: Callable[[str, str], None], on_dtmf: Callable[[str], None],
             ice_servers: list[dict[str, Any]], timeout: float, offer: str | None = None) -> tuple[int, asyncio.Future[str]]:
        """A new call: its number, and the local description to come (an offer, or the answer to `offer`).

        Its media must come up within `timeout` seconds, and then the other side may not be silent on the wire
        (no RTP, no RTCP) for longer: else the call's state becomes `failed`."""
        number = next(self._numbers)
        call = self._calls[number] = _Call(CallPort(self, number), on_state, on_dtmf)
        self._send({"op": "open", "call": number, "ice": ice_servers, "timeout": timeout, "offer": offer})
        return number, call.description

    def port(self, number: int) -> CallPort:
        return self._calls[number].port

    def accepted(self, number: int, answer: str) -> None:
        self._send({"op": "accepted", "call": number, "sdp": answer})

    def candidates(self, number: int, lines: list[str]) -> None:
        self._send({"op": "candidates", "call": number, "lines": lines})

    def dtmf(self, number: int, digits: str) -> None:
        self._send({"op": "dtmf", "call": number, "digits": digits})

    def trace(self, number: int, on_packet: Callable[[dict[str, Any]], None]) -> None:
        """Have every telephone-event packet the call receives reported to `on_packet` (diagnostics)."""
        self._calls[number].on_packet = on_packet
        self._send({"op": "trace", "call": number, "on": True})

    def close_call(self, number: int) -> None:
        if self._calls.pop(number, None) is not None:
            self._send({"op": "close", "call": number})

    # -- the link -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._writer.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = self._writer.transport = None
        for call in list(self._calls.values()):
            call.on_state("failed", "the media worker is gone")
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except mediawire.WireError:
            log.exception("the media worker sent what is not the media protocol")
            assert self._transport is not None
            self._transport.abort()
            return
        for message in messages:
            if isinstance(message, mediawire.Audio):
                call = self._calls.get(message.call)
                if call is not None:
                    call.port.received(message.pcm)
            else:
                self._control(message)

    def _control(self, message: dict[str, Any]) -> None:
        call = self._calls.get(int(message.get("call", 0)))
        if call is None:
            return
        op = message["op"]
        if op in ("offer", "answer"):
            if not call.description.done():
                call.description.set_result(str(message.get("sdp", "")))
        elif op == "state":
            state, reason = str(message.get("state", "")), str(message.get("reason", ""))
            if state == "failed" and not call.description.done():
                call.description.set_exception(RuntimeError(reason or "the media could not be set up"))
            call.on_state(state, reason)
        elif op == "dtmf":
            call.on_dtmf(str(message.get("digit", "")))
        elif op == "event-packet" and call.on_packet is not None:
            call.on_packet(message)

    def _send(self, message: dict[str, Any]) -> None:
        self._writer.write(mediawire.control(message))

    def send_audio(self, number: int, pcm: bytes) -> None:
        if number in self._calls:
            self._writer.write(mediawire.audio(number, pcm))


