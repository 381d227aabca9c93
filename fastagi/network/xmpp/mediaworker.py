"""The media worker: the ICE, DTLS-SRTP and codec work of every XMPP call, in a process of its own.

The gateway starts it (`python -m fastagi.network.xmpp.mediaworker FD`) and talks to it
over a socket (`mediawire`): per call, it makes an offer or an answer with aiortc, takes
the other side's description and candidates, and moves audio as 20 ms frames of 16 kHz
mono PCM both ways. What aiortc has not: RFC 4733 telephone-events, sent and received
here on the call's RTP stream (`telephone_event`). Keeping this work out of the gateway's
process keeps the 20 ms media clock and the FastAGI sessions off its CPU.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import sys
from collections import deque
from fractions import Fraction
from typing import Any

import aiortc.rtp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from . import mediawire, sdp
from .batching import BatchedWriter
from .telephone_event import Receiver, Rtp, Sender, Timing, decode_rtp, encode_rtp

log = logging.getLogger("fastagi.mediaworker")

RATE = 16000
FRAME_SAMPLES = RATE // 50
FRAME_BYTES = FRAME_SAMPLES * 2
SILENCE = bytes(FRAME_BYTES)


class GatewayTrack(MediaStreamTrack):
    """What the call sends: the frames the gateway's media engine gives, one every 20 ms on a clock of its own.

    A frame that is late is replaced by silence; frames that pile up are dropped, oldest
    first, so the delay stays bounded whatever the two clocks do.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._frames: deque[bytes] = deque(maxlen=3)
        self._pts = 0
        self._start: float | None = None

    def put(self, pcm: bytes) -> None:
        self._frames.append(pcm)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._pts / RATE
        await asyncio.sleep(max(0.0, due - loop.time()))
        pcm = self._frames.popleft() if self._frames else SILENCE
        mono = np.frombuffer(pcm, np.int16)
        # stereo: aiortc's Opus encoder upmixes mono with av, which takes 3 dB off; G.711's downmix averages
        stereo = np.repeat(mono, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.time_base = Fraction(1, RATE)
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return frame


def audio_level_dbov(frame: av.AudioFrame) -> int:
    """RFC 6465's level of a frame to send, as aiortc's `rtp.compute_audio_level_dbov` gives it, summed by numpy.

    aiortc 1.16.0 sums the squares in a Python loop over every sample of every frame it
    sends, on the worker's event loop (about 7 % of it at 20 calls); the same sum, over the
    same buffer, here.
    """
    samples = np.frombuffer(frame.planes[0], np.int16)
    energy = float(np.square(samples, dtype=np.int64).sum())
    rms = (energy / (frame.samples * 32767 * 32767)) ** 0.5
    return round(min(max(20 * math.log10(rms), -127), 0)) if rms > 0 else -127


class Call:
    """One call's peer connection, its two audio directions and its telephone-events."""

    def __init__(self, number: int, worker: Worker, ice_servers: list[dict[str, Any]], timeout: float) -> None:
        self.number = number
        self.worker = worker
        self.timeout = timeout
        """Seconds the media has to come up, and then the longest the other side may send nothing."""
        self.heard_at = asyncio.get_running_loop().time()  # the last RTP or RTCP packet (or the start)
        self.connected = False
        servers = [RTCIceServer(**server) for server in ice_servers]  # none: host candidates only, never a public STUN
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.track = GatewayTrack()
        self.pc.addTrack(self.track)
        self.pc.on("track", self._track)
        self.pc.on("connectionstatechange", self._state)
        self.dtmf_out = Sender()
        self.dtmf_in = Receiver()
        self.event_pt: int | None = None  # telephone-event payload type the other side takes
        self.event_pts: set[int] = set()  # telephone-event payload types the other side sends
        self._sequence: int | None = None
        self._tasks: list[asyncio.Task[None]] = [asyncio.ensure_future(self._watch())]
        self.trace = False
        """Report each telephone-event packet received (diagnostics, tests)."""

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._learn_events(offer, self.pc.localDescription.sdp)
        return self.pc.localDescription.sdp

    async def accepted(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        self._learn_events(answer, answer)

    async def add_candidates(self, lines: list[str]) -> None:
        for line in lines:
            candidate = candidate_from_sdp(line.removeprefix("a=").removeprefix("candidate:"))
            candidate.sdpMid = self.pc.getTransceivers()[0].mid
            await self.pc.addIceCandidate(candidate)

    def _learn_events(self, remote: str, answer: str) -> None:
        """The other side's telephone-event payload types, and the one to send: at the clock rate of the codec
        the answer chose (its first one aiortc speaks)."""
        events = [c for c in sdp.parse(remote).audio.codecs if c.name.lower() == "telephone-event"]
        self.event_pts = {c.pt for c in events}
        known = {"opus": 48000, "pcmu": 8000, "pcma": 8000}
        rate = next((known[c.name.lower()] for c in sdp.parse(answer).audio.codecs if c.name.lower() in known), 8000)
        match = [c for c in events if c.clockrate == rate]
        if match:
            self.event_pt = match[0].pt
            self.dtmf_out = Sender(Timing(clock_rate=rate))

    def _state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self.connected:
            self.connected = True
            self.heard_at = asyncio.get_running_loop().time()
            self._hook_rtp()
        if state in ("connected", "failed", "closed"):
            self.worker.send({"op": "state", "call": self.number, "state": state})

    async def _watch(self) -> None:
        """No call is left half-open: media that never comes up (ICE or DTLS never completing), or a peer that
        vanished (nothing received, RTP or RTCP, for `timeout` seconds) fails the call with the reason."""
        loop = asyncio.get_running_loop()
        while loop.time() - self.heard_at < self.timeout:
            await asyncio.sleep(min(1.0, self.timeout / 4))
        reason = (f"no audio from the other side for {self.timeout:g} s" if self.connected
                  else f"the media connection did not come up within {self.timeout:g} s")
        self.worker.send({"op": "state", "call": self.number, "state": "failed", "reason": reason})

    def _track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._receive(track)))

    async def _receive(self, track: MediaStreamTrack) -> None:
        """What the other side says, as 20 ms frames at 16 kHz mono to the gateway."""
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        pending = bytearray()
        try:
            while True:
                frame = await track.recv()
                for converted in resampler.resample(frame):
                    pending += converted.to_ndarray().tobytes()
                while len(pending) >= FRAME_BYTES:
                    self.worker.audio(self.number, bytes(pending[:FRAME_BYTES]))
                    del pending[:FRAME_BYTES]
        except MediaStreamError:
            pass

    def _hook_rtp(self) -> None:
        """Puts telephone-events on the outgoing RTP stream and takes them from the incoming one.

        Every outgoing packet passes here before SRTP: the sequence numbers are set here
        for the audio and the events alike, so both share one numbering.
        """
        transceiver = self.pc.getTransceivers()[0]
        transport = transceiver.sender.transport
        send_rtp = transport._send_rtp

        async def send(data: bytes) -> None:
            if 192 <= data[1] <= 223:  # RTCP goes this way too (rtcp-mux): as it is
                await send_rtp(data)
                return
            if self._sequence is None:
                self._sequence = int.from_bytes(data[2:4], "big")
            packets = [data]
            if self.event_pt is not None and self.dtmf_out.busy and (data[1] & 0x7F) != self.event_pt:
                header = decode_rtp(data)
                packets += [encode_rtp(Rtp(self.event_pt, 0, timestamp, header.ssrc, marker, payload))
                            for marker, timestamp, payload in self.dtmf_out.tick(header.timestamp)]
            for packet in packets:
                await send_rtp(packet[:2] + (self._sequence & 0xFFFF).to_bytes(2, "big") + packet[4:])
                self._sequence += 1

        transport._send_rtp = send  # aiortc has no telephone-event: its RTP goes through this hook
        self._hook_arrivals(transport)
        receiver = transceiver.receiver
        handle = receiver._handle_rtp_packet

        async def receive(packet: Any, arrival_time_ms: int) -> None:
            if packet.payload_type in self.event_pts:
                rtp = Rtp(packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc,
                          bool(packet.marker), bytes(packet.payload))
                if self.trace:
                    self.worker.send({"op": "event-packet", "call": self.number, "pt": rtp.payload_type,
                                      "sequence": rtp.sequence, "timestamp": rtp.timestamp, "marker": rtp.marker,
                                      "payload": rtp.payload.hex()})
                digit = self.dtmf_in.receive(rtp)
                if digit is not None:
                    self.worker.send({"op": "dtmf", "call": self.number, "digit": digit})
                return
            await handle(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = receive  # the same for received telephone-events
        # aiortc's router drops a payload type no codec of the receiver has: these are the receiver's too
        transport._rtp_router.register_receiver(receiver, ssrcs=[], payload_types=sorted(self.event_pts))

    def _hook_arrivals(self, transport: Any) -> None:
        """Every packet the other side sends, once decrypted, tells the watch it is alive."""
        loop = asyncio.get_running_loop()
        rtp, rtcp = transport._handle_rtp_data, transport._handle_rtcp_data

        async def on_rtp(data: bytes, arrival_time_ms: int) -> None:
            self.heard_at = loop.time()
            await rtp(data, arrival_time_ms=arrival_time_ms)

        async def on_rtcp(data: bytes) -> None:
            self.heard_at = loop.time()
            await rtcp(data)

        transport._handle_rtp_data, transport._handle_rtcp_data = on_rtp, on_rtcp

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.track.stop()
        await self.pc.close()


class Worker(asyncio.Protocol):
    """The gateway's link: control messages run the calls, audio frames go to each call's track."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.decoder = mediawire.Decoder()
        self.calls: dict[int, Call] = {}
        self.transport: asyncio.Transport | None = None
        self._writer = BatchedWriter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self._writer.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except mediawire.WireError:
            log.exception("the gateway sent what is not the media protocol")
            self.transport.close()  # type: ignore[union-attr]
            return
        for message in messages:
            if isinstance(message, mediawire.Audio):
                call = self.calls.get(message.call)
                if call is not None:
                    call.track.put(message.pcm)
            else:
                asyncio.ensure_future(self._control(message))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def send(self, message: dict[str, Any]) -> None:
        self._writer.write(mediawire.control(message))

    def audio(self, call: int, pcm: bytes) -> None:
        self._writer.write(mediawire.audio(call, pcm))


    async def _control(self, message: dict[str, Any]) -> None:
        op, number = message["op"], int(message.get("call", 0))
        try:
            if op == "open":
                call = self.calls[number] = Call(number, self, message.get("ice", []), float(message["timeout"]))
                offer = message.get("offer")
                if offer:
                    self.send({"op": "answer", "call": number, "sdp": await call.answer(offer)})
                else:
                    self.send({"op": "offer", "call": number, "sdp": await call.offer()})
            elif op == "accepted":
                await self.calls[number].accepted(message["sdp"])
            elif op == "candidates":
                await self.calls[number].add_candidates(message["lines"])
            elif op == "dtmf":
                self.calls[number].dtmf_out.send(message["digits"])
            elif op == "trace":
                self.calls[number].trace = bool(message.get("on", True))
            elif op == "close":
                call = self.calls.pop(number, None)
                if call is not None:
                    await call.close()
                self.send({"op": "state", "call": number, "state": "closed"})
        except Exception as exc:  # noqa: BLE001 - one call's failure is reported, the others go on
            log.exception("call %d: %s failed", number, op)
            self.send({"op": "state", "call": number, "state": "failed", "reason": f"{op}: {exc}"})


async def serve(fd: int) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    sock = socket.socket(fileno=fd)
    _, worker = await loop.connect_accepted_socket(lambda: Worker(done), sock=sock)
    await done
    for call in list(worker.calls.values()):
        await call.close()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="mediaworker %(levelname)s %(name)s: %(message)s")
    aiortc.rtp.compute_audio_level_dbov = audio_level_dbov  # the sender looks it up in `rtp` for every frame
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
