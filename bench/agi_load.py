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
  parsing, no action and no logging, the ceiling of asyncio Python;
- with `--baselines ... raw`, that responder's work on bare non-blocking sockets read
  with `loop.add_reader`, without asyncio's transports: the floor of the wire's own
  cost on the loop.

The commands the baselines send are captured from one gateway session, so all three
set the same variables with the same bytes. For `chatmessage-send` the gateway is then
killed with SIGKILL and the messages in its SQLite file are counted against the
sessions that returned `SUCCESS`: none may be missing.

Printed per action and concurrency: sessions/s, latency p50/p99/max in ms (connect to
close, as Asterisk sees it), the server's share of its core and its CPU time per
session (µs/ses), and the gateway's rate as a ratio to each baseline. Every row also says how many sessions failed. With
`--rounds N` the three servers take turns N times per row and each shows its median
round, so a machine whose speed drifts during the run tilts no ratio.

    python -m bench.agi_load [--seconds 3] [--concurrency 1 50 200 1000] [--rates 1000 2000 4000] [--rounds 1]
                             [--loop asyncio|uvloop] [--database-sync normal|full] [--hangup]
                             [--baselines panoramisk minimal raw]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import socket
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Awaitable, Callable

from fastagi.cli import event_loop

from .harness import LOAD_CPU, SERVER_CPU, Server, free_port, percentile, pin, raise_file_limit

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
SUCCESS = b'SET VARIABLE SKYPE_STATUS "SUCCESS"'  # the gateway's command that says an action succeeded


def reply_to(command: bytes) -> bytes:
    """Asterisk's reply: success, and no such variable to `GET VARIABLE`."""
    return b"200 result=0\n" if command.startswith(b"GET VARIABLE") else b"200 result=1\n"


class AsteriskSide(asyncio.Protocol):
    """One session as Asterisk runs it: environment, a reply per command line, close after the server's EOF."""

    def __init__(self, env: bytes, done: asyncio.Future[Ended], hangup: bool) -> None:
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
        replies = [reply_to(line) for line in lines]
        if self.hangup and replies and not self.commands:
            replies.insert(0, b"HANGUP\n")
        self.commands += lines
        assert self.transport is not None
        self.transport.write(b"".join(replies))

    def eof_received(self) -> bool:
        return False  # the transport closes: Asterisk ends the AGI when the server half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(Ended(self.commands))  # not `self`: that would be a reference cycle


@dataclass(frozen=True)
class Ended:
    """What one session left: the commands the server sent."""

    commands: list[bytes]

    @property
    def succeeded(self) -> bool:
        return any(line.startswith(SUCCESS) for line in self.commands)


async def one_session(port: int, script: str, uniqueid: int, hangup: bool = False) -> Ended:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Ended] = loop.create_future()
    await loop.create_connection(lambda: AsteriskSide(environment(script, uniqueid), done, hangup), "127.0.0.1", port)
    return await done


@dataclass
class Measured:
    started: float
    ended: float
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    succeeded_in_all: int = 0  # warm-up and tail included: what the durability check counts

    @property
    def rate(self) -> float:
        return len(self.latencies) / (self.ended - self.started)

    def record(self, began: float, ended: float, ok: bool) -> None:
        self.succeeded_in_all += ok
        if self.started <= ended <= self.ended:
            self.latencies.append(ended - began)
            self.failed += not ok


CLOCK = time.perf_counter  # not loop.time(): uvloop's clock ticks in whole milliseconds


@dataclass(frozen=True)
class Target:
    """Where sessions go and how each one runs."""

    port: int
    script: str
    hangup: bool = False  # Asterisk's `HANGUP` line before the first reply, as when the caller hangs up


async def timed_session(target: Target, uniqueid: int, began: float, measured: Measured) -> None:
    try:
        ok = (await one_session(target.port, target.script, uniqueid, target.hangup)).succeeded
    except OSError:
        ok = False
    measured.record(began, CLOCK(), ok)


async def offer_load(target: Target, concurrency: int, seconds: float) -> Measured:
    """Closed loop: keep `concurrency` sessions in flight; measure those that end in the window after a warm-up."""
    start = CLOCK() + WARM_UP
    measured = Measured(start, start + seconds)
    counter = iter(range(1, 1 << 62))

    async def worker() -> None:
        while (began := CLOCK()) < measured.ended:
            await timed_session(target, next(counter), began, measured)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return measured


async def offer_paced(target: Target, rate: float, seconds: float, limit: int) -> Measured:
    """Open loop: sessions arrive at random (Poisson) at `rate` per second whatever the server's pace.

    Latency counts from each session's due time, so a slow server cannot hide its backlog;
    at most `limit` sessions are open at once, and an arrival beyond that counts as failed.
    """
    arrivals = random.Random(1)
    start = CLOCK() + WARM_UP
    measured = Measured(start, start + seconds)
    running: set[asyncio.Task[None]] = set()
    due, uniqueid = CLOCK(), 0
    while due < measured.ended:
        due += arrivals.expovariate(rate)
        await asyncio.sleep(max(0.0, due - CLOCK()))
        if len(running) >= limit:
            measured.record(due, due, False)
            continue
        uniqueid += 1
        task = asyncio.get_running_loop().create_task(timed_session(target, uniqueid, due, measured))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    return measured


# -- the baselines, each in its own process ------------------------------------------------
def one_write(commands: list[bytes]) -> bytes:
    """Commands as the wire carries them, one line each: the minimal baselines send them in one write."""
    return b"".join(command + b"\n" for command in commands)


def serve_baseline(kind: str, port: int, commands_file: str, loop: str) -> None:
    commands = Path(commands_file).read_bytes().splitlines()
    event_loop(loop)(BASELINES[kind](port, commands))


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
        self.transport = transport  # type: ignore[assignment] - uvloop's transports are not asyncio.Transport subclasses
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
    MinimalResponder.commands = one_write(commands)
    server = await asyncio.get_running_loop().create_server(MinimalResponder, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


class RawResponder:
    """The minimal responder's work on bare non-blocking sockets, read with `loop.add_reader`.

    No transport, no protocol object, no write buffering: the floor of what one
    FastAGI session costs on the asyncio loop, the wire's own cost (syscalls and the
    loop's wake-ups). It assumes every write goes out whole, which holds for these few
    hundred bytes on loopback and for nothing a real server may assume.
    """

    commands = b""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock, self.loop, self.buffer, self.sent = sock, loop, b"", False
        loop.add_reader(sock.fileno(), self.readable)

    def readable(self) -> None:
        try:
            data = self.sock.recv(65536)
            if data and not self.sent:
                self.buffer += data
                if b"\n\n" in self.buffer:
                    self.sent = True
                    self.sock.send(self.commands)
                    self.sock.shutdown(socket.SHUT_WR)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the peer: done with it
            data = b""
        if not data:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


async def _raw(port: int, commands: list[bytes]) -> None:
    RawResponder.commands = one_write(commands)
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    listener.setblocking(False)

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports do
            RawResponder(sock, loop)

    loop.add_reader(listener.fileno(), accept)
    await loop.create_future()


BASELINES = {"panoramisk": _panoramisk, "minimal": _minimal, "raw": _raw}


def start_baseline(kind: str, folder: Path, commands: list[bytes], loop: str) -> Server:
    commands_file = folder / "commands.txt"
    commands_file.write_bytes(one_write(commands))
    port = free_port()
    argv = [sys.executable, "-m", "bench.agi_load", "--serve", kind, "--port", str(port),
            "--commands", str(commands_file), "--loop", loop]
    return Server.start(argv, port, folder / f"{kind}.log")


# -- the run ----------------------------------------------------------------------------------
@dataclass
class Row:
    server: str
    load: str  # "50" in flight (closed loop) or "2000/s" arriving (open loop)
    measured: Measured
    core_pct: float
    load_pct: float  # this load generator's share of its own core
    cpu_us: float  # the server's CPU time per session

    def line(self, ratio: str) -> str:
        m = self.measured
        ms = [1000 * percentile(m.latencies, q) for q in (0.5, 0.99, 1.0)]
        return (f"  {self.load:>8} {self.server:<11} {m.rate:>9.0f} {ms[0]:>7.2f} {ms[1]:>7.2f} {ms[2]:>8.2f} "
                f"{self.core_pct:>6.0f} {self.cpu_us:>6.1f} {self.load_pct:>6.0f} {m.failed:>6} {ratio}")


HEADER = (f"  {'load':>8} {'server':<11} {'sess/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>8} "
          f"{'core%':>6} {'µs/ses':>6} {'load%':>6} {'failed':>6} gateway/baseline")


async def measure(server: Server, name: str, label: str, offer: Callable[[Target], Awaitable[Measured]],
                  target: Target) -> Row:
    gc.collect()
    gc.disable()  # no collection pause of this process may count as the server's latency
    try:
        cpu, own = server.cpu_seconds(), time.process_time()
        began = time.monotonic()
        measured = await offer(replace(target, port=server.port))
        elapsed = time.monotonic() - began
    finally:
        gc.enable()
    used = server.cpu_seconds() - cpu
    return Row(name, label, measured, 100 * used / elapsed, 100 * (time.process_time() - own) / elapsed,
               1e6 * used / max(1, measured.succeeded_in_all))


async def compare(servers: dict[str, Server], label: str, offer: Callable[[Target], Awaitable[Measured]],
                  target: Target, rounds: int) -> int:
    """One row per server under the same load; returns how many gateway sessions succeeded.

    With several rounds the servers take turns in each, and each server's row is its
    median round by rate: a machine whose speed drifts then tilts no ratio.
    """
    runs: dict[str, list[Row]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, server in servers.items():
            runs[name].append(await measure(server, name, label, offer, target))
    rows = [sorted(taken, key=lambda row: row.measured.rate)[len(taken) // 2] for taken in runs.values()]
    ours = rows[0].measured.rate
    for row in rows:
        print(row.line(f"{ours / row.measured.rate:.2f}" if row is not rows[0] else ""), flush=True)
    return sum(row.measured.succeeded_in_all for row in next(iter(runs.values())))


async def run(args: argparse.Namespace) -> None:
    print(f"servers on the {args.loop} event loop (server core {SERVER_CPU}); load generator on uvloop (core {LOAD_CPU}); "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"gateway: database_sync = {args.database_sync}")
    for action in args.actions:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            gateway = Server.gateway(folder, f"event_loop = {args.loop}\ndatabase_sync = {args.database_sync}")
            target = Target(gateway.port, ACTIONS[action], args.hangup)
            probe = await one_session(gateway.port, target.script, 0)
            assert probe.succeeded, probe.commands
            servers = {"gateway": gateway}
            servers |= {kind: start_baseline(kind, folder, probe.commands, args.loop) for kind in args.baselines}
            successes = 1
            try:
                print(f"{action}, closed loop: N sessions always in flight")
                print(HEADER)
                for n in args.concurrency:
                    successes += await compare(servers, str(n), lambda t, n=n: offer_load(t, n, args.seconds), target,
                                               args.rounds)
                print(f"{action}, open loop: sessions arriving at random, at most {args.limit} open")
                print(HEADER)
                for rate in args.rates:
                    successes += await compare(servers, f"{rate}/s",
                                               lambda t, r=rate: offer_paced(t, r, args.seconds, args.limit), target,
                                               args.rounds)
            finally:
                for server in servers.values():
                    server.stop(kill=True)
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
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200, 1000], help="closed-loop rows")
    parser.add_argument("--rates", type=int, nargs="+", default=[1000, 2000, 4000], help="open-loop rows, sessions/s")
    parser.add_argument("--limit", type=int, default=200, help="open loop: most sessions open at once")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds per row, the servers taking turns; each server's median round is shown")
    parser.add_argument("--hangup", action="store_true", help="each session gets HANGUP before its first reply")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the event loop of all three servers (the gateway's [general] event_loop)")
    parser.add_argument("--database-sync", choices=("normal", "full"), default="normal",
                        help="the gateway's [general] database_sync")
    parser.add_argument("--actions", nargs="+", choices=tuple(ACTIONS), default=tuple(ACTIONS))
    parser.add_argument("--baselines", nargs="+", choices=tuple(BASELINES), default=("panoramisk", "minimal"),
                        help="raw: the minimal responder's work on bare sockets, without asyncio's transports")
    parser.add_argument("--serve", choices=tuple(BASELINES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--commands", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_baseline(args.serve, args.port, args.commands, args.loop)
        return
    pin(LOAD_CPU)
    raise_file_limit()
    event_loop("uvloop")(run(args))  # a generator much cheaper per session than any server it measures


if __name__ == "__main__":
    main()
