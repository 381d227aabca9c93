"""The media worker: the ICE, DTLS-SRTP and codec work of every XMPP call, in a process of its own.

The gateway starts it (`python -m fastagi.network.xmpp.mediaworker FD`) and talks to it
over a socket (`mediawire`): per call, it makes an offer or an answer with aiortc, takes
the other side's description and candidates, and moves audio as 20 ms frames of 16 kHz
mono PCM both ways, encoded and decoded here (`rtpaudio`) while aiortc does ICE, DTLS,
SRTP and RTP. What aiortc has not: RFC 4733 telephone-events, sent and received here on
the call's RTP stream (`telephone_event`). Keeping this work out of the gateway's
process keeps the 20 ms media clock and the FastAGI sessions off its CPU.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections import deque
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from ...model.audio import ENGINE_RATE
from . import mediawire, rtpaudio, sdp
from .batching import BatchedWriter
from .telephone_event import Receiver, Rtp, Sender, Timing, decode_rtp, encode_rtp

log = logging.getLogger("fastagi.mediaworker")

HEARD_EVERY = 0.01
"""Seconds the frames the calls hear are gathered before going to the gateway together: the calls' packets come
at their own moments, and a write for each (and a wake-up of the gateway) cost more than all else per frame."""


class GatewayTrack(MediaStreamTrack):
    """What the call sends: each frame the gateway's media engine gives, already encoded, as soon as it comes.

    The engine's clock paces the call, so the worker keeps no timer per call. Frames that
    pile up while the sender is held up are dropped, oldest first, so the delay stays
    bounded. The frames go as `av.Packet`s: aiortc then only packetizes them (its
    encoders would take each through a thread pool).
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._packets: deque[av.Packet] = deque(maxlen=3)
        self._waiter: asyncio.Future[None] | None = None
        self._pts = 0
        self._time_base = Fraction(1, 8000)
        self._step = 160

    def clock(self, rate: int) -> None:
        """The codec's RTP clock rate, which the packets' timestamps count."""
        self._time_base, self._step = Fraction(1, rate), rate // rtpaudio.FRAMES_PER_SECOND

    def deliver(self, payload: bytes) -> None:
        packet = av.Packet(payload)
        packet.pts, packet.time_base = self._pts, self._time_base
        self._pts += self._step
        self._packets.append(packet)
        self._wake()

    async def recv(self) -> av.Packet:
        while not self._packets:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._packets.popleft()

    def stop(self) -> None:
        super().stop()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Call:
    """One call's peer connection, its two audio directions and its telephone-events."""

    def __init__(self, number: int, slot: int, worker: Worker, ice_servers: list[dict[str, Any]],
                 timeout: float) -> None:
        self.number = number
        self.slot = slot
        """Its place in the worker's rate conversions."""
        self.worker = worker
        self.timeout = timeout
        """Seconds the media has to come up, and then the longest the other side may send nothing."""
        self.heard_at = asyncio.get_running_loop().time()  # the last RTP or RTCP packet (or the start)
        self.connected = False
        servers = [RTCIceServer(**server) for server in ice_servers]  # none: host candidates only, never a public STUN
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.track = GatewayTrack()
        self.pc.addTrack(self.track)
        self.pc.on("connectionstatechange", self._state)
        self.codec: rtpaudio.Codec | None = None  # what it sends: the answer's first codec spoken here
        self.inbound: dict[int, rtpaudio.Inbound] = {}  # what it receives, by payload type
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
        self._learn_codecs(offer, self.pc.localDescription.sdp)
        return self.pc.localDescription.sdp

    async def accepted(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        self._learn_codecs(answer, answer)

    async def add_candidates(self, lines: list[str]) -> None:
        for line in lines:
            candidate = candidate_from_sdp(line.removeprefix("a=").removeprefix("candidate:"))
            candidate.sdpMid = self.pc.getTransceivers()[0].mid
            await self.pc.addIceCandidate(candidate)

    def _learn_codecs(self, remote: str, answer: str) -> None:
        """The codecs of the answer (the first one spoken here is the one sent, as aiortc chooses), and the other
        side's telephone-event payload types, with the one to send: at the clock rate of the codec sent."""
        spoken = [c for c in sdp.parse(answer).audio.codecs if c.name.lower() in rtpaudio.CODECS]
        self.inbound = {c.pt: rtpaudio.Inbound(rtpaudio.codec(c.name)) for c in spoken}
        if spoken:
            self.codec = rtpaudio.codec(spoken[0].name)
            self.track.clock(self.codec.clock_rate)
        events = [c for c in sdp.parse(remote).audio.codecs if c.name.lower() == "telephone-event"]
        self.event_pts = {c.pt for c in events}
        rate = self.codec.clock_rate if self.codec is not None else 8000
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

    def _hook_rtp(self) -> None:
        """Puts telephone-events on the outgoing RTP stream, and takes the incoming one: its events, and its
        audio, decoded here (`rtpaudio`) instead of by aiortc's receiver.

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

        async def receive(packet: Any, arrival_time_ms: int) -> None:
            inbound = self.inbound.get(packet.payload_type)
            if inbound is not None:
                for frame in inbound.packet(packet.sequence_number, packet.payload):
                    self.worker.heard(self, inbound.codec.decode_rate, frame)
            elif packet.payload_type in self.event_pts:
                rtp = Rtp(packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc,
                          bool(packet.marker), bytes(packet.payload))
                if self.trace:
                    self.worker.send({"op": "event-packet", "call": self.number, "pt": rtp.payload_type,
                                      "sequence": rtp.sequence, "timestamp": rtp.timestamp, "marker": rtp.marker,
                                      "payload": rtp.payload.hex()})
                digit = self.dtmf_in.receive(rtp)
                if digit is not None:
                    self.worker.send({"op": "dtmf", "call": self.number, "digit": digit})

        # aiortc has no telephone-event, and its receiver decodes in a thread of its own (a hop per frame); its
        # jitter buffer and receiver reports are left out with it (the gateway's CallPort buffers)
        receiver._handle_rtp_packet = receive
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
    """The gateway's link: control messages run the calls, audio frames go to and come from each call.

    The frames of a tick of the gateway's engine come in one read, and are converted and
    encoded together (`say`); the frames the calls hear in one turn of the loop are
    converted together and go to the gateway in one write (`heard`).
    """

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.decoder = mediawire.Decoder()
        self.calls: dict[int, Call] = {}
        self.transport: asyncio.Transport | None = None
        self._writer = BatchedWriter()
        self._rates = rtpaudio.Rates()
        self._slots = 0  # slots ever taken
        self._free_slots: list[int] = []
        self._heard: list[tuple[Call, int, np.ndarray]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self._writer.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except mediawire.WireError:
            log.exception("the gateway sent what is not the media protocol")
            self.transport.close()  # type: ignore[union-attr]
            return
        frames = []
        for message in messages:
            if isinstance(message, mediawire.Audio):
                frames.append(message)
            else:
                asyncio.ensure_future(self._control(message))
        self.say(frames)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def send(self, message: dict[str, Any]) -> None:
        self._writer.write(mediawire.control(message))

    def say(self, frames: list[mediawire.Audio]) -> None:
        """Frames from the gateway (a tick's, one per call; more if this side fell behind): each encoded and
        handed to its call's sender."""
        calls = [(self.calls.get(frame.call), frame.pcm) for frame in frames]
        sending = [(call, call.codec, pcm) for call, pcm in calls if call is not None and call.codec is not None]
        converted = self._rates.convert([(call.slot, ENGINE_RATE, codec.encode_rate, np.frombuffer(pcm, np.int16))
                                         for call, codec, pcm in sending])
        for (call, codec, _), pcm in zip(sending, converted):
            call.track.deliver(codec.encode(pcm))

    def heard(self, call: Call, rate: int, pcm: np.ndarray) -> None:
        """A frame the call heard, at `rate`: to the gateway within `HEARD_EVERY`, with the others heard meanwhile."""
        if not self._heard:
            asyncio.get_running_loop().call_later(HEARD_EVERY, self._send_heard)
        self._heard.append((call, rate, pcm))

    def _send_heard(self) -> None:
        heard, self._heard = [entry for entry in self._heard if self.calls.get(entry[0].number) is entry[0]], []
        converted = self._rates.convert([(call.slot, rate, ENGINE_RATE, pcm) for call, rate, pcm in heard])
        for (call, _, _), pcm in zip(heard, converted):
            self._writer.write(mediawire.audio(call.number, pcm.tobytes()))

    def _slot(self) -> int:
        """A slot no open call has (in the rate conversions)."""
        if not self._free_slots:
            self._free_slots.append(self._slots)
            self._slots += 1
        return self._free_slots.pop()

    async def _control(self, message: dict[str, Any]) -> None:
        op, number = message["op"], int(message.get("call", 0))
        try:
            if op == "open":
                call = self.calls[number] = Call(number, self._slot(), self, message.get("ice", []),
                                                 float(message["timeout"]))
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
                    self._rates.release(call.slot)
                    self._free_slots.append(call.slot)
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
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
