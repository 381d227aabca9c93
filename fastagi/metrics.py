"""Prometheus metrics of one gateway, served over HTTP on the event loop.

`[general] metrics = HOST:PORT` turns them on. Each gateway has its own registry (not
the process-wide default), so several gateways can live in one process. Action counts
and AGI session latencies are pushed by the dispatcher as actions finish (`observe`);
everything else (sessions, calls, AMI, media) is read from the gateway's status view at
each scrape, on the loop like everything else that reads it.

The endpoint is aiohttp's low-level server with prometheus_client's handler, fed by a
`Listener`: no thread per connection (prometheus_client's own server keeps one for
every idle connection, for ever), at most `MAX_CONNECTIONS` open at once, and a
connection that has sent no whole request `IDLE_TIMEOUT` seconds after it opened or
after its last reply is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .actions.dispatch import Finished
from .listener import Listener
from .status import GatewayStatus

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("fastagi.metrics")

NAMESPACE = "skype_fastagi"
IDLE_TIMEOUT = 10.0  # seconds: Prometheus asks at once on a new connection, and scrapes every 15 s by default
MAX_CONNECTIONS = 64  # a scraper or two and someone with curl; each costs a descriptor, no thread
CLOSE_GRACE = 1.0  # seconds a scrape under way gets to finish when the gateway stops
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# (attribute of AmiState, family, metric name, help)
AMI_READINGS = (
    ("connected", GaugeMetricFamily, "ami_connected", "1 while logged in to Asterisk's manager interface"),
    ("queued", GaugeMetricFamily, "ami_queue_depth", "AMI actions waiting to be delivered"),
    ("delivered", CounterMetricFamily, "ami_delivered", "AMI actions Asterisk accepted"),
    ("rejected", CounterMetricFamily, "ami_rejected", "AMI actions Asterisk answered with an error"),
    ("dropped", CounterMetricFamily, "ami_dropped", "AMI actions dropped because the queue was full"),
)


class ActionMetrics:
    """The registry of one gateway, with the action counters the dispatcher feeds (`observe`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.actions = Counter(
            f"{NAMESPACE}_actions", "Actions run, by action, result (SUCCESS or the error code) and caller (agi or control)",
            ("action", "result", "via"), registry=self.registry,
        )
        self.latency = Histogram(
            f"{NAMESPACE}_agi_session_seconds", "AGI sessions from their environment to their last reply, by action",
            ("action",), buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def observe(self, finished: Finished) -> None:
        self.actions.labels(finished.action, finished.result, finished.via).inc()
        if finished.via == "agi":
            self.latency.labels(finished.action).observe(finished.seconds)


class StatusCollector(Collector):
    """What is read from the gateway at scrape time."""

    def __init__(self, status: GatewayStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status
        yield GaugeMetricFamily(f"{NAMESPACE}_agi_sessions_active", "AGI sessions running now", value=status.agi_sessions)
        yield CounterMetricFamily(f"{NAMESPACE}_agi_connections_refused", "AGI connections refused (permit, max_connections)",
                                  value=status.agi_refused)
        calls = GaugeMetricFamily(f"{NAMESPACE}_calls_active", "Live Skype calls, by account", labels=("account",))
        online = GaugeMetricFamily(f"{NAMESPACE}_account_online",
                                   "1 while the account is connected to its network, by account and network",
                                   labels=("account", "network"))
        for account in status.accounts():
            calls.add_metric((account.name,), account.calls)
            online.add_metric((account.name, account.network), float(account.status == "ONLINE"))
        yield calls
        yield online
        ami = status.ami
        if ami is not None:
            for attribute, family, name, doc in AMI_READINGS:
                yield family(f"{NAMESPACE}_{name}", doc, value=float(getattr(ami, attribute)))
        ticks, late = status.media_ticks
        yield CounterMetricFamily(f"{NAMESPACE}_media_ticks", "20 ms media clock ticks run", value=ticks)
        yield CounterMetricFamily(f"{NAMESPACE}_media_late_ticks", "media ticks that ran late or were skipped", value=late)
        lag, worst = status.loop_lag
        yield GaugeMetricFamily(f"{NAMESPACE}_event_loop_lag_seconds", "How late the event loop last ran a timer due now",
                                value=lag)
        yield GaugeMetricFamily(f"{NAMESPACE}_event_loop_lag_worst_seconds",
                                "The worst event-loop lag since the gateway started", value=worst)


class _HttpLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logs a malformed request as an ERROR with a traceback: here a peer's bad bytes are one
    WARNING line, as everywhere in the gateway, and the server's own failures stay ERRORs."""

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: object) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        if isinstance(exc_info, HttpProcessingError):
            self.warning("bad metrics request from %s: %s", args[0] if args else "?", " ".join(exc_info.message.split()))
        else:
            self.error(msg, *args, exc_info=exc_info, **kwargs)  # type: ignore[arg-type]


class MetricsServer:
    """The HTTP endpoint (`/metrics`, or any path) of one gateway's registry."""

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._address = address
        self._registry = registry
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._http: web.Server | None = None
        self._listener = Listener("metrics", lambda peer: self._protocol(), self._full)

    @property
    def port(self) -> int:
        return self._listener.port

    async def start(self) -> None:
        from aiohttp import web  # here: its server costs 11 MB of memory, paid only with metrics on
        from prometheus_client.aiohttp import make_aiohttp_handler

        self._http = web.Server(make_aiohttp_handler(self._registry), keepalive_timeout=self._idle_timeout,
                                access_log=None, logger=_HttpLog(log, {}))
        host, port = self._address
        await self._listener.listen(host, port)
        log.info("Prometheus metrics on http://%s:%d/metrics", host, self.port)

    async def stop(self) -> None:
        """Stop accepting; close idle connections, and the others once their reply is out (at most `CLOSE_GRACE` s)."""
        if self._http is None:
            return
        self._listener.close()
        await self._http.shutdown(CLOSE_GRACE)
        self._http = None

    def _protocol(self) -> asyncio.BaseProtocol:
        assert self._http is not None
        return self._http()

    def _full(self, peer: str) -> str | None:
        """Why one more connection is refused: `max_connections` are open."""
        assert self._http is not None
        open_now = len(self._http.connections)
        return f"{open_now} connections open" if open_now >= self._max_connections else None
