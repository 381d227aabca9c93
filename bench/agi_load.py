"""FastAGI sessions per second: the gateway against panoramisk and a minimal asyncio responder.

This process plays Asterisk, pinned to one core: it keeps N sessions of one action in
flight, each a TCP connection that sends Asterisk 22's environment block, answers each
command with `200 result=1` (`200 result=0` to `GET VARIABLE`: no such variable), and
closes once the server has closed its side. The server runs alone on the other core.

Three servers are measured in the same run, each with the same sessions:

- the gateway, started as `skype-fastagi serve --config FILE` (default logging: one
  INFO line per session, into a file);
- panoramisk's `fast_agi.Application`, whose route sends the gateway's exact commands
  one by one, as its API does;
- a minimal `asyncio.Protocol` responder that writes the gateway's exact commands in
  one write with a half-close, reads the replies and closes: the same wire work with no
  parsing, no action and no logging, the ceiling of asyncio Python.

The commands the baselines send are captured from one gateway session, so all three
set the same variables with the same bytes. For `chatmessage-send` the gateway is then
killed with SIGKILL and the messages in its SQLite file are counted against the
sessions that returned `SUCCESS`: none may be missing.

Printed per action and concurrency: sessions/s, latency p50/p99/max in ms (connect to
close, as Asterisk sees it), the server's share of its core, and the gateway's rate as
a ratio to each baseline. Every row also says how many sessions failed.

    python -m bench.agi_load [--seconds 3] [--concurrency 1 50 200 1000] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastagi.cli import event_loop

from .harness import LOAD_CPU, Server, free_port, percentile, pin, raise_file_limit

ACTIONS = {
    "get-profile-balance": "get-profile-balance?account=alice",
    "chatmessage-send": "chatmessage-send?account=alice&user-name=bob&message-body=Hello%20from%20the%20PBX",
}
WARM_UP = 0.5


def environment(script: str, uniqueid: int) -> bytes:
    """The environment block Asterisk 22 sends (see tests/captures/agi-session.txt)."""
    return (
        f"agi_network: yes\nagi_network_script: {script}\nagi_request: agi://127.0.0.1/{script}\n"
        f"agi_channel: PJSIP/1000-{uniqueid:08x}\nagi_language: en\nagi_type: PJSIP\n"
        f"agi_uniqueid: 1795732263.{uniqueid}\nagi_version: 22.11.0\nagi_callerid: 1000\n"
        "agi_calleridname: Reception\nagi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\n"
        "agi_callingtns: 0\nagi_dnid: 7001\nagi_rdnis: unknown\nagi_context: from-internal\n"
        "agi_extension: 7001\nagi_priority: 2\nagi_enhanced: 0.0\nagi_accountcode: \n"
        "agi_threadid: 140016372795072\n\n"
    ).encode()


# -- Asterisk's side ------------------------------------------------------------------------
class AsteriskSide(asyncio.Protocol):
    """One session as Asterisk runs it: environment, a reply per command line, close after the server's EOF."""

    def __init__(self, env: bytes, done: asyncio.Future[AsteriskSide], hangup: bool) -> None:
        self.env = env
        self.done = done
        self.hangup = hangup
        self.buffer = b""
        self.commands: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] - uvloop's transports are not asyncio.Transport subclasses
        self.transport.write(self.env)

    def data_received(self, data: bytes) -> None:
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        replies = [b"200 result=0\n" if line.startswith(b"GET VARIABLE") else b"200 result=1\n" for line in lines]
        if self.hangup and replies and not self.commands:
            replies.insert(0, b"HANGUP\n")
        self.commands += lines
        assert self.transport is not None
        self.transport.write(b"".join(replies))

    def eof_received(self) -> bool:
        return False  # the transport closes: Asterisk ends the AGI when the server half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self)

    @property
    def succeeded(self) -> bool:
        return any(line.startswith(b'SET VARIABLE SKYPE_STATUS "SUCCESS"') for line in self.commands)


async def one_session(port: int, script: str, uniqueid: int, hangup: bool = False) -> AsteriskSide:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[AsteriskSide] = loop.create_future()
    await loop.create_connection(lambda: AsteriskSide(environment(script, uniqueid), done, hangup), "127.0.0.1", port)
    return await done


@dataclass
class Measured:
    started: float
    ended: float
    latencies: list[float] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    succeeded_in_all: int = 0  # warm-up and tail included: what the durability check counts

    @property
    def rate(self) -> float:
        return len(self.latencies) / (self.ended - self.started)


async def offer_load(port: int, script: str, concurrency: int, seconds: float, hangup: bool = False) -> Measured:
    """Keep `concurrency` sessions in flight; measure those that end in the window after a warm-up."""
    clock = time.perf_counter  # not loop.time(): uvloop's clock ticks in whole milliseconds
    start = clock() + WARM_UP
    measured = Measured(start, start + seconds)
    counter = iter(range(1, 1 << 62))

    async def worker() -> None:
        while (began := clock()) < measured.ended:
            try:
                side = await one_session(port, script, next(counter), hangup)
                ok = side.succeeded
            except OSError:
                ok = False
            ended = clock()
            measured.succeeded_in_all += ok
            if measured.started <= ended <= measured.ended:
                measured.latencies.append(ended - began)
                measured.succeeded += ok
                measured.failed += not ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return measured


# -- the baselines, each in its own process ------------------------------------------------
def serve_baseline(kind: str, port: int, commands_file: str, loop: str) -> None:
    commands = Path(commands_file).read_bytes().splitlines()
    event_loop(loop)(_panoramisk(port, commands) if kind == "panoramisk" else _minimal(port, commands))


async def _panoramisk(port: int, commands: list[bytes]) -> None:
    from panoramisk.fast_agi import Application

    app = Application()

    async def route(request) -> None:  # type: ignore[no-untyped-def]
        for command in commands:
            await request.send_command(command.decode())

    for script in ACTIONS.values():
        app.add_route(script, route)
    server = await asyncio.start_server(app.handler, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


class MinimalResponder(asyncio.Protocol):
    """Reads the environment, writes every command at once with a half-close, closes after the replies."""

    commands = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""
        self.sent = False

    def data_received(self, data: bytes) -> None:
        if self.sent:
            return
        self.buffer += data
        if b"\n\n" in self.buffer:
            self.sent = True
            self.transport.write(self.commands)
            self.transport.write_eof()

    def eof_received(self) -> bool:
        return False


async def _minimal(port: int, commands: list[bytes]) -> None:
    MinimalResponder.commands = b"".join(command + b"\n" for command in commands)
    server = await asyncio.get_running_loop().create_server(MinimalResponder, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


def start_baseline(kind: str, folder: Path, commands: list[bytes], loop: str) -> Server:
    commands_file = folder / "commands.txt"
    commands_file.write_bytes(b"\n".join(commands) + b"\n")
    port = free_port()
    argv = [sys.executable, "-m", "bench.agi_load", "--serve", kind, "--port", str(port),
            "--commands", str(commands_file), "--loop", loop]
    return Server.start(argv, port, folder / f"{kind}.log")


# -- the run ----------------------------------------------------------------------------------
@dataclass
class Row:
    server: str
    action: str
    concurrency: int
    measured: Measured
    core_pct: float
    load_pct: float  # this load generator's share of its own core

    def line(self, ratios: str) -> str:
        m = self.measured
        ms = [1000 * percentile(m.latencies, q) for q in (0.5, 0.99, 1.0)]
        return (f"{self.action:<20} {self.concurrency:>5} {self.server:<11} {m.rate:>9.0f} {ms[0]:>7.2f} {ms[1]:>7.2f} "
                f"{ms[2]:>8.2f} {self.core_pct:>6.0f} {self.load_pct:>6.0f} {m.failed:>6} {ratios}")


async def measure(server: Server, name: str, action: str, concurrency: int, seconds: float) -> Row:
    cpu, own = server.cpu_seconds(), time.process_time()
    began = time.monotonic()
    measured = await offer_load(server.port, ACTIONS[action], concurrency, seconds)
    elapsed = time.monotonic() - began
    return Row(name, action, concurrency, measured, 100 * (server.cpu_seconds() - cpu) / elapsed,
               100 * (time.process_time() - own) / elapsed)


async def run(seconds: float, concurrencies: list[int], loop: str) -> None:
    print(f"servers on the {loop} event loop; load generator on uvloop")
    print(f"{'action':<20} {'conc':>5} {'server':<11} {'sess/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} "
          f"{'core%':>6} {'load%':>6} {'failed':>6} ratios")
    for action in ACTIONS:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            gateway = Server.gateway(folder, f"event_loop = {loop}")
            probe = await one_session(gateway.port, ACTIONS[action], 0)
            assert probe.succeeded, probe.commands
            baselines = {kind: start_baseline(kind, folder, probe.commands, loop) for kind in ("panoramisk", "minimal")}
            servers = {"gateway": gateway, **baselines}
            successes = 1
            try:
                for concurrency in concurrencies:
                    rows = {name: await measure(s, name, action, concurrency, seconds) for name, s in servers.items()}
                    ours = rows["gateway"].measured.rate
                    successes += rows["gateway"].measured.succeeded_in_all
                    for name, row in rows.items():
                        ratio = f"gateway/this {ours / row.measured.rate:.2f}" if name != "gateway" else ""
                        print(row.line(ratio), flush=True)
            finally:
                for baseline in baselines.values():
                    baseline.stop()
                gateway.stop(kill=True)
            if action == "chatmessage-send":
                print(durability(folder / "state.db", successes), flush=True)


def durability(database: Path, successes: int) -> str:
    """Messages found in the killed gateway's database against the sessions told SUCCESS."""
    with sqlite3.connect(database) as db:
        (stored,) = db.execute("SELECT COUNT(*) FROM messages WHERE direction = 'outgoing'").fetchone()
    verdict = "all durable" if stored >= successes else f"{successes - stored} MISSING"
    return f"chatmessage-send after SIGKILL: {stored} messages stored, {successes} sessions told SUCCESS: {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window per row")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200, 1000])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the event loop of all three servers (the gateway's [general] event_loop)")
    parser.add_argument("--serve", choices=("panoramisk", "minimal"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--commands", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_baseline(args.serve, args.port, args.commands, args.loop)
        return
    pin(LOAD_CPU)
    raise_file_limit()
    event_loop("uvloop")(run(args.seconds, args.concurrency, args.loop))  # a generator much cheaper per session than any server


if __name__ == "__main__":
    main()
