"""Listening sockets whose accepts the gateway drives itself: who may connect, and what to do out of descriptors.

The FastAGI, AudioSocket, metrics and control servers take their connections from a `Listener`:
it accepts, refuses before reading a byte whoever its `admit` check turns away (the
`permit` networks, a connection cap), and hands the others to the event loop with
`loop.connect_accepted_socket`, so the protocols are the same as under `create_server`.
A protocol is made knowing its peer's address as accept(2) gave it: asking the socket
later fails for a peer that has already reset the connection.

Out of file descriptors (EMFILE, ENFILE, or ENOBUFS/ENOMEM), the listener asks its
server to make room (`make_room`: the FastAGI server closes connections that stay
silent), and looks again at once if it did; else it stops watching its sockets and looks
again every `PAUSE` seconds, while connections wait in the kernel's listen queue. The
episode is one WARNING, and one INFO line once the queue is empty: each descriptor freed
meanwhile takes one more waiting connection, and a line each time would be a flood again.

asyncio's own accept loop (Python 3.11) cannot be used for this: it goes on calling
accept() after EMFILE, each time with an ERROR and a traceback and one more retry
scheduled (CPython gh-151615); uvloop (libuv) accepts and closes the queued connections,
saying nothing.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import resource
import socket
from typing import Any, Callable, Sequence

log = logging.getLogger("fastagi.listener")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = tuple[Any, ...]
"""A peer's address as accept(2) gave it: (host, port) or (host, port, flowinfo, scope_id)."""
Admit = Callable[[str], "str | None"]
"""Why a peer at this host address is refused, or None to take it."""
ProtocolFactory = Callable[[Address], asyncio.BaseProtocol]

EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept(2) on Linux: the connection waiting first failed meanwhile; take the next one (accept(2), "Error handling")
GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.ENOPROTOOPT, errno.EHOSTDOWN,
                  errno.ENONET, errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH})
PAUSE = 0.1  # seconds between looks while out of descriptors: one failing accept(2) each
FILES_BESIDES_CONNECTIONS = 64  # the database, log, listening sockets, AMI, calls' AudioSocket: a generous guess


def permitted(address: str, permit: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in permit if net.version == ip.version)


class Permit:
    """The `permit` of a server as an `Admit` check; a PBX connects from a handful of addresses: each is judged once."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = tuple(networks)
        self._allows = functools.lru_cache(maxsize=4096)(lambda address: permitted(address, self.networks))

    def __call__(self, address: str) -> str | None:
        return None if self._allows(address) else "not in permit"


def file_limit() -> int:
    """The descriptors this process may open (the soft RLIMIT_NOFILE)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def warn_if_short_of_descriptors(max_connections: int) -> None:
    """One WARNING at start when `max_connections` cannot all be open under the descriptor limit."""
    limit = file_limit()
    if limit == resource.RLIM_INFINITY or max_connections + FILES_BESIDES_CONNECTIONS <= limit:
        return
    log.warning("max_connections = %d, but this process may open only %d files (RLIMIT_NOFILE), its own included: "
                "out of them, the gateway stops accepting connections until some close; raise the limit "
                "(LimitNOFILE= in the systemd unit, ulimit -n) or lower max_connections", max_connections, limit)


async def bound_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets on every address `host` resolves to, as `loop.create_server` binds them."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, address in dict.fromkeys((info[0], info[4]) for info in infos):
            try:
                sock = socket.create_server(address, family=family, backlog=backlog)
            except OSError as exc:  # asyncio's words, as `cannot start: …` said them before
                raise OSError(exc.errno, f"error while attempting to bind on address {address!r}: "
                                         f"{(exc.strerror or str(exc)).lower()}") from None
            sock.setblocking(False)
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Accepts connections for one server (`name` in its log lines) and makes them `factory(peer)`'s protocols."""

    def __init__(self, name: str, factory: ProtocolFactory, admit: Admit | None = None,
                 make_room: Callable[[], int] | None = None) -> None:
        self.name = name
        self._factory = factory
        self._admit = admit
        self._make_room = make_room
        """Out of descriptors: close connections of this server that can go; how many (then look again at once)."""
        self._sockets: list[socket.socket] = []
        self._backlog = 100
        self._connecting: dict[asyncio.Task[object], socket.socket] = {}
        self._retry: asyncio.Handle | None = None
        self._exhausted_at: float | None = None
        self._pauses = 0
        self._closed_for_room = 0
        self.refused = 0
        """Connections `admit` turned away."""

    @property
    def port(self) -> int:
        return int(self._sockets[0].getsockname()[1])

    @property
    def listening(self) -> bool:
        """Between `serve` (or `listen`) and `close`."""
        return bool(self._sockets)

    async def listen(self, host: str, port: int, backlog: int = 100) -> None:
        self.serve(await bound_sockets(host, port, backlog), backlog)

    def serve(self, sockets: list[socket.socket], backlog: int) -> None:
        """Accept on `sockets`, listening and non-blocking; they are the listener's to close."""
        self._backlog = backlog
        self._sockets = sockets
        self._watch()

    def close(self) -> None:
        """Stop accepting and close the listening sockets (connections already made stay)."""
        self._unwatch()
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def _watch(self) -> None:
        self._retry = None
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)
        if self._exhausted_at is not None:  # the queue may have emptied while paused: no reader would fire to say so
            for sock in list(self._sockets):
                if self._retry is None:
                    self._accept(sock)

    def _unwatch(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        """Take what waits in the queue, at most one backlog's worth per turn of the loop."""
        for _ in range(self._backlog):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                self._caught_up()
                return
            except OSError as exc:
                if exc.errno in GONE:
                    continue
                if exc.errno not in EXHAUSTED:
                    raise  # the loop logs it: a bug, not a condition
                self._exhausted(exc)
                return
            self._take(conn, address)

    def _take(self, conn: socket.socket, peer: Address) -> None:
        reason = self._admit(peer[0]) if self._admit is not None else None
        if reason is not None:
            self.refused += 1
            log.warning("refused %s connection from %s: %s", self.name, peer[0], reason)
            conn.close()
            return
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(functools.partial(self._factory, peer), conn))
        self._connecting[task] = conn
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[object]) -> None:
        conn = self._connecting.pop(task)
        if not task.cancelled() and task.exception() is not None:  # gone before its transport was made
            log.debug("%s connection lost while being accepted: %s", self.name, task.exception())
            conn.close()

    def _exhausted(self, exc: OSError) -> None:
        self._unwatch()
        loop = asyncio.get_running_loop()
        freed = self._make_room() if self._make_room is not None else 0
        self._closed_for_room += freed
        # closed transports free their descriptors in callbacks already queued: this one runs after them
        self._retry = loop.call_soon(self._watch) if freed else loop.call_later(PAUSE, self._watch)
        self._pauses += not freed
        if self._exhausted_at is None:
            self._exhausted_at = loop.time()
            log.warning("%s out of file descriptors (%s, RLIMIT_NOFILE %d): not accepting connections until some "
                        "close, trying again every %g s", self.name, exc.strerror, file_limit(), PAUSE)

    def _caught_up(self) -> None:
        """Nothing waits in the queue: an episode out of descriptors, if any, is over."""
        if self._exhausted_at is not None:
            seconds = asyncio.get_running_loop().time() - self._exhausted_at
            log.info("%s accepting connections again after %.1f s (%d pauses; %d silent connections closed to make "
                     "room)", self.name, seconds, self._pauses, self._closed_for_room)
            self._exhausted_at = None
            self._pauses = 0
            self._closed_for_room = 0
