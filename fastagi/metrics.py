"""Prometheus metrics of one gateway, served by prometheus_client's own HTTP server.

`[general] metrics = HOST:PORT` turns them on. Each gateway has its own registry (not
the process-wide default), so several gateways can live in one process. Action counts
and AGI session latencies are pushed by the dispatcher as actions finish; everything
else (sessions, calls, AMI, media) is read from the gateway at each scrape, from the
scrape's thread: only plain attribute reads, no locks taken on the event loop's side.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .actions.dispatch import Finished

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("fastagi.metrics")

NAMESPACE = "skype_fastagi"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# (attribute, family, metric name, help): read from `gateway.ami` / `gateway.media` when they have it
AMI_READINGS = (
    ("connected", GaugeMetricFamily, "ami_connected", "1 while logged in to Asterisk's manager interface"),
    ("queued", GaugeMetricFamily, "ami_queue_depth", "AMI actions waiting to be delivered"),
    ("delivered", CounterMetricFamily, "ami_delivered", "AMI actions Asterisk accepted"),
    ("rejected", CounterMetricFamily, "ami_rejected", "AMI actions Asterisk answered with an error"),
    ("dropped", CounterMetricFamily, "ami_dropped", "AMI actions dropped because the queue was full"),
)
LOOP_READINGS = (
    ("lag", GaugeMetricFamily, "event_loop_lag_seconds", "How late the event loop last ran a timer due now"),
    ("worst", GaugeMetricFamily, "event_loop_lag_worst_seconds", "The worst event-loop lag since the gateway started"),
)
MEDIA_READINGS = (
    ("ticks", CounterMetricFamily, "media_ticks", "20 ms media clock ticks run"),
    ("late_ticks", CounterMetricFamily, "media_late_ticks", "media ticks that ran late or were skipped"),
)


class GatewayMetrics:
    """The registry of one gateway and the dispatcher observer that feeds it."""

    def __init__(self, gateway: Gateway) -> None:
        self.registry = CollectorRegistry()
        self.actions = Counter(
            f"{NAMESPACE}_actions", "Actions run, by action, result (SUCCESS or the error code) and caller (agi or control)",
            ("action", "result", "via"), registry=self.registry,
        )
        self.latency = Histogram(
            f"{NAMESPACE}_agi_session_seconds", "AGI sessions from their environment to their last reply, by action",
            ("action",), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.registry.register(_GatewayCollector(gateway))

    def observe(self, finished: Finished) -> None:
        self.actions.labels(finished.action, finished.result, finished.via).inc()
        if finished.via == "agi":
            self.latency.labels(finished.action).observe(finished.seconds)


class _GatewayCollector(Collector):
    """What is read from the gateway at scrape time."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gateway = self.gateway
        yield GaugeMetricFamily(f"{NAMESPACE}_agi_sessions_active", "AGI sessions running now", value=gateway.agi.active)
        yield CounterMetricFamily(f"{NAMESPACE}_agi_connections_refused", "AGI connections refused (permit, max_connections)",
                                  value=gateway.agi.refused)
        calls = GaugeMetricFamily(f"{NAMESPACE}_calls_active", "Live Skype calls, by account", labels=("account",))
        live = [call.account for call in tuple(gateway.manager.calls.values())]
        for account in gateway.manager.names():
            calls.add_metric((account,), live.count(account))
        yield calls
        yield from _readings(getattr(gateway, "ami", None), AMI_READINGS)
        yield from _readings(getattr(gateway, "media", None), MEDIA_READINGS)
        yield from _readings(getattr(gateway, "loop_monitor", None), LOOP_READINGS)


def _readings(source: Any, readings: tuple[tuple[str, Any, str, str], ...]) -> Iterator[Metric]:
    if source is None:
        return
    for attribute, family, name, doc in readings:
        value = getattr(source, attribute, None)
        if value is not None:
            yield family(f"{NAMESPACE}_{name}", doc, value=float(value))


class MetricsServer:
    """The HTTP endpoint (`/metrics`) of one gateway's registry."""

    def __init__(self, gateway: Gateway, metrics: GatewayMetrics, httpd: WSGIServer, thread: threading.Thread) -> None:
        self.gateway = gateway
        self.metrics = metrics
        self._httpd = httpd
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def stop(self) -> None:
        """Stop serving; blocks for up to half a second (the HTTP server's poll interval)."""
        if self.metrics.observe in self.gateway.dispatcher.observers:
            self.gateway.dispatcher.observers.remove(self.metrics.observe)
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def start_metrics(gateway: Gateway) -> MetricsServer | None:
    """Serve the gateway's metrics at `[general] metrics`; None when that is not set."""
    address = gateway.config.general.metrics
    if address is None:
        return None
    host, port = address
    metrics = GatewayMetrics(gateway)
    httpd, thread = start_http_server(port, addr=host, registry=metrics.registry)
    gateway.dispatcher.observers.append(metrics.observe)
    server = MetricsServer(gateway, metrics, httpd, thread)
    log.info("Prometheus metrics on http://%s:%d/metrics", host, server.port)
    return server
