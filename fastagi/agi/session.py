"""An AGI session over an asyncio transport: a thin layer over `AgiConnection`."""

from __future__ import annotations

import asyncio
from collections import deque

from .protocol import AgiConnection, Environment, Reply


class SessionClosed(ConnectionError):
    """The peer closed the connection before answering."""


class AgiSession:
    """Sends commands one at a time and returns their replies.

    Asterisk reads commands with stdio but waits with `poll()`: several commands in one
    write stall after the first reply. So commands go one by one, except `finish()`,
    which pipelines the last batch and half-closes the socket (the only safe way).
    The server's protocol feeds replies in with `reply()` and `closed()`.
    """

    def __init__(self, transport: asyncio.WriteTransport, connection: AgiConnection, environment: Environment) -> None:
        self._transport = transport
        self._connection = connection
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.environment = environment

    @property
    def caller(self) -> str:
        """Who runs this session, as logged: the channel's unique id and name."""
        env = self.environment
        return f"uniqueid={env.get('agi_uniqueid', '-')} channel={env.get('agi_channel', '-')}"

    async def command(self, command: str) -> Reply:
        self._check_open()
        self._transport.write(self._connection.send_command(command))
        return await self._next_reply()

    async def finish(self, commands: list[str]) -> list[Reply]:
        """Send the last commands in one write, half-close, and collect every reply."""
        self._check_open()
        self._transport.write(b"".join(self._connection.send_command(c) for c in commands))
        if self._transport.can_write_eof():
            try:
                self._transport.write_eof()
            except OSError as exc:  # the peer is gone already: shutdown() says ENOTCONN
                self.closed()
                raise SessionClosed("peer closed the AGI connection") from exc
        return [await self._next_reply() for _ in commands]

    def reply(self, reply: Reply) -> None:
        self._replies.append(reply)
        self._wake()

    def closed(self) -> None:
        self._closed = True
        self._wake()

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed("peer closed the AGI connection")

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _next_reply(self) -> Reply:
        while not self._replies:
            if self._closed:
                raise SessionClosed("peer closed the AGI connection")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._replies.popleft()
