"""An AGI session over asyncio streams: a thin layer over `AgiConnection`."""

from __future__ import annotations

import asyncio
from collections import deque

from .protocol import AgiConnection, Closed, Environment, Reply

READ_CHUNK = 65536


class SessionClosed(ConnectionError):
    """The peer closed the connection before answering."""


class AgiSession:
    """Sends commands one at a time and returns their replies.

    Asterisk reads commands with stdio but waits with `poll()`: several commands in one
    write stall after the first reply. So commands go one by one, except `finish()`,
    which pipelines the last batch and half-closes the socket (the only safe way).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: AgiConnection,
        environment: Environment,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._connection = connection
        self._replies: deque[Reply] = deque()
        self.environment = environment

    async def command(self, command: str) -> Reply:
        self._writer.write(self._connection.send_command(command))
        await self._writer.drain()
        return await self._next_reply()

    async def finish(self, commands: list[str]) -> list[Reply]:
        """Send the last commands in one write, half-close, and collect every reply."""
        self._writer.write(b"".join(self._connection.send_command(c) for c in commands))
        if self._writer.can_write_eof():
            self._writer.write_eof()
        await self._writer.drain()
        return [await self._next_reply() for _ in commands]

    async def _next_reply(self) -> Reply:
        while not self._replies:
            data = await self._reader.read(READ_CHUNK)
            for event in self._connection.receive_data(data):
                # a Hangup needs nothing here: the result variables are dead-safe commands
                if isinstance(event, Reply):
                    self._replies.append(event)
                elif isinstance(event, Closed):
                    raise SessionClosed("peer closed the AGI connection")
        return self._replies.popleft()
