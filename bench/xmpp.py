"""Chat on XMPP end to end: `chatmessage-send` sessions per second, and a peer's message to its UserEvent.

A throwaway Prosody (the tests' `tests/xmpp/server.py`) runs beside this process on the
load core; the gateway runs as `skype-fastagi serve --config FILE`, pinned to the other
core, with one account `alice` on that Prosody (STARTTLS) and AMI to a small AMI server
in this process. Measured in the same run:

- the gateway: N AGI `chatmessage-send` sessions always in flight (AGI in → the server's
  ack of the message → variables out), as Asterisk would run them;
- the baseline: a bare slixmpp client, in a process of its own on the gateway's core,
  sending the same messages with N in flight, each done once the server acked it (stream
  management): the same work on the wire without the gateway;
- the least a gateway could do: the bare client behind a minimal AGI responder (read the
  environment, send the message, wait for the server's ack, write the gateway's own result
  commands in one write), with the same N sessions in flight: the AGI sessions' share;
- the delay from a peer's message to its `UserEvent` reaching Asterisk's AMI port: a
  peer sends at a fixed rate with its send time in the body; p50 and p99.

    python -m bench.xmpp [--seconds 5] [--concurrency 1 50 200] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Awaitable, Iterable, Iterator

import slixmpp
from slixmpp.plugins.xep_0198.stanza import RequestAck

from .agi_load import Measured, Target, offer_load, one_session, one_write
from .harness import (LOAD_CPU, SERVER_CPU, Server, free_port, gateway_config, machine, percentile, pin,
                      process_cpu_seconds, raise_file_limit)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from xmpp.server import Prosody  # noqa: E402 - the tests' throwaway server

XMPP_ACCOUNT = """[alice]
type = account
network = xmpp
jid = alice@localhost
password = secret
xmpp_server = 127.0.0.1
xmpp_port = {c2s}
xmpp_ca_file = {ca}
"""
AMI = "[ami]\nenabled = yes\nport = {ami_port}\nusername = bench\nsecret = bench\n"
BODY = "Hello from the PBX"


class Client(slixmpp.ClientXMPP):
    """A bare slixmpp client: STARTTLS with the server's CA, stream management."""

    def __init__(self, ca_file: Path, user: str) -> None:
        super().__init__(f"{user}@localhost/bench", "secret")
        self.enable_direct_tls = self.enable_plaintext = False
        self.ca_certs = ca_file
        self.register_plugin("xep_0198", pconfig={"window": 2**31})
        self.ready = asyncio.Event()
        self.acked: dict[str, asyncio.Future[None]] = {}
        self.add_event_handler("session_start", lambda _: (self.send_presence(), self.ready.set()))
        self.add_event_handler("stanza_acked", self._acked)

    def _acked(self, stanza: slixmpp.Message) -> None:
        waiter = self.acked.pop(stanza["id"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def online(self, port: int) -> Client:
        self.connect("127.0.0.1", port)
        await asyncio.wait_for(self.ready.wait(), 10)
        return self

    async def send_acked(self, to: str, body: str) -> None:
        message = self.make_message(mto=to, mbody=body, mtype="chat")
        message["id"] = self.new_id()
        waiter = self.acked[message["id"]] = asyncio.get_running_loop().create_future()
        message.send()
        self.send(RequestAck(self), use_filters=False)
        await waiter


# -- the baselines, each in its own process on the gateway's core ------------------------------
def bare_client(ca_file: str, user: str, port: int) -> Awaitable[Client]:
    """A bare client of `user` on `port`, in a baseline's process on the gateway's core."""
    pin(SERVER_CPU)
    return Client(Path(ca_file), user).online(port)


def baseline_process(port: int, ca: str, concurrency: int, seconds: float, pipe) -> None:  # type: ignore[no-untyped-def]
    pipe.send(asyncio.run(_baseline(ca, port, concurrency, seconds)))


async def _baseline(ca_file: str, port: int, concurrency: int, seconds: float) -> tuple[float, float]:
    """(messages acked per second, CPU seconds per message) of a bare client with `concurrency` in flight."""
    client = await bare_client(ca_file, "carol", port)
    sent = 0
    started = time.perf_counter() + 0.5  # after a warm-up, as the gateway's sessions
    stop = started + seconds

    async def sender() -> None:
        nonlocal sent
        while (now := time.perf_counter()) < stop:
            await client.send_acked("bob@localhost", BODY)
            sent += now >= started

    cpu = 0.0

    async def measure_cpu() -> None:
        nonlocal cpu
        await asyncio.sleep(started - time.perf_counter())
        before = time.process_time()
        await asyncio.sleep(stop - time.perf_counter())
        cpu = time.process_time() - before

    await asyncio.gather(measure_cpu(), *(sender() for _ in range(concurrency)))
    client.disconnect()
    return sent / seconds, cpu / max(sent, 1)


def baseline(server: Prosody, concurrency: int, seconds: float) -> tuple[float, float]:
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=baseline_process,
                                    args=(server.c2s_port, str(server.ca_file), concurrency, seconds, send))
    child.start()
    result = receive.recv()
    child.join()
    return result


class MinimalGateway(asyncio.Protocol):
    """Reads the environment, sends the message with the bare client, writes the result commands once it is acked."""

    client: Client
    commands = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.sending: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.sending is None and b"\n\n" in self.buffer:
            self.sending = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        await self.client.send_acked("bob@localhost", BODY)
        self.transport.write(self.commands)
        self.transport.write_eof()

    def eof_received(self) -> bool:
        return False


def minimal_gateway_process(c2s: int, ca: str, port: int, commands: bytes, ready) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(_minimal_gateway(ca, c2s, port, commands, ready))


async def _minimal_gateway(ca_file: str, c2s: int, port: int, commands: bytes, ready) -> None:  # type: ignore[no-untyped-def]
    MinimalGateway.client = await bare_client(ca_file, "dave", c2s)
    MinimalGateway.commands = commands
    listening = await asyncio.get_running_loop().create_server(MinimalGateway, "127.0.0.1", port, backlog=1024)
    ready.send(True)
    await listening.serve_forever()


@contextmanager
def minimal_gateway(server: Prosody, commands: list[bytes]) -> Iterator[tuple[int, int]]:
    """(port, pid) of the least a gateway could do, answering with the gateway's `commands`."""
    port = free_port()
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=minimal_gateway_process,
                                    args=(server.c2s_port, str(server.ca_file), port, one_write(commands), send))
    child.start()
    try:
        receive.recv()
        assert child.pid is not None
        yield port, child.pid
    finally:
        child.kill()
        child.join()


# -- Asterisk's AMI port -----------------------------------------------------------------------
class AmiPort:
    """Answers a login and every action with Success, and notes when each chat UserEvent arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # body -> arrival time
        self.last = 0.0  # when the last action arrived
        self.server: asyncio.AbstractServer | None = None

    async def quiet(self, seconds: float = 0.5) -> None:
        """Wait until no action arrived for `seconds`: the gateway's AMI queue is empty."""
        while time.perf_counter() - self.last < seconds:
            await asyncio.sleep(0.05)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        try:
            while block := await reader.readuntil(b"\r\n\r\n"):
                self.last = time.perf_counter()
                headers = dict(line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line)
                if headers.get("UserEvent") == "SkypeChatMessage":
                    self.arrived[headers.get("Body", "")] = time.perf_counter()
                response = "Success\r\nMessage: Authentication accepted" if headers.get("Action") == "Login" else "Success"
                writer.write(f"Response: {response}\r\nActionID: {headers.get('ActionID', '')}\r\n\r\n".encode())
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):  # the gateway left, or the run ends
            writer.close()


async def delays(server: Prosody, ami: AmiPort, rate: float, seconds: float) -> list[float]:
    """Seconds from a peer's message to its UserEvent at the AMI port, for messages sent at `rate` a second."""
    bob = await Client(server.ca_file, "bob").online(server.c2s_port)
    for n in range(20):  # a new session's first stanzas wait behind its set-up: not counted
        await bob.send_acked("alice@localhost", f"warm-up {n}")
    while "warm-up 19" not in ami.arrived:
        await asyncio.sleep(0.01)
    sent: dict[str, float] = {}
    count = int(rate * seconds)
    started = time.perf_counter()
    for n in range(count):
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        body = f"delay {n}"
        sent[body] = time.perf_counter()
        bob.send_message(mto="alice@localhost", mbody=body, mtype="chat")
    deadline = time.perf_counter() + 5
    while len([body for body in sent if body in ami.arrived]) < count and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    bob.disconnect()
    return [ami.arrived[body] - began for body, began in sent.items() if body in ami.arrived]


@contextmanager
def throwaway_prosody(users: Iterable[str]) -> Iterator[Prosody]:
    """A Prosody beside this process (on the load core) with `users` (password secret), removed afterwards."""
    pin(LOAD_CPU)
    raise_file_limit()
    server = Prosody()
    server.start()
    try:
        for user in users:
            server.register(user, "secret")
        yield server
    finally:
        server.remove()


async def sessions(port: int, pid: int, script: str, concurrency: int, seconds: float) -> tuple[Measured, float]:
    """`concurrency` sessions always in flight on `port`: what was measured, and the server's CPU seconds per session."""
    cpu = process_cpu_seconds(pid)
    measured: Measured = await offer_load(Target(port, script), concurrency, seconds)
    return measured, (process_cpu_seconds(pid) - cpu) / max(measured.succeeded_in_all, 1)


HEADER = (f"{'in flight':>9}  {'gateway/s':>10}  {'p99 ms':>7}  {'failed':>6}  {'µs/msg':>7}  {'bare client/s':>13}  "
          f"{'µs/msg':>7}  {'ratio':>5}  {'minimal gateway/s':>17}  {'µs/msg':>7}  {'ratio':>5}")


async def rows(server: Prosody, port: int, pid: int, args: argparse.Namespace) -> None:
    """The gateway beside the bare client and the minimal gateway, for each number of sessions in flight."""
    script = f"chatmessage-send?account=alice&user-name=bob@localhost&message-body={BODY.replace(' ', '%20')}"
    probe = await one_session(port, script, 0)
    with minimal_gateway(server, probe.commands) as (minimal_port, minimal_pid):
        print(HEADER)
        for concurrency in args.concurrency:
            measured, cpu = await sessions(port, pid, script, concurrency, args.seconds)
            bare, bare_cpu = baseline(server, concurrency, args.seconds)
            least, least_cpu = await sessions(minimal_port, minimal_pid, script, concurrency, args.seconds)
            print(f"{concurrency:>9}  {measured.rate:>10.0f}  {percentile(measured.latencies, 0.99) * 1000:>7.1f}"
                  f"  {measured.failed:>6}  {cpu * 1e6:>7.0f}  {bare:>13.0f}  {bare_cpu * 1e6:>7.0f}"
                  f"  {measured.rate / bare:>5.2f}  {least.rate:>17.0f}  {least_cpu * 1e6:>7.0f}"
                  f"  {measured.rate / least.rate:>5.2f}")


async def run(args: argparse.Namespace) -> None:
    with throwaway_prosody(("alice", "bob", "carol", "dave")) as server:
        ami = AmiPort()
        ami_port = await ami.start()
        with tempfile.TemporaryDirectory() as folder:
            port = free_port()
            (Path(folder) / "gateway.conf").write_text(gateway_config(
                port, folder, sections=AMI.format(ami_port=ami_port) + XMPP_ACCOUNT.format(c2s=server.c2s_port,
                                                                                            ca=server.ca_file)))
            gateway = Server.start([sys.executable, "-m", "fastagi", "serve", "--config", f"{folder}/gateway.conf"],
                                   port, Path(folder) / "gateway.log")
            try:
                await asyncio.sleep(1.0)  # the account logs in
                receiver = await Client(server.ca_file, "bob").online(server.c2s_port)  # keeps bob online: no offline storage
                print(machine())
                await rows(server, port, gateway.process.pid, args)
                receiver.disconnect()
                await ami.quiet()  # the chat messages' UserEvents above have all reached the AMI port
                seen = await delays(server, ami, args.rate, args.seconds)
                lost = int(args.rate * args.seconds) - len(seen)
                print(f"peer message -> UserEvent at {args.rate:g}/s: p50 {percentile(seen, 0.5) * 1000:.1f} ms, "
                      f"p99 {percentile(seen, 0.99) * 1000:.1f} ms, max {max(seen) * 1000:.1f} ms, {lost} not arrived")
            finally:
                gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--rate", type=float, default=100.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
