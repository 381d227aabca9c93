"""Attached AudioSocket connections, read and written on the media engine's tick rather than by the event loop.

An asyncio transport wakes the loop, makes a bytes object and runs a callback for every
read of every connection, and writes each message in a call of its own: at 1,000 calls
that machinery alone fills most of a core. Once a connection has named its call, its
socket is handed to the poller: one `select.epoll` for every such socket, asked without
waiting as each tick begins, each ready socket read once into one buffer (a read of whole
audio frames and nothing else goes straight to its connection's jitter buffer,
`PolledSocket.route_audio`; any other, to the session's parser); each message the tick
writes goes out in one `send`, and what the kernel did not take waits in a small backlog
of that connection, sent before its next message.

A socket goes back to its transport (`PolledSocket.give_back`) when its session ends or
it reports end of file or an error; the transport, paused meanwhile, carries on from
there (it finds the end of file or the error itself) and writes what the backlog held.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
from typing import Callable, Iterator

from .protocol import HEADER

READ_BYTES = 1 << 16
SOCKETS_PER_STEP = 32
"""Sockets read between two points where the engine may hand the loop back."""


class SocketPoller:
    """One epoll for the sockets of every attached connection."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._sockets: dict[int, PolledSocket] = {}
        self._view = memoryview(bytearray(READ_BYTES))

    def take(
        self, transport: asyncio.Transport, on_data: Callable[[memoryview], None], on_gone: Callable[[], None]
    ) -> PolledSocket:
        """Read and write `transport`'s socket from now on, until `give_back`.

        `on_data` gets each read (a view of the shared buffer, valid until it returns);
        `on_gone` is called once the socket reports end of file or an error.
        """
        polled = PolledSocket(self, transport, on_data, on_gone)
        self._sockets[polled.fileno] = polled
        self._epoll.register(polled.fileno, select.EPOLLIN)
        return polled

    def poll(self) -> Iterator[None]:
        """Read every socket that has something to read, now; a step (a chance to yield) every few sockets."""
        sockets, view = self._sockets, self._view
        for count, (fileno, _) in enumerate(self._epoll.poll(0, max(len(sockets), 1)), 1):
            polled = sockets.get(fileno)
            if polled is not None:  # else given back since the poll
                polled.read(view)
            if not count % SOCKETS_PER_STEP:
                yield

    def _drop(self, polled: PolledSocket) -> None:
        del self._sockets[polled.fileno]
        self._epoll.unregister(polled.fileno)


class PolledSocket:
    """A connection's socket while the poller has it: a duplicate of its transport's, the transport paused."""

    def __init__(
        self,
        poller: SocketPoller,
        transport: asyncio.Transport,
        on_data: Callable[[memoryview], None],
        on_gone: Callable[[], None],
    ) -> None:
        self._poller = poller
        self._transport = transport
        self._on_data = on_data
        self._on_gone = on_gone
        transport.pause_reading()
        self._socket = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        self._socket.setblocking(False)  # the transport's is already: the flag is shared, Python's view of it is not
        self.fileno = self._socket.fileno()
        self._backlog = bytearray()
        self._audio_header = b""
        self._audio_size = -1
        self._take_audio: Callable[[bytes], None] | None = None

    def route_audio(self, header: bytes, size: int, take: Callable[[bytes], None]) -> None:
        """From now on a read of whole audio messages (each `size` bytes starting with `header`) goes to `take`,
        one payload at a time, past the session's parser: the session says so only while its parser holds no
        partial message, and says `unroute_audio` before it holds one."""
        self._audio_header, self._audio_size, self._take_audio = header, size, take

    def unroute_audio(self) -> None:
        """Every read goes to `on_data` again."""
        self._audio_size = -1

    @property
    def backlog(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return len(self._backlog)

    def read(self, buffer: memoryview) -> None:
        try:
            size = self._socket.recv_into(buffer)
        except BlockingIOError:
            return
        except OSError:
            size = 0  # reset: the transport, reading again, sees the connection's end
        if not size:
            self._on_gone()
        # one whole frame: `_whole_audio`'s commonest case (most reads of every tick), checked without its loop
        elif size == self._audio_size and buffer[: HEADER.size] == self._audio_header:
            self._take_audio(bytes(buffer[HEADER.size : size]))  # type: ignore[misc]  # set with the size
        elif not self._whole_audio(buffer, size):
            self._on_data(buffer[:size])

    def _whole_audio(self, buffer: memoryview, size: int) -> bool:
        """Hand a read of several whole audio messages to `take_audio`, one by one, if that is what it is.

        Such reads come from a socket whose frame came just after the last poll (at 1,000 calls,
        one socket in five or six at every tick) and from every socket once the tick is behind:
        through the session's parser they cost several times a read of one frame (at 1,000 calls
        behind, a fifth of the core), just when it can least be spared.
        """
        step, header = self._audio_size, self._audio_header
        if step <= 0 or size % step:
            return False
        starts = range(0, size, step)
        if any(buffer[start : start + HEADER.size] != header for start in starts):
            return False
        for start in starts:
            self._take_audio(bytes(buffer[start + HEADER.size : start + step]))  # type: ignore[misc]
        return True

    def send(self, message: bytes | memoryview, limit: int) -> bool:
        """Write `message` whole, unless more than `limit` bytes already wait (False: nothing is written).

        What the kernel does not take now goes first next time.
        """
        backlog = self._backlog
        if backlog:
            if len(backlog) > limit:
                return False
            backlog += message
            message = backlog
        try:
            sent = self._socket.send(message)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return True  # the peer is gone: the next read finds out and ends the session
        if backlog:
            del backlog[:sent]
        elif sent < len(message):
            backlog += message[sent:]
        return True

    def give_back(self) -> None:
        """Stop polling; the transport reads again and sends the backlog before anything else."""
        self._poller._drop(self)
        if self._backlog and not self._transport.is_closing():
            self._transport.write(bytes(self._backlog))
        self._socket.close()
        self._transport.resume_reading()
