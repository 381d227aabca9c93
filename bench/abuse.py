"""Hostile FastAGI clients by the thousand: what they cost the normal sessions running beside them.

This process plays Asterisk and a crowd of broken clients, pinned to one core; the gateway
runs alone on the other, started as `skype-fastagi serve --config FILE` with its log in a
file, its metrics on a local port, `environment_timeout = 1` (`--environment-timeout`: a
silent peer costs one second, not the default five), `permit = 127.0.0.0/8` and otherwise
the defaults (`session_timeout = 60`, `log_level = info`, `event_loop = asyncio`).

First a baseline: normal `get-profile-balance?account=alice` sessions arriving at random
(Poisson) at `--normal-rate` per second, a busy PBX's traffic well below the gateway's
capacity, for `--baseline` seconds. Then `--rounds` rounds of `--sessions` abusive
connections, at most `--open` at once and `--rate` started per second (0: each as one
ends, a flood that takes the whole core), taking the misbehaviours of `KINDS` in turn,
while normal sessions go on arriving at the same rate the whole time. The normal sessions
run in a process of their own (on the same core), so the abusive clients' work cannot
delay them on this side. Each one ends: closed by the gateway, closed or reset by us as its script
says, or, still open `environment_timeout` + 3 s after it connected, closed by us (a
finding). One we close ends at once on our side, so the gateway may still have it in its
accept queue: it can hold more than `--open`. Every abusive connection comes from a loopback
address of its own, 127.x.y.z for client number n, and its bytes are a function of n
(`script(n)`), so each line the gateway logs about it names it and a finding replays. (The
gateway's permit cache, 4096 addresses, is thereby kept full.)

Printed per phase: the normal sessions' p50/p99/max latency (from each one's due time to
its close, as Asterisk sees it) and failures, the p99 against the baseline's (target: within 2x, no failure); the
p99 of the same sessions by the gateway's own log (from its environment to its last reply: when this stays
flat while the p99 before it rises, the time went to the connection's accept or to this side); the
gateway's worst event-loop lag since it started, read from its metrics endpoint after the
phase (target < 50 ms), its CPU seconds and share of its core, and, once settled
(`--settle` seconds after the last connection ended), its open connections, files and RSS
(target: no growth, round 2 as round 1); this process's share of its core and worst loop
lag (if large, the load generator, not the gateway, was slow). Then how each misbehaviour's
connections ended with what the gateway logged about them, the log's records by kind, and
any ERROR or traceback (a bug) with the exact bytes the client that caused it sent.

    python -m bench.abuse [--sessions 10000] [--rounds 2] [--open 200] [--rate 500] [--normal-rate 1000] [--baseline 5]
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import itertools
import multiprocessing
import random
import re
import socket
import struct
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeGuard

from fastagi.cli import event_loop
from fastagi.loopmonitor import LoopMonitor

from .agi_load import ACTIONS, SUCCESS, WARM_UP, environment, one_session, reply_to
from .harness import (
    LOAD_CPU,
    Server,
    free_port,
    machine,
    percentile,
    pin,
    raise_file_limit,
)

NORMAL = ACTIONS["get-profile-balance"]
ASKING = "get-profile-balance"  # no account: the gateway asks `GET VARIABLE SKYPE_ACCOUNT` before its last batch
FIRST_ABUSIVE = 256  # client n connects from 127.(n>>16).(n>>8).n: 127.0.0.x stays the normal sessions'
FIRST_NORMAL = 1 << 24  # the normal sessions' uniqueids, above every abusive client's number
PHASE_IDS = 1 << 24  # uniqueids each phase's normal sessions may use
NORMAL_DEADLINE = 10.0  # a normal session still running after this has failed
GRACE = 3.0  # past environment_timeout, how long an abusive connection may stay open
MEGABYTE = b"A" * (1 << 20)
LATIN1_NAME = b"R\xe9ception"  # a caller name in Latin-1: invalid UTF-8, as a misconfigured PBX sends it


# -- the misbehaviours ----------------------------------------------------------------------
class Do(enum.Enum):
    READ = "read one command"
    CLOSE = "close"
    RESET = "reset"
    WAIT = "wait for the gateway to close"


@dataclass(frozen=True)
class Serve:
    """Answer every command as Asterisk does, with `before` ahead of each reply, until the gateway closes."""

    before: bytes = b""


Step = bytes | Do | Serve


def head(env: bytes) -> bytes:
    """The first half of an environment's lines."""
    return env[: env.index(b"agi_channel:")]


def tail(env: bytes) -> bytes:
    return env[env.index(b"agi_channel:"):]


def garbage(rng: random.Random, newlines: bool) -> bytes:
    """Up to 16 KiB of random bytes (past 8 KiB, longer than a line may be), with no newline or cut into lines."""
    data = rng.randbytes(rng.randint(1, 16384))
    return data.translate(bytes.maketrans(b"\x00\x01\x02", b"\n\n\n") if newlines else bytes.maketrans(b"\n", b"\x00"))


Script = Callable[[random.Random, bytes], list[Step]]
KINDS: dict[str, Script] = {
    "half environment, close": lambda rng, env: [head(env), Do.CLOSE],
    "half environment, silence": lambda rng, env: [head(env), Do.WAIT],
    "half environment, reset": lambda rng, env: [head(env), Do.RESET],
    "partial environment line, close": lambda rng, env: [head(env) + b"agi_chan", Do.CLOSE],
    "random bytes, no newline": lambda rng, env: [garbage(rng, newlines=False), Do.WAIT],
    "random bytes with newlines": lambda rng, env: [garbage(rng, newlines=True), Do.WAIT],
    "1 MB environment line": lambda rng, env: [head(env) + b"agi_x: " + MEGABYTE + b"\n", Do.WAIT],
    "1 MB reply line": lambda rng, env: [env, Do.READ, b"200 result=1 (" + MEGABYTE + b")\n", Do.WAIT],
    "invalid UTF-8 in environment": lambda rng, env: [head(env) + b"agi_calleridname: " + LATIN1_NAME + b"\n" + tail(env), Do.WAIT],
    "invalid UTF-8 in a reply": lambda rng, env: [env, Do.READ, b"200 result=1 (" + LATIN1_NAME + b")\n", Do.WAIT],
    "HANGUP before environment": lambda rng, env: [b"HANGUP\n" + env, Do.WAIT],
    "HANGUP inside environment": lambda rng, env: [head(env) + b"HANGUP\n" + tail(env), Do.WAIT],
    "HANGUP right after environment": lambda rng, env: [env + b"HANGUP\n", Serve()],
    "HANGUP instead of a reply, close": lambda rng, env: [env, Do.READ, b"HANGUP\n", Do.CLOSE],
    "HANGUP before every reply": lambda rng, env: [env, Serve(b"HANGUP\n")],
    "1000 HANGUPs before every reply": lambda rng, env: [env, Serve(b"HANGUP\n" * 1000)],
    "close inside a reply": lambda rng, env: [env, Do.READ, b"200 res", Do.CLOSE],
    "reset while a reply is awaited": lambda rng, env: [env, Do.READ, Do.RESET],
}


def script(n: int) -> tuple[str, list[Step]]:
    """Client n's misbehaviour and steps: the same every time, so a finding can be replayed."""
    kind = list(KINDS)[n % len(KINDS)]
    return kind, KINDS[kind](random.Random(n), environment(ASKING, n))


def source_address(n: int) -> str:
    return f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


# -- one abusive connection -------------------------------------------------------------------
class Ending(enum.Enum):
    SERVER = "gateway closed"
    CLOSED = "we closed"
    RESET = "we reset"
    STUCK = "open at deadline"
    REFUSED = "no connect"


async def misbehave(port: int, n: int, deadline: float) -> tuple[str, Ending, bool]:
    """Run client n's script; returns its kind, how the connection ended and whether the gateway said SUCCESS."""
    kind, steps = script(n)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source_address(n), 0))
    except OSError:
        return kind, Ending.REFUSED, False
    try:
        async with asyncio.timeout(deadline):
            return kind, *await play(steps, reader, writer)
    except TimeoutError:
        return kind, Ending.STUCK, False
    finally:
        writer.close()


async def play(steps: list[Step], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[Ending, bool]:
    """The steps in order, until one ends the connection; the gateway closing (FIN or RST) ends them at any point."""
    try:
        for step in steps:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            elif isinstance(step, Serve):
                return Ending.SERVER, await serve(reader, writer, step.before)
            elif step is Do.READ:
                if not (await reader.readline()).endswith(b"\n"):
                    return Ending.SERVER, False
            elif step is Do.WAIT:
                while await reader.read(65536):
                    pass
                return Ending.SERVER, False
            elif step is Do.CLOSE:
                return Ending.CLOSED, False
            elif step is Do.RESET:
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return Ending.RESET, False
    except ConnectionError:
        return Ending.SERVER, False
    raise ValueError("a script ends with CLOSE, RESET, WAIT or Serve")


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, before: bytes) -> bool:
    """Reply to each command until the gateway's EOF; True when it set SKYPE_STATUS to SUCCESS."""
    succeeded = False
    while (line := await reader.readline()).endswith(b"\n"):
        succeeded |= line.startswith(SUCCESS)
        writer.write(before + reply_to(line))
        await writer.drain()
    return succeeded


# -- normal sessions ---------------------------------------------------------------------------
@dataclass
class Normal:
    latencies: list[float] = field(default_factory=list)
    failed: int = 0

    def ms(self, fraction: float) -> float:
        return 1000 * percentile(self.latencies, fraction)


async def normal_sessions(port: int, rate: float, stop: asyncio.Event, ids: Iterator[int]) -> Normal:
    """Normal sessions arriving at random (Poisson) at `rate` per second until `stop` is set.

    Each one's latency counts from its due time, so a stalled gateway cannot hide its
    backlog (perf_counter: uvloop's clock ticks in whole milliseconds).
    """
    normal = Normal()
    arrivals = random.Random(2)
    running: set[asyncio.Task[None]] = set()

    async def session(due: float) -> None:
        try:
            async with asyncio.timeout(NORMAL_DEADLINE):
                ok = (await one_session(port, NORMAL, next(ids))).succeeded
        except OSError:  # TimeoutError included
            ok = False
        normal.latencies.append(time.perf_counter() - due)
        normal.failed += not ok

    due = time.perf_counter()
    while not stop.is_set():
        due += arrivals.expovariate(rate)
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        task = asyncio.get_running_loop().create_task(session(due))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    return normal


class NormalProcess:
    """The normal sessions, run by a process of their own (on this core too).

    Sharing an event loop with the abusive clients would make their latency the load
    generator's: its megabyte writes and thousands of sockets delay the normal sessions
    before the gateway ever sees them.
    """

    def __init__(self, port: int, rate: float, first_id: int) -> None:
        self._pipe, theirs = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_normal_process, args=(port, rate, first_id, theirs), daemon=True)
        self._process.start()

    async def stop(self) -> Normal:
        self._pipe.send("stop")
        normal = await asyncio.to_thread(self._pipe.recv)
        self._process.join(10)
        return normal


def _normal_process(port: int, rate: float, first_id: int, pipe: Connection) -> None:
    pin(LOAD_CPU)

    async def run() -> Normal:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (pipe.recv(), loop.call_soon_threadsafe(stop.set)), daemon=True).start()
        return await normal_sessions(port, rate, stop, itertools.count(first_id))

    pipe.send(event_loop("uvloop")(run()))


async def normal_for(seconds: float, port: int, rate: float, first_id: int) -> Normal:
    normal = NormalProcess(port, rate, first_id)
    await asyncio.sleep(seconds)
    return await normal.stop()


# -- the gateway's state ----------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """The gateway after a phase: worst loop lag since start and connections open (metrics), files, RSS."""

    worst_lag: float
    active: float
    files: int
    rss_kib: int


def scrape(metrics_port: int) -> dict[str, float]:
    """The unlabelled samples of the gateway's metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#") and "{" not in line)
    return {name: float(value) for name, value in samples}


def read_gateway(gateway: Server, metrics_port: int) -> Reading:
    metrics = scrape(metrics_port)
    return Reading(metrics["skype_fastagi_event_loop_lag_worst_seconds"], metrics["skype_fastagi_agi_sessions_active"],
                   gateway.open_files(), gateway.rss_kib())


# -- the phases ---------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    first_id: int  # the uniqueid of its first normal session
    normal: Normal
    seconds: float
    gateway_cpu: float
    own_cpu: float
    own_worst_lag: float
    after: Reading
    abusive: int = 0

    def ran(self, client: int | None) -> bool:
        """Whether `client` is one of this phase's normal sessions."""
        return client is not None and self.first_id <= client < self.first_id + PHASE_IDS


@dataclass
class Tally:
    """How each misbehaviour's connections ended, over every round."""

    endings: dict[str, Counter[Ending]] = field(default_factory=lambda: defaultdict(Counter))
    succeeded: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Limits:
    """How hard the abuse comes: connections open at once, started per second (0: as fast as they end), lifetime."""

    at_once: int
    rate: float
    deadline: float


@dataclass
class Bench:
    gateway: Server
    metrics_port: int
    normal_rate: float
    settle: float
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_NORMAL, PHASE_IDS))  # each phase's first

    async def phase(self, name: str, load: Callable[[int], Awaitable[Normal]], abusive: int = 0) -> Phase:
        """Run `load` (given its normal sessions' first uniqueid) and read what it cost: both processes' CPU
        and loop lag, then the settled gateway."""
        monitor = LoopMonitor()
        monitor.start()
        first_id = next(self.ids)
        cpu, own, began = self.gateway.cpu_seconds(), time.process_time(), time.perf_counter()
        normal = await load(first_id)
        seconds, cpu, own = time.perf_counter() - began, self.gateway.cpu_seconds() - cpu, time.process_time() - own
        monitor.stop()
        await asyncio.sleep(self.settle)
        after = await asyncio.to_thread(read_gateway, self.gateway, self.metrics_port)
        return Phase(name, first_id, normal, seconds, cpu, own, monitor.worst, after, abusive)

    async def baseline(self, seconds: float) -> Phase:
        await normal_for(WARM_UP, self.gateway.port, self.normal_rate, next(self.ids))
        return await self.phase("baseline", lambda first_id: normal_for(seconds, self.gateway.port, self.normal_rate, first_id))

    async def abuse(self, name: str, first: int, sessions: int, limits: Limits, tally: Tally) -> Phase:
        """`sessions` abusive clients within `limits`, beside normal sessions that last as long."""

        async def load(first_id: int) -> Normal:
            normal = NormalProcess(self.gateway.port, self.normal_rate, first_id)
            numbers = iter(range(first, first + sessions))
            began = time.perf_counter()

            async def worker() -> None:
                for n in numbers:
                    if limits.rate:
                        await asyncio.sleep(began + (n - first) / limits.rate - time.perf_counter())
                    kind, ending, succeeded = await misbehave(self.gateway.port, n, limits.deadline)
                    tally.endings[kind][ending] += 1
                    tally.succeeded[kind] += succeeded

            await asyncio.gather(*(worker() for _ in range(limits.at_once)))
            return await normal.stop()

        return await self.phase(name, load, sessions)


# -- the gateway's log ----------------------------------------------------------------------------
RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$")
PEER = re.compile(r"(?: from|(?<=peer)) 127\.(\d+)\.(\d+)\.(\d+)\b")  # " from 127.0.1.3:", "peer 127.0.1.3 closed"
UNIQUEID = re.compile(r"uniqueid=1795732263\.(\d+)\b")
SESSION_TIMING = re.compile(r" \((\d+\.\d) ms\)$")  # a session line's end: how long the gateway took
ERROR_TEXT = re.compile(r"^(FAILED \S+) \(.*?\)(?=, |$)")  # "FAILED code (text)": the text names a client's values


@dataclass
class Record:
    level: str
    message: str
    more: list[str] = field(default_factory=list)  # a traceback's lines
    client: int | None = None  # the client it is about

    @property
    def is_bug(self) -> bool:
        return self.level in ("ERROR", "CRITICAL") or any(line.startswith("Traceback") for line in self.more)

    def kind(self) -> str:
        """The message without its peer, uniqueid, quoted bytes or timing: what kind of thing was logged."""
        if " -> " in self.message and (action := re.search(r"action=(\S*)", self.message)):
            status = ERROR_TEXT.sub(r"\1", SESSION_TIMING.sub("", self.message.rsplit(" -> ", 1)[1]))
            return f"{self.level} session action={action.group(1)} -> {status}"
        return f"{self.level} " + re.split(r": b?['\"]", PEER.sub("", self.message), maxsplit=1)[0]


def named_client(message: str) -> int | None:
    """The client a message names: by its address, or by the uniqueid of its environment."""
    if peer := PEER.search(message):
        a, b, c = map(int, peer.groups())
        return a << 16 | b << 8 | c
    if uniqueid := UNIQUEID.search(message):
        return int(uniqueid.group(1))
    return None


def read_log(path: Path) -> list[Record]:
    """The log's records, each with the client it is about.

    A catch-all's traceback names no client; the record after it does when the same task
    logged both with no await between (the session's summary line): it is taken as its client.
    """
    records: list[Record] = []
    for line in path.read_text(errors="replace").splitlines():
        if match := RECORD.match(line):
            records.append(Record(match["level"], match["message"], client=named_client(match["message"])))
        elif records:
            records[-1].more.append(line)
    for record, following in itertools.pairwise(records):
        if record.client is None and record.is_bug:
            record.client = following.client
    return records


def abusive(client: int | None) -> TypeGuard[int]:
    return client is not None and FIRST_ABUSIVE <= client < FIRST_NORMAL


def owner(record: Record) -> str:
    """Which client a record is about: an abusive one's misbehaviour, the normal sessions, or none."""
    if abusive(record.client):
        return script(record.client)[0]
    return "" if record.client is None else "normal sessions"


# -- the report ---------------------------------------------------------------------------------
def shown(data: bytes) -> str:
    return repr(data) if len(data) <= 4096 else f"{data[:120]!r} ... {data[-40:]!r} ({len(data)} bytes)"


def shown_steps(steps: list[Step]) -> str:
    parts = [shown(step) if isinstance(step, bytes) else f"[{step.value}]" if isinstance(step, Do)
             else f"[reply to every command, {shown(step.before)} before each]" for step in steps]
    return " ".join(parts)


def logged_ms(phase: Phase, records: list[Record]) -> list[float]:
    """How long the gateway took over each of the phase's normal sessions, by its log (environment to last reply)."""
    return [float(timing.group(1)) for record in records
            if phase.ran(record.client) and (timing := SESSION_TIMING.search(record.message))]


def print_phases(phases: list[Phase], records: list[Record]) -> None:
    base = phases[0].normal.ms(0.99)
    print(f"\n{'phase':<9} {'secs':>5} {'abusive/s':>9} {'normal':>7} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'p99/base':>8} | {'gw p99 ms':>9} {'gw worst lag ms':>15} {'gw CPU s':>8} {'gw core%':>8} | "
          f"{'our core%':>9} {'our lag ms':>10} | settled: {'open':>4} {'files':>5} {'RSS KiB':>8}")
    for p in phases:
        n, a = p.normal, p.after
        print(f"{p.name:<9} {p.seconds:>5.1f} {p.abusive / p.seconds:>9.0f} {len(n.latencies):>7} {n.failed:>6} "
              f"{n.ms(0.5):>7.2f} {n.ms(0.99):>7.2f} {n.ms(1.0):>7.2f} {n.ms(0.99) / base:>8.2f} | "
              f"{percentile(logged_ms(p, records), 0.99):>9.1f} "
              f"{1000 * a.worst_lag:>15.1f} {p.gateway_cpu:>8.2f} {100 * p.gateway_cpu / p.seconds:>8.0f} | "
              f"{100 * p.own_cpu / p.seconds:>9.0f} {1000 * p.own_worst_lag:>10.1f} |          "
              f"{a.active:>4.0f} {a.files:>5} {a.rss_kib:>8}")


def print_kinds(tally: Tally, records: list[Record]) -> None:
    logged: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        logged[owner(record)][record.kind()] += 1
    endings = list(Ending)
    print(f"\n{'misbehaviour':<34} {'sent':>6} " + " ".join(f"{e.value:>16}" for e in endings) + f" {'told SUCCESS':>12}")
    for kind in KINDS:
        counts = tally.endings[kind]
        print(f"{kind:<34} {sum(counts.values()):>6} " + " ".join(f"{counts[e]:>16}" for e in endings)
              + f" {tally.succeeded[kind]:>12}")
        for message, count in logged[kind].most_common():
            print(f"{'':<6}{count:>7}  {message}")
    print("normal sessions, as logged:")
    for message, count in logged["normal sessions"].most_common():
        print(f"{'':<6}{count:>7}  {message}")


def print_log(records: list[Record]) -> None:
    kinds = Counter(r.kind() for r in records if r.level != "INFO")
    print(f"\ngateway log: {len(records)} records; WARNING and above by kind:")
    for message, count in sorted(kinds.items()):
        print(f"{count:>9}  {message}")
    bugs: dict[tuple[str, ...], list[Record]] = defaultdict(list)
    for record in records:
        if record.is_bug:
            bugs[(record.kind(), *record.more[-1:])].append(record)
    print(f"ERROR records or tracebacks: {sum(map(len, bugs.values()))}")
    for group in bugs.values():
        print_bug(group)


def print_bug(group: list[Record]) -> None:
    """One kind of bug: its traceback once, then per misbehaviour that caused it the bytes of one such client."""
    print(f"{len(group):>9}  {group[0].level} {group[0].message}")
    print("\n".join(f"{'':>11}{line}" for line in group[0].more))
    causes = Counter(owner(record) for record in group)
    for cause, count in causes.most_common():
        client = next(r.client for r in group if owner(r) == cause)
        print(f"{count:>13} after {cause or 'no client named'}", end="")
        print(f"; client {client} ({source_address(client)}) sent: {shown_steps(script(client)[1])}" if abusive(client) else "")


def print_targets(phases: list[Phase]) -> None:
    base, rounds = phases[0], phases[1:]
    ratio = max(p.normal.ms(0.99) for p in rounds) / base.normal.ms(0.99)
    failed = sum(p.normal.failed for p in phases)
    worst = phases[-1].after.worst_lag
    files = " -> ".join(str(p.after.files) for p in phases)
    rss = " -> ".join(f"{p.after.rss_kib / 1024:.1f}" for p in phases)
    print(f"\ntargets: normal p99 under abuse / unloaded = {ratio:.2f} (<= 2: {'ok' if ratio <= 2 else 'MISSED'}); "
          f"normal sessions failed = {failed} ({'ok' if failed == 0 else 'MISSED'}); "
          f"gateway worst loop lag = {1000 * worst:.1f} ms (< 50: {'ok' if worst < 0.05 else 'MISSED'})")
    print(f"gateway files {files}; RSS MiB {rss} (before the abuse, then after each round)")


# -- the run -------------------------------------------------------------------------------------
def gateway_extra(metrics_port: int, environment_timeout: float) -> str:
    return f"metrics = 127.0.0.1:{metrics_port}\nenvironment_timeout = {environment_timeout}\npermit = 127.0.0.0/8\n"


async def run(args: argparse.Namespace) -> None:
    print(machine())
    print(f"gateway: skype-fastagi serve, environment_timeout = {args.environment_timeout} s, permit = 127.0.0.0/8, "
          f"other settings default; {args.rounds} round(s) of {args.sessions} abusive sessions, {args.open} at once, "
          f"{f'{args.rate:g} started per second' if args.rate else 'each started as one ends'}, "
          f"{len(KINDS)} misbehaviours in turn; normal sessions arriving at random, {args.normal_rate:g}/s throughout")
    began = time.perf_counter()
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        metrics_port = free_port()
        gateway = Server.gateway(folder, gateway_extra(metrics_port, args.environment_timeout))
        bench = Bench(gateway, metrics_port, args.normal_rate, args.settle)
        limits = Limits(args.open, args.rate, args.environment_timeout + GRACE)
        try:
            phases = [await bench.baseline(args.baseline)]
            for r in range(args.rounds):
                first = FIRST_ABUSIVE + r * args.sessions
                phases.append(await bench.abuse(f"round {r + 1}", first, args.sessions, limits, tally))
            total_cpu = gateway.cpu_seconds()
        finally:
            gateway.stop()
        records = read_log(folder / "gateway.log")
    print_phases(phases, records)
    print_kinds(tally, records)
    print_log(records)
    print_targets(phases)
    print(f"gateway CPU seconds over the whole run: {total_cpu:.2f}; run took {time.perf_counter() - began:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000, help="abusive sessions per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--open", type=int, default=200, help="abusive connections open at once")
    parser.add_argument("--rate", type=float, default=500.0, help="abusive connections started per second (0: no cap)")
    parser.add_argument("--normal-rate", type=float, default=1000.0, help="normal sessions arriving per second")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of normal sessions alone")
    parser.add_argument("--environment-timeout", type=float, default=1.0, help="the gateway's, seconds")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before reading the gateway after a phase")
    args = parser.parse_args()
    if FIRST_ABUSIVE + args.rounds * args.sessions >= FIRST_NORMAL:
        parser.error("too many abusive sessions for one loopback address each")
    pin(LOAD_CPU)
    raise_file_limit()
    import uvloop  # the load generator must be much cheaper per connection than the gateway it measures

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
