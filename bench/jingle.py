"""Voice calls with XMPP users under load: N echo calls through the gateway beside a bare aiortc echo pair.

A throwaway Prosody (the tests' `tests/xmpp/server.py`) and N echo peers (the tests'
independent XMPP phone, `tests/xmpp/callpeer.py`: slixmpp and aiortc) run on the load
core. Measured in the same run, for each N:

- the gateway: `skype-fastagi serve`, pinned to the other core, whose XMPP account calls
  the N peers with `call-start`; each call plays a 440 Hz WAV (`call-set-input-file`)
  that the peer says back through DTLS-SRTP, recorded by the gateway
  (`call-set-output-file`). Its CPU (the gateway's process and its media worker), the
  silent 20 ms frames in the recordings once the echo flows (a frame that came late or
  never), its event loop's lag (read ten times a second) and the round trip of an AGI action while the
  calls run;
- the baseline: one process on the gateway's core with N bare aiortc peer connections
  sending the same tone to N aiortc echo peers on the load core (signalled through a
  pipe, no XMPP), counting the echoed frames that never came: the same media work
  without the gateway.

Every echo peer, on either side, is a whole aiortc endpoint: it decrypts, decodes each
frame and encodes it again to send it back. For each side, the CPU of its echo peers'
process and of the whole load core while it is measured say whether the echo side kept
up (late frames of an echo side short of CPU would not be the gateway's).

Both sides talk `--codec` (PCMU by default; opus costs both ends several times more).

    python -m bench.jingle [--calls 1 10 20] [--seconds 10] [--codec PCMU|opus]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
import urllib.request
import wave
from pathlib import Path
from typing import Any

import numpy as np

from .agi_load import one_session
from .harness import (
    LOAD_CPU, SERVER_CPU, Server, core_busy_seconds, free_port, gateway_config, machine, percentile, pin,
    process_cpu_seconds,
)
from .xmpp import XMPP_ACCOUNT, throwaway_prosody

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from xmpp.callpeer import EchoTrack, ToneTrack, call_peer, prefer  # noqa: E402 - the tests' independent phone
from xmpp.server import Prosody  # noqa: E402 - the tests' throwaway server

TONE_HZ = 440.0
SETTLE = 3.0  # seconds after the calls are up before measuring: ICE, DTLS and the echo's first frames
SILENT_DBFS = -40.0  # a 20 ms frame quieter than this, inside the echoed tone, came late or never


# -- the AGI side --------------------------------------------------------------------------------
async def action(port: int, script: str) -> dict[str, str]:
    """Run one action as Asterisk would; the variables it set."""
    ended = await one_session(port, script, 1)
    variables = {}
    for line in ended.commands:
        if line.startswith(b"SET VARIABLE "):
            name, _, value = line[len(b"SET VARIABLE "):].decode().partition(" ")
            variables[name] = value.strip('"')
    return variables


async def agi_round_trips(port: int, until: float) -> list[float]:
    """Seconds each `get-call-id` took, one every 50 ms until `until`: what a dialplan waits while calls run."""
    taken = []
    while time.perf_counter() < until:
        began = time.perf_counter()
        await action(port, "get-call-id?account=alice&user-name=nobody@localhost")
        taken.append(time.perf_counter() - began)
        await asyncio.sleep(0.05)
    return taken


def loop_lag(metrics_port: int) -> float:
    """How late the gateway's event loop last ran its 50 ms probe timer (its metrics endpoint)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    line = next(line for line in text.splitlines() if line.startswith("skype_fastagi_event_loop_lag_seconds "))
    return float(line.split()[1])


async def loop_lags(metrics_port: int, until: float) -> list[float]:
    """The loop lag read ten times a second until `until`."""
    lags = []
    loop = asyncio.get_running_loop()
    while time.perf_counter() < until:
        lags.append(await loop.run_in_executor(None, loop_lag, metrics_port))
        await asyncio.sleep(0.1)
    return lags


def gateway_cpu(gateway: Server) -> float:
    """CPU seconds of the gateway and its children (the media worker)."""
    children = Path(f"/proc/{gateway.process.pid}/task/{gateway.process.pid}/children").read_text().split()
    return gateway.cpu_seconds() + sum(process_cpu_seconds(int(pid)) for pid in children)


def silent_frames(path: Path, start: float, seconds: float) -> tuple[int, int]:
    """(silent 20 ms frames, frames) of a recording between `start` and `start + seconds`."""
    with wave.open(str(path)) as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(float)
    frame = rate // 50
    window = samples[int(start * rate):int((start + seconds) * rate)]
    frames = window[: len(window) // frame * frame].reshape(-1, frame)
    levels = 20 * np.log10(np.maximum(np.sqrt(np.mean(frames ** 2, axis=1)), 1e-9) / 32768)
    return int(np.sum(levels < SILENT_DBFS)), len(levels)


async def gateway_calls(server: Prosody, calls: int, seconds: float, codec: str) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-jingle-"))
    n = np.arange(int((SETTLE + seconds + 5) * 16000))
    tone = (0.3 * 32767 * np.sin(2 * np.pi * TONE_HZ * n / 16000)).astype("<i2")
    with wave.open(str(folder / "tone.wav"), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000), out.writeframes(tone.tobytes())
    port, metrics = free_port(), free_port()
    (folder / "gateway.conf").write_text(gateway_config(
        port, folder, f"record_rate = 16000\nmetrics = 127.0.0.1:{metrics}",
        XMPP_ACCOUNT.format(c2s=server.c2s_port, ca=server.ca_file)))
    peers = PeersProcess("xmpp", server, calls, codec)
    gateway = Server.start([sys.executable, "-m", "fastagi", "serve", "--config", str(folder / "gateway.conf")],
                           port, folder / "gateway.log")
    try:
        await asyncio.sleep(1.5)  # the account logs in
        started = [await action(port, f"call-start?account=alice&user-name=echo{i}@localhost") for i in range(calls)]
        ids = [v["SKYPE_CALL_ID"] for v in started]
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            listed = await action(port, "calls-list?account=alice")
            if sum(listed.get(f"SKYPE_CALLS_{i + 1}_STATUS") == "INPROGRESS" for i in range(calls)) == calls:
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"not every call came up: {listed}")
        for i, call in enumerate(ids):
            await action(port, f"call-set-input-file?account=alice&call-id={call}&file-name=tone.wav")
            await action(port, f"call-set-output-file?account=alice&call-id={call}&file-name=heard{i}.wav")
        await asyncio.sleep(SETTLE)
        cpu, load, until = gateway_cpu(gateway), LoadSide(peers.process.pid), time.perf_counter() + seconds
        round_trips, lags = await asyncio.gather(agi_round_trips(port, until), loop_lags(metrics, until))
        cpu, load = gateway_cpu(gateway) - cpu, load.since()
        for call in ids:
            await action(port, f"call-hangup?account=alice&call-id={call}")
        await asyncio.sleep(0.5)
    finally:
        gateway.stop()
        peers.stop()
    # the recordings began with set-output-file, the window SETTLE seconds later
    counted = [silent_frames(folder / f"heard{i}.wav", SETTLE - 0.5, seconds) for i in range(calls)]
    silent, frames = sum(s for s, _ in counted), sum(f for _, f in counted)
    return {"cpu": cpu / seconds / calls, "late": silent / max(frames, 1), "lag": max(lags),
            "agi_p50": percentile(round_trips, 0.5), "agi_p99": percentile(round_trips, 0.99),
            "peers": load[0] / seconds, "load_core": load[1] / seconds}


class LoadSide:
    """CPU seconds of the echo peers' process, and of the whole load core, from now on."""

    def __init__(self, peers: int) -> None:
        self._peers = peers
        self._start = self._now()

    def since(self) -> tuple[float, float]:
        """(the peers' CPU seconds, the load core's busy seconds) since this was made."""
        now = self._now()
        return now[0] - self._start[0], now[1] - self._start[1]

    def _now(self) -> tuple[float, float]:
        return process_cpu_seconds(self._peers), core_busy_seconds(LOAD_CPU)


# -- the peers, on the load core ---------------------------------------------------------------------
class PeersProcess:
    """N echo peers in a process on the load core: XMPP phones (`xmpp`), or bare aiortc echo ends (`bare`)."""

    def __init__(self, kind: str, server: Prosody, calls: int, codec: str) -> None:
        self.pipe, theirs = multiprocessing.Pipe()
        self.process = multiprocessing.Process(target=peers_main, args=(kind, server.c2s_port, str(server.ca_file),
                                                                          calls, codec, theirs), daemon=True)
        self.process.start()
        assert self.pipe.recv() == "ready"

    def stop(self) -> None:
        self.pipe.send("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


def peers_main(kind: str, c2s: int, ca: str, calls: int, codec: str, pipe: Any) -> None:
    pin(LOAD_CPU)
    asyncio.run(xmpp_peers(c2s, ca, calls, codec, pipe) if kind == "xmpp" else bare_echoes(calls, pipe))


async def xmpp_peers(c2s: int, ca: str, calls: int, codec: str, pipe: Any) -> None:
    server = Prosody.__new__(Prosody)  # only its port and CA file are needed here
    server.c2s_port, server.ca_file = c2s, Path(ca)
    server.register = lambda name, password: f"{name}@localhost"  # registered by the main process
    peers = [await call_peer(server, f"echo{i}", on_call="echo", codec=codec) for i in range(calls)]
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    for peer in peers:
        await peer.close()


async def bare_echoes(calls: int, pipe: Any) -> None:
    """Answer each offer from the pipe with an aiortc peer connection that echoes what it hears."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pipe.send("ready")
    connections = []
    loop = asyncio.get_running_loop()
    while (message := await loop.run_in_executor(None, pipe.recv)) != "stop":
        pc = RTCPeerConnection()
        echo = EchoTrack()
        pc.addTrack(echo)
        pc.on("track", lambda track, echo=echo: setattr(echo, "source", track))
        await pc.setRemoteDescription(RTCSessionDescription(message, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        pipe.send(pc.localDescription.sdp)
        connections.append(pc)
    for pc in connections:
        await pc.close()


# -- the baseline, on the gateway's core --------------------------------------------------------------
def baseline_main(calls: int, seconds: float, codec: str, pipe: Any) -> None:
    pin(SERVER_CPU)
    pipe.send(asyncio.run(bare_callers(calls, seconds, codec, pipe)))


async def bare_callers(calls: int, seconds: float, codec: str, pipe: Any) -> dict[str, float]:
    """N aiortc peer connections sending the tone to the echo ends: CPU per call and the echoed frames missing."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    loop = asyncio.get_running_loop()
    heard = [0] * calls
    counting = False

    async def listen(track: Any, i: int) -> None:
        try:
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(float)
                level = 20 * np.log10(max(float(np.sqrt(np.mean(samples ** 2))), 1e-9) / 32768)
                if counting and level >= SILENT_DBFS:
                    heard[i] += frame.samples / frame.sample_rate / 0.02
        except MediaStreamError:
            pass

    connections = []
    for i in range(calls):
        pc = RTCPeerConnection()
        pc.addTrack(ToneTrack(TONE_HZ))
        prefer(pc, codec)
        pc.on("track", lambda track, i=i: asyncio.ensure_future(listen(track, i)))
        await pc.setLocalDescription(await pc.createOffer())
        pipe.send(pc.localDescription.sdp)
        answer = await loop.run_in_executor(None, pipe.recv)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        connections.append(pc)
    await asyncio.sleep(SETTLE)
    pipe.send("counting")
    counting = True
    cpu = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu
    counting = False
    pipe.send("counted")
    for pc in connections:
        await pc.close()
    expected = calls * seconds / 0.02
    return {"cpu": cpu / seconds / calls, "missing": max(0.0, expected - sum(heard)) / expected}


def bare_pair(calls: int, seconds: float, codec: str) -> dict[str, float]:
    echoes, theirs = multiprocessing.Pipe()
    echo_side = multiprocessing.Process(target=peers_main, args=("bare", 0, "", calls, codec, theirs), daemon=True)
    echo_side.start()
    assert echoes.recv() == "ready"
    callers, ours = multiprocessing.Pipe()
    caller_side = multiprocessing.Process(target=baseline_main, args=(calls, seconds, codec, ours), daemon=True)
    caller_side.start()
    for _ in range(calls):  # relay each offer and its answer
        echoes.send(callers.recv())
        callers.send(echoes.recv())
    assert callers.recv() == "counting"
    load = LoadSide(echo_side.pid)
    assert callers.recv() == "counted"
    peers, load_core = load.since()
    result = callers.recv()
    echoes.send("stop")
    for process in (caller_side, echo_side):
        process.join(10)
    return result | {"peers": peers / seconds, "load_core": load_core / seconds}


async def run(args: argparse.Namespace) -> None:
    with throwaway_prosody(["alice", *(f"echo{i}" for i in range(max(args.calls)))]) as server:
        print(f"{machine()}; the gateway's media worker and the baseline's callers on core {SERVER_CPU}, Prosody and "
              f"the echo peers on core {LOAD_CPU}; {args.codec}, {args.seconds:g} s per step")
        print(f"{'calls':>5}  {'gw %core/call':>13}  {'late/missing':>12}  {'loop lag max ms':>15}  "
              f"{'AGI p50/p99 ms':>14}  {'peers/load core %':>17}  {'bare %core/call':>15}  {'missing':>7}  "
              f"{'peers/load core %':>17}  {'calls/core ratio':>16}")
        for calls in args.calls:
            gw = await gateway_calls(server, calls, args.seconds, args.codec)
            bare = bare_pair(calls, args.seconds, args.codec)
            print(f"{calls:>5}  {gw['cpu'] * 100:>13.2f}  {gw['late'] * 100:>11.2f}%  {gw['lag'] * 1000:>15.1f}  "
                  f"{gw['agi_p50'] * 1000:>6.1f}/{gw['agi_p99'] * 1000:<7.1f}  {load_side(gw):>17}  "
                  f"{bare['cpu'] * 100:>15.2f}  {bare['missing'] * 100:>6.2f}%  {load_side(bare):>17}  "
                  f"{bare['cpu'] / gw['cpu']:>16.2f}")


def load_side(row: dict[str, float]) -> str:
    """The echo peers' CPU and the whole load core's, in % of a core: whether the echo side kept up."""
    return f"{row['peers'] * 100:.0f}/{row['load_core'] * 100:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--codec", default="PCMU", choices=["PCMU", "PCMA", "opus"])
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
