"""The Prometheus endpoint scraped over HTTP, and the one log line of each action."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import urllib.request
from urllib.parse import quote
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from conftest import ACCOUNTS, USERS, Recorder, run, running_gateway
from doubles.asterisk_agi import FakeAsterisk, environment
from fastagi.app import Gateway
from fastagi.metrics import MAX_CONNECTIONS, MetricsServer

NORA = "\n[nora]\ntype = user\nbehaviour = noanswer\nring_delay = 0.01\n"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@asynccontextmanager
async def metered(tmp_path: Path, body: str = ACCOUNTS + USERS, general: str = "") -> AsyncIterator[tuple[Gateway, MetricsServer]]:
    async with running_gateway(tmp_path, body, general=f"metrics = 127.0.0.1:0\n{general}") as gateway:
        assert gateway.metrics is not None
        yield gateway, gateway.metrics


async def scrape(server: MetricsServer) -> Samples:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as reply:
            return reply.read().decode()

    text = await asyncio.to_thread(get)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_are_off_unless_configured(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gateway:
            assert gateway.metrics is None and gateway.action_metrics is None
    run(body())


def test_action_counters_and_session_latency_move_with_actions(tmp_path: Path) -> None:
    async def body() -> None:
        async with metered(tmp_path) as (gateway, server):
            before = await scrape(server)
            assert value(before, "skype_fastagi_actions_total", action="get-profile-balance", result="SUCCESS", via="agi") is None
            asterisk = FakeAsterisk(gateway.agi.port)
            await asterisk.agi("get-profile-balance?account=alice")
            await asterisk.agi("get-profile-balance?account=bob")
            await asterisk.agi("call-hangup?account=alice&call-id=99")
            await asterisk.agi("call-strat?user-name=x")
            await gateway.dispatcher.run("list-registered", {})
            after = await scrape(server)
            counted = {
                (dict(labels)["action"], dict(labels)["result"], dict(labels)["via"]): count
                for (name, labels), count in after.items() if name == "skype_fastagi_actions_total"
            }
            assert counted == {
                ("get-profile-balance", "SUCCESS", "agi"): 2.0,
                ("call-hangup", "unknown_call_error", "agi"): 1.0,
                ("(unknown)", "unknown_action", "agi"): 1.0,  # never the misspelled name: labels stay few
                ("list-registered", "SUCCESS", "control"): 1.0,
            }
            latency = "skype_fastagi_agi_session_seconds"
            assert value(after, f"{latency}_count", action="get-profile-balance") == 2.0
            assert value(after, f"{latency}_bucket", action="get-profile-balance", le="+Inf") == 2.0
            assert value(after, f"{latency}_sum", action="get-profile-balance") > 0
            assert value(after, f"{latency}_count", action="list-registered") is None  # not an AGI session
    run(body())


def test_gauges_show_running_sessions_live_calls_and_the_media_clock(tmp_path: Path) -> None:
    async def body() -> None:
        async with metered(tmp_path, ACCOUNTS + USERS + NORA) as (gateway, server):
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.agi.port)
            writer.write(environment("get-profile-balance", [], "1.1", "Local/s@x-1;2", gateway.agi.port))
            assert await reader.readline() == b"GET VARIABLE SKYPE_ACCOUNT\n"  # the session waits for us
            during = await scrape(server)
            assert value(during, "skype_fastagi_agi_sessions_active") == 1.0
            writer.write(b"200 result=1 (alice)\n")
            await reader.readline()
            writer.close()

            recorder = Recorder(gateway.bus)
            started = await FakeAsterisk(gateway.agi.port).agi("call-start?account=alice&user-name=nora")
            await recorder.status("alice", started.skype()["SKYPE_CALL_ID"], "RINGING")
            ticks_before = gateway.media.ticks
            samples = await scrape(server)
            assert value(samples, "skype_fastagi_agi_sessions_active") == 0.0
            assert value(samples, "skype_fastagi_calls_active", account="alice") == 1.0
            assert value(samples, "skype_fastagi_calls_active", account="bob") == 0.0
            assert value(samples, "skype_fastagi_account_online", account="alice", network="embedded") == 1.0
            assert ticks_before <= value(samples, "skype_fastagi_media_ticks_total") <= gateway.media.ticks
            assert value(samples, "skype_fastagi_media_late_ticks_total") is not None
            assert not any(name.startswith("skype_fastagi_ami_") for name, _ in samples)  # no AMI in this gateway
    run(body())


def test_event_loop_lag_shows_a_stall(tmp_path: Path) -> None:
    async def body() -> None:
        async with metered(tmp_path) as (gateway, server):
            await asyncio.sleep(0.2)
            calm = value(await scrape(server), "skype_fastagi_event_loop_lag_worst_seconds")
            time.sleep(calm + 0.3)  # the loop stalls, as a blocking call on it would make it
            await asyncio.sleep(0.12)  # the monitor's timer runs late, then once more on time
            stalled = await scrape(server)
            assert value(stalled, "skype_fastagi_event_loop_lag_worst_seconds") >= calm + 0.25
            assert value(stalled, "skype_fastagi_event_loop_lag_seconds") < 0.1
    run(body())


def test_ami_state_queue_and_drops_while_asterisk_is_unreachable(tmp_path: Path) -> None:
    async def body() -> None:
        with socket.socket() as closed:  # bound, never listening: connections are refused
            closed.bind(("127.0.0.1", 0))
            ami = f"[ami]\nenabled = yes\nport = {closed.getsockname()[1]}\nusername = skype\nsecret = s3cret\nqueue_size = 2\n"
            async with metered(tmp_path, ACCOUNTS + USERS + ami) as (gateway, server):
                for flag in ("true", "false", "true", "false", "true"):  # one BuddyStatus event each
                    await gateway.dispatcher.run("user-set-block", {"account": "alice", "user-name": "carol", "status": flag})
                samples = await scrape(server)
        assert value(samples, "skype_fastagi_ami_connected") == 0.0
        assert value(samples, "skype_fastagi_ami_queue_depth") == 2.0  # the first two BuddyStatus events
        assert value(samples, "skype_fastagi_ami_dropped_total") == 3.0 + 2.0  # three more, and the two ONLINE events
        assert value(samples, "skype_fastagi_ami_delivered_total") == 0.0
    run(body())


def test_each_gateway_has_its_own_registry_and_stop_closes_the_port(tmp_path: Path) -> None:
    async def body() -> None:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        async with metered(tmp_path / "a") as (first, first_server), metered(tmp_path / "b") as (_, second_server):
            await FakeAsterisk(first.agi.port).agi("list-registered")
            ours, theirs = await scrape(first_server), await scrape(second_server)
            labels = {"action": "list-registered", "result": "SUCCESS", "via": "agi"}
            assert value(ours, "skype_fastagi_actions_total", **labels) == 1.0
            assert value(theirs, "skype_fastagi_actions_total", **labels) is None
            port = first_server.port
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    run(body())


async def idle(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent until it closed the connection, which it must do within `seconds`."""
    async with asyncio.timeout(seconds):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


def test_idle_connections_cost_no_thread_and_past_the_cap_are_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with metered(tmp_path) as (gateway, server):
            await scrape(server)  # its thread (asyncio.to_thread) is made now, not below
            threads = threading.active_count()
            connections = await idle(server.port, MAX_CONNECTIONS + 20)
            await asyncio.sleep(0.3)
            assert threading.active_count() == threads
            for reader, _ in connections[MAX_CONNECTIONS:]:  # refused at once, before anything is read
                assert await closed_within(reader, 1.0) == b""
            for _, writer in connections[:MAX_CONNECTIONS]:
                writer.close()
            await asyncio.sleep(0.1)
            assert value(await scrape(server), "skype_fastagi_agi_sessions_active") == 0.0  # room again

    with caplog.at_level(logging.WARNING, logger="fastagi.listener"):
        run(body())
    assert [r.getMessage() for r in caplog.records] == \
        [f"refused metrics connection from 127.0.0.1: {MAX_CONNECTIONS} connections open"] * 20


def test_a_connection_without_a_whole_request_is_closed_after_the_idle_timeout() -> None:
    registry = CollectorRegistry()
    Counter("scrapes_seen", "a counter to read", registry=registry).inc()

    async def body() -> None:
        server = MetricsServer(("127.0.0.1", 0), registry, idle_timeout=0.3)
        await server.start()
        try:
            (silent, _), (slow, slow_writer), (kept, kept_writer) = await idle(server.port, 3)
            slow_writer.write(b"GET /metrics HTTP/1.1\r\nHost: gateway\r\n")  # the headers never end
            kept_writer.write(b"GET /metrics HTTP/1.1\r\nHost: gateway\r\n\r\n")  # keep-alive: HTTP/1.1's default
            began = time.monotonic()
            assert await closed_within(silent, 2.0) == b""
            assert await closed_within(slow, 2.0) == b""
            reply = await closed_within(kept, 2.0)
            assert 0.3 <= time.monotonic() - began < 1.5
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"\nscrapes_seen_total 1.0\n" in reply
        finally:
            await server.stop()

    run(body())


@pytest.mark.parametrize("request_bytes, reason", [
    (b"GET /metrics HTTP/1.1\r\n\r\n", "Missing 'Host' header in request."),
    (b"GET /metrics HTTP/1.1\r\nHost: gateway\r\nX-Long: " + b"a" * 10000 + b"\r\n\r\n",
     "Got more than 8190 bytes when reading: b'" + "a" * 100 + "...'."),
])
def test_a_malformed_request_is_a_400_and_one_warning_line(caplog: pytest.LogCaptureFixture, request_bytes: bytes,
                                                          reason: str) -> None:
    async def body() -> bytes:
        server = MetricsServer(("127.0.0.1", 0), CollectorRegistry())
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request_bytes)
            reply = await closed_within(reader, 2.0)
            writer.close()
            return reply
        finally:
            await server.stop()

    with caplog.at_level(logging.INFO):
        assert run(body()).startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records if r.levelno >= logging.WARNING] == [
        ("WARNING", f"bad metrics request from 127.0.0.1: {reason}", None)]


# -- the session log ---------------------------------------------------------------------
def test_one_log_line_per_action_with_long_values_cut_to_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    body_text = "first line\r\nuniqueid=forged action=x " + "y" * 200

    async def body() -> None:
        async with running_gateway(tmp_path) as gateway:
            caplog.set_level(logging.INFO, logger="fastagi.session")
            script = f"chatmessage-send?account=alice&user-name=bob&message-body={quote(body_text, safe='')}"
            await FakeAsterisk(gateway.agi.port).agi(script)
            await gateway.dispatcher.run("no\naction", {"account": "alice"})

    run(body())
    lines = [r.getMessage() for r in caplog.records if r.name == "fastagi.session"]
    assert len(lines) == 2
    agi, control = lines
    assert agi.startswith("uniqueid=1795732263.1 channel=Local/s@cap-00000000;2 action=chatmessage-send ")
    assert "message-body='first line  uniqueid=forged action=x yyy…' -> SUCCESS (" in agi  # 40 characters, then …
    assert "yyyy" not in agi and "\n" not in agi and "\r" not in agi
    assert control.startswith("control action=no action account='alice' -> FAILED unknown_action")
    assert "\n" not in control
