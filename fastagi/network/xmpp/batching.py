"""Writes gathered over one turn of the event loop and sent in one: both ends of the media link use it, so a
tick's frames of every call cost one system call, not one per call."""

from __future__ import annotations

import asyncio


class BatchedWriter:
    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self._outgoing: list[bytes] = []
        self._due = False

    def write(self, data: bytes) -> None:
        self._outgoing.append(data)
        if not self._due:
            self._due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._due = False
        data, self._outgoing = b"".join(self._outgoing), []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
