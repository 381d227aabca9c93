"""An XMPP user with a phone, for the call tests: slixmpp and aiortc, and none of the gateway's code.

Its Jingle is written here from aiortc's own SDP objects (`aiortc.sdp`), so a mistake
of the gateway's mapping cannot hide behind the same mistake on this side. It answers
(`answer`), refuses (`refuse`) or ignores (`ignore`) a call, echoes what it hears or
plays a tone, holds, sends RFC 4733 digits, and calls the gateway, with or without a
DTLS fingerprint.
"""

from __future__ import annotations

import asyncio
import fractions
import struct
import uuid
from typing import Any
from xml.etree.ElementTree import Element, SubElement

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .peers import Peer

JINGLE, RTP, ICE, DTLS, JMI = ("urn:xmpp:jingle:1", "urn:xmpp:jingle:apps:rtp:1", "urn:xmpp:jingle:transports:ice-udp:1",
                              "urn:xmpp:jingle:apps:dtls:0", "urn:xmpp:jingle-message:0")
INFO = "urn:xmpp:jingle:apps:rtp:info:1"


class ToneTrack(MediaStreamTrack):
    """A sine at `freq` (or silence), 20 ms frames at 48 kHz mono, paced in real time."""

    kind = "audio"

    def __init__(self, freq: float = 0.0, amplitude: float = 0.3) -> None:
        super().__init__()
        self.freq, self.amplitude, self._sample, self._start = freq, amplitude, 0, None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        self._start = self._start or loop.time()
        await asyncio.sleep(max(0.0, self._start + self._sample / 48000 - loop.time()))
        n = np.arange(self._sample, self._sample + 960)
        samples = (self.amplitude * 32767 * np.sin(2 * np.pi * self.freq * n / 48000)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._sample, fractions.Fraction(1, 48000)
        self._sample += 960
        return frame


class EchoTrack(MediaStreamTrack):
    """Says back what it hears."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.source: MediaStreamTrack | None = None
        self._silence = ToneTrack()

    async def recv(self) -> av.AudioFrame:
        if self.source is None:
            return await self._silence.recv()
        return await self.source.recv()


def prefer(pc: RTCPeerConnection, codec: str) -> None:
    """Offer or answer only `codec` (a name such as PCMU or opus)."""
    codecs = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == f"audio/{codec.lower()}"]
    pc.getTransceivers()[0].setCodecPreferences(codecs)


def sdp_to_contents(text: str, creator: str = "initiator", fingerprint: bool = True,
                    telephone_events: tuple[tuple[int, int], ...] = ((101, 8000), (110, 48000))) -> list[Element]:
    """Jingle contents from aiortc's SDP (its own parser)."""
    description = SessionDescription.parse(text)
    elements = []
    for media in description.media:
        content = Element(f"{{{JINGLE}}}content", creator=creator, name=str(media.rtp.muxId or "0"))
        desc = SubElement(content, f"{{{RTP}}}description", media="audio")
        for codec in media.rtp.codecs:
            payload = SubElement(desc, f"{{{RTP}}}payload-type", id=str(codec.payloadType),
                                 name=codec.mimeType.split("/")[1], clockrate=str(codec.clockRate))
            if codec.channels and codec.channels > 1:
                payload.set("channels", str(codec.channels))
        for pt, rate in telephone_events:
            SubElement(desc, f"{{{RTP}}}payload-type", id=str(pt), name="telephone-event", clockrate=str(rate))
        if media.rtcp_mux:
            SubElement(desc, f"{{{RTP}}}rtcp-mux")
        transport = SubElement(content, f"{{{ICE}}}transport", ufrag=media.ice.usernameFragment, pwd=media.ice.password)
        if fingerprint:
            role = {"auto": "actpass", "client": "active", "server": "passive"}[media.dtls.role]
            print_ = SubElement(transport, f"{{{DTLS}}}fingerprint", hash=media.dtls.fingerprints[0].algorithm, setup=role)
            print_.text = media.dtls.fingerprints[0].value
        for number, candidate in enumerate(media.ice_candidates):
            SubElement(transport, f"{{{ICE}}}candidate", component=str(candidate.component),
                       foundation=candidate.foundation, generation="0", id=f"k{number}", ip=candidate.ip, network="0",
                       port=str(candidate.port), priority=str(candidate.priority), protocol=candidate.protocol,
                       type=candidate.type)
        elements.append(content)
    return elements


def contents_to_sdp(jingle: Element) -> tuple[str, dict[int, int]]:
    """An SDP aiortc takes from Jingle contents, and the telephone-event payload types they offer with their rates."""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    events: dict[int, int] = {}
    for content in jingle.findall(f"{{{JINGLE}}}content"):
        desc = content.find(f"{{{RTP}}}description")
        transport = content.find(f"{{{ICE}}}transport")
        payloads = desc.findall(f"{{{RTP}}}payload-type")
        events |= {int(p.get("id")): int(p.get("clockrate", "8000")) for p in payloads if p.get("name") == "telephone-event"}
        lines += [f"m=audio 9 UDP/TLS/RTP/SAVPF {' '.join(p.get('id') for p in payloads)}", "c=IN IP4 0.0.0.0",
                  f"a=mid:{content.get('name')}", "a=sendrecv"]
        for p in payloads:
            channels = f"/{p.get('channels')}" if p.get("channels") else ""
            lines.append(f"a=rtpmap:{p.get('id')} {p.get('name')}/{p.get('clockrate', '8000')}{channels}")
        if desc.find(f"{{{RTP}}}rtcp-mux") is not None:
            lines.append("a=rtcp-mux")
        lines += [f"a=ice-ufrag:{transport.get('ufrag')}", f"a=ice-pwd:{transport.get('pwd')}"]
        fingerprint = transport.find(f"{{{DTLS}}}fingerprint")
        lines += [f"a=fingerprint:{fingerprint.get('hash')} {fingerprint.text}", f"a=setup:{fingerprint.get('setup')}"]
        for c in transport.findall(f"{{{ICE}}}candidate"):
            lines.append(f"a=candidate:{c.get('foundation')} {c.get('component')} {c.get('protocol')} "
                         f"{c.get('priority')} {c.get('ip')} {c.get('port')} typ {c.get('type')}")
    return "\r\n".join(lines) + "\r\n", events


class CallPeer(Peer):
    """A peer that takes and makes calls (see the module doc)."""

    def __init__(self, *args: Any, on_call: str = "answer", voice: float = 0.0, codec: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.codec = codec  # the one codec it answers with (e.g. PCMU), else aiortc's choice
        self.on_call = on_call  # answer | echo | refuse | ignore | vanish (answers, then is never heard on the wire)
        self.voice = voice  # the tone it says (Hz), 0: silence
        self.pc: RTCPeerConnection | None = None
        self.sid = ""
        self.caller = ""
        self.jingles: list[Element] = []
        self.events: list[str] = []  # JMI and Jingle actions it received, in order
        self.heard = bytearray()  # 16 kHz mono of what it received
        self.digits: list[str] = []
        self.event_pts: dict[int, int] = {}
        self.codec_rate = 8000
        self.connected = asyncio.Event()
        self.register_handler(Callback("peer jingle", MatchXPath(f"{{jabber:client}}iq/{{{JINGLE}}}jingle"), self._iq))
        for kind in ("propose", "retract", "proceed", "reject", "ringing", "finish", "accept"):
            self.register_handler(Callback(f"peer jmi {kind}", MatchXPath(f"{{jabber:client}}message/{{{JMI}}}{kind}"),
                                           self._jmi))

    # -- being called -------------------------------------------------------------------------
    def _jmi(self, message: Any) -> None:
        element = next(child for child in message.xml if child.tag.startswith(f"{{{JMI}}}"))
        kind = element.tag.rpartition("}")[2]
        self.events.append(kind)
        if kind == "propose":
            self.sid, self.caller = element.get("id"), message["from"].full
            if self.on_call == "refuse":
                self._jmi_send(self.caller, "reject")
            elif self.on_call in ("answer", "echo", "vanish"):
                self._jmi_send(self.caller, "ringing")
                self._jmi_send(self.caller, "proceed")
        elif kind == "proceed":
            asyncio.ensure_future(self._initiate(message["from"].full))

    def _iq(self, iq: Any) -> None:
        jingle = iq.xml.find(f"{{{JINGLE}}}jingle")
        self.jingles.append(jingle)
        action = jingle.get("action")
        self.events.append(action)
        iq.reply().send()
        if action == "session-initiate":
            asyncio.ensure_future(self._accept(iq["from"].full, jingle))
        elif action == "session-accept":
            answer, self.event_pts = contents_to_sdp(jingle)
            self.codec_rate = next(int(p.get("clockrate", "8000")) for p in jingle.iter(f"{{{RTP}}}payload-type")
                                   if p.get("name") != "telephone-event")
            asyncio.ensure_future(self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer")))

    async def _accept(self, caller: str, jingle: Element) -> None:
        offer, self.event_pts = contents_to_sdp(jingle)
        self.pc = self._peer_connection()
        if self.codec:
            prefer(self.pc, self.codec)  # before the offer is set: the answer's codecs are chosen then
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.codec_rate = SessionDescription.parse(self.pc.localDescription.sdp).media[0].rtp.codecs[0].clockRate
        accept = Element(f"{{{JINGLE}}}jingle", action="session-accept", sid=jingle.get("sid"), responder=str(self.boundjid))
        offered = tuple((int(p.get("id")), int(p.get("clockrate", "8000")))
                        for p in jingle.iter(f"{{{RTP}}}payload-type") if p.get("name") == "telephone-event")
        accept.extend(sdp_to_contents(self.pc.localDescription.sdp, telephone_events=offered))
        if self.on_call == "vanish":
            self.vanish()
        await self._send_iq(caller, accept)

    # -- calling ---------------------------------------------------------------------------------
    def call(self, to: str, fingerprint: bool = True) -> None:
        self.sid = uuid.uuid4().hex
        self.fingerprint = fingerprint
        message = self.make_message(mto=to, mtype="chat")
        propose = SubElement(message.xml, f"{{{JMI}}}propose", id=self.sid)
        SubElement(propose, f"{{{RTP}}}description", media="audio")
        message.send()

    async def _initiate(self, callee: str) -> None:
        self.pc = self._peer_connection()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = Element(f"{{{JINGLE}}}jingle", action="session-initiate", sid=self.sid, initiator=str(self.boundjid))
        offer.extend(sdp_to_contents(self.pc.localDescription.sdp, fingerprint=getattr(self, "fingerprint", True)))
        await self._send_iq(callee, offer)

    # -- in a call ------------------------------------------------------------------------------
    def _peer_connection(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.echo_track = EchoTrack() if self.on_call == "echo" else None
        pc.addTrack(self.echo_track or ToneTrack(self.voice))
        pc.on("track", lambda track: asyncio.ensure_future(self._listen(track)))
        pc.on("connectionstatechange", lambda: self.connected.set() if pc.connectionState == "connected" else None)
        return pc

    async def _listen(self, track: MediaStreamTrack) -> None:
        self._hook_events()
        self._renumber_outgoing()
        if self.echo_track is not None:
            self.echo_track.source = track
            return
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        try:
            while True:
                for frame in resampler.resample(await track.recv()):
                    self.heard += frame.to_ndarray().tobytes()
        except MediaStreamError:
            pass

    def _hook_events(self) -> None:
        """Telephone-events the far end sends, read here (aiortc drops a payload type it has no codec for)."""
        receiver = self.pc.getTransceivers()[0].receiver
        transport = receiver.transport
        handle = receiver._handle_rtp_packet
        seen: set[int] = set()

        async def receive(packet: Any, arrival_time_ms: int) -> None:
            if packet.payload_type in self.event_pts:
                event = packet.payload[0]
                if packet.timestamp not in seen and event < 16:
                    seen.add(packet.timestamp)
                    self.digits.append("0123456789*#ABCD"[event])
                return
            await handle(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = receive
        transport._rtp_router.register_receiver(receiver, ssrcs=[], payload_types=sorted(self.event_pts))

    def _renumber_outgoing(self) -> None:
        """Own sequence numbers on everything the call sends, so hand-made packets fit between aiortc's."""
        transport = self.pc.getTransceivers()[0].sender.transport
        send = transport._send_rtp
        self._last = (0, 0)  # (sequence, timestamp) of the last RTP packet sent

        async def renumbered(data: bytes) -> None:
            if 192 <= data[1] <= 223:  # RTCP
                await send(data)
                return
            sequence = (self._last[0] + 1) & 0xFFFF if self._last != (0, 0) else int.from_bytes(data[2:4], "big")
            timestamp = int.from_bytes(data[4:8], "big") if (data[1] & 0x7F) not in self.event_pts else self._last[1]
            self._last = (sequence, timestamp)
            await send(data[:2] + sequence.to_bytes(2, "big") + data[4:])

        transport._send_rtp = renumbered

    async def send_digit(self, digit: str) -> None:
        """One RFC 4733 digit by hand: 5 packets of 20 ms, then 3 end packets, at the audio's timestamp."""
        sender = self.pc.getTransceivers()[0].sender
        pt = next(pt for pt, rate in sorted(self.event_pts.items()) if rate == self.codec_rate)
        event = "0123456789*#ABCD".index(digit)
        timestamp = self._last[1]
        for n in range(1, 9):
            payload = struct.pack("!BBH", event, (0x80 if n >= 6 else 0) | 10, min(n, 5) * 160)
            header = struct.pack("!BBHII", 0x80, (0x80 if n == 1 else 0) | pt, 0, timestamp, sender._ssrc)
            await sender.transport._send_rtp(header + payload)
            await asyncio.sleep(0.02)

    def hold(self, on: bool = True) -> None:
        info = Element(f"{{{JINGLE}}}jingle", action="session-info", sid=self.sid)
        SubElement(info, f"{{{INFO}}}{'hold' if on else 'unhold'}")
        asyncio.ensure_future(self._send_iq(self.caller or self.callee, info))

    def vanish(self) -> None:
        """Drop off the network with no goodbye: its media sockets close, nothing more is sent or received."""
        for transceiver in self.pc.getTransceivers():
            for protocol in transceiver.sender.transport.transport._connection._protocols:
                protocol.transport.close()

    def hang_up(self) -> None:
        terminate = Element(f"{{{JINGLE}}}jingle", action="session-terminate", sid=self.sid)
        SubElement(SubElement(terminate, f"{{{JINGLE}}}reason"), f"{{{JINGLE}}}success")
        asyncio.ensure_future(self._send_iq(self.caller or self.callee, terminate))

    async def _send_iq(self, to: str, jingle: Element) -> None:
        if jingle.get("action") in ("session-initiate",):
            self.callee = to
        iq = self.make_iq_set(ito=to)
        iq.xml.append(jingle)
        await iq.send(timeout=10)

    def _jmi_send(self, to: str, kind: str) -> None:
        message = self.make_message(mto=to, mtype="chat")
        SubElement(message.xml, f"{{{JMI}}}{kind}", id=self.sid)
        message.send()

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        await super().close()


async def call_peer(server: Any, name: str, **behaviour: Any) -> CallPeer:
    return await CallPeer(server, server.register(name, "secret"), "secret", **behaviour).online()
