"""The FastAGI TCP server: access control, limits and timeouts around each session.

Everything protocol-related lives in `protocol.py`; this module only moves bytes,
enforces `permit`, the environment deadline and the per-session time cap, and keeps
the set of running sessions for a graceful stop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Sequence

from .protocol import AgiConnection, AgiProtocolError, Closed, Environment, Limits
from .session import READ_CHUNK, AgiSession

log = logging.getLogger("fastagi.agi")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SessionHandler = Callable[[AgiSession], Awaitable[None]]


@dataclass(frozen=True)
class AgiServerSettings:
    bind: str = "127.0.0.1"
    port: int = 4573
    permit: Sequence[Network] = field(default_factory=lambda: (ipaddress.ip_network("127.0.0.1/32"),))
    environment_timeout: float = 5.0
    session_timeout: float = 60.0
    max_connections: int = 2048
    limits: Limits = field(default_factory=Limits)


def permitted(address: str, permit: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in permit if net.version == ip.version)


class AgiServer:
    def __init__(self, settings: AgiServerSettings, handler: SessionHandler) -> None:
        self.settings = settings
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.settings.bind, self.settings.port, limit=READ_CHUNK, backlog=1024
        )
        log.info("FastAGI listening on %s:%d", self.settings.bind, self.port)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let running sessions finish for up to `grace` seconds."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        if self._tasks:
            log.info("waiting up to %.1fs for %d AGI session(s)", grace, len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        if not permitted(peer[0], self.settings.permit):
            self.refused += 1
            log.warning("refused AGI connection from %s: not in permit", peer[0])
            writer.transport.abort()
            return
        if len(self._tasks) >= self.settings.max_connections:
            self.refused += 1
            log.warning("refused AGI connection from %s: %d sessions open", peer[0], len(self._tasks))
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer, peer[0]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        connection = AgiConnection(self.settings.limits)
        try:
            environment = await self._read_environment(reader, connection, peer)
            if environment is not None:
                session = AgiSession(reader, writer, connection, environment)
                async with asyncio.timeout(self.settings.session_timeout):
                    await self._handler(session)
        except TimeoutError:
            log.warning("AGI session from %s exceeded %.1fs and was closed", peer, self.settings.session_timeout)
        except (ConnectionError, OSError) as exc:
            log.info("AGI connection from %s lost: %s", peer, exc)
        except AgiProtocolError as exc:
            log.warning("AGI protocol error from %s: %s", peer, exc)
        except Exception:  # noqa: BLE001 - one session's bug must never take the server down
            log.exception("AGI session from %s failed", peer)
        finally:
            writer.close()

    async def _read_environment(
        self, reader: asyncio.StreamReader, connection: AgiConnection, peer: str
    ) -> Environment | None:
        try:
            async with asyncio.timeout(self.settings.environment_timeout):
                while True:
                    for event in connection.receive_data(await reader.read(READ_CHUNK)):
                        if isinstance(event, Environment):
                            return event
                        if isinstance(event, Closed):
                            log.warning("AGI peer %s closed before sending its whole environment", peer)
                            return None
        except TimeoutError:
            log.warning("AGI peer %s sent no complete environment within %.1fs", peer, self.settings.environment_timeout)
            return None
