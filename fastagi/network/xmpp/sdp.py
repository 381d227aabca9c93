"""The part of SDP a voice call uses, as data (no I/O).

WebRTC stacks (aiortc here) speak SDP; Jingle carries the same facts as XML
(`jingle.py`). This module reads an SDP offer or answer with audio into a `Session` and
writes one back: codecs with their parameters and feedback, header extensions, ICE
credentials and candidates, the DTLS fingerprint and setup role, rtcp-mux, SSRCs,
direction and the BUNDLE group. Anything else in the SDP is left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class SdpError(ValueError):
    """SDP that cannot describe a voice call; the text says why."""


@dataclass
class Codec:
    pt: int
    name: str
    clockrate: int
    channels: int = 1
    parameters: dict[str, str] = field(default_factory=dict)
    feedback: list[tuple[str, str]] = field(default_factory=list)  # (type, subtype)


@dataclass
class Candidate:
    foundation: str
    component: int
    protocol: str
    priority: int
    ip: str
    port: int
    type: str
    generation: int = 0
    related_address: str = ""
    related_port: int | None = None
    tcptype: str = ""

    def to_sdp(self) -> str:
        text = f"candidate:{self.foundation} {self.component} {self.protocol} {self.priority} {self.ip} {self.port} typ {self.type}"
        if self.related_address:
            text += f" raddr {self.related_address} rport {self.related_port}"
        if self.tcptype:
            text += f" tcptype {self.tcptype}"
        return text + f" generation {self.generation}"

    @classmethod
    def from_sdp(cls, text: str) -> Candidate:
        words = text.removeprefix("candidate:").split()
        if len(words) < 8 or words[6] != "typ":
            raise SdpError(f"not an ICE candidate: {text[:80]!r}")
        options = dict(zip(words[8::2], words[9::2]))
        try:
            return cls(words[0], int(words[1]), words[2].lower(), int(words[3]), words[4], int(words[5]), words[7],
                       int(options.get("generation", 0)), options.get("raddr", ""),
                       int(options["rport"]) if "rport" in options else None, options.get("tcptype", ""))
        except ValueError:
            raise SdpError(f"not an ICE candidate: {text[:80]!r}") from None


@dataclass
class Media:
    """One m=audio section."""

    mid: str = "0"
    codecs: list[Codec] = field(default_factory=list)
    direction: str = "sendrecv"
    ufrag: str = ""
    pwd: str = ""
    fingerprint_hash: str = ""
    fingerprint: str = ""
    setup: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    rtcp_mux: bool = False
    extensions: list[tuple[int, str]] = field(default_factory=list)  # (id, uri)
    ssrcs: list[tuple[int, str, str]] = field(default_factory=list)  # (ssrc, attribute, value)


@dataclass
class Session:
    media: list[Media] = field(default_factory=list)
    bundle: list[str] = field(default_factory=list)

    @property
    def audio(self) -> Media:
        if not self.media:
            raise SdpError("no audio in the session")
        return self.media[0]


DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
STATIC = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
"""Payload types RFC 3551 defines, which an SDP may list without an rtpmap."""


def parse(text: str) -> Session:
    """The audio sections of an SDP (other media are skipped); `SdpError` for what is not SDP."""
    session = Session()
    media: Media | None = None
    skipping = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            words = value.split()
            skipping = not words or words[0] != "audio"
            if not skipping:
                media = Media(mid=str(len(session.media)))
                session.media.append(media)
                formats = words[3:]
                media.codecs = [Codec(pt, *STATIC.get(pt, ("", 0))) for pt in (_int(f, "payload type") for f in formats)]
            continue
        if kind != "a":
            continue
        name, _, rest = value.partition(":")
        if media is None:
            if name == "group" and rest.startswith("BUNDLE"):
                session.bundle = rest.split()[1:]
            continue
        if not skipping:
            _media_attribute(media, name, rest)
    for media in session.media:
        media.codecs = [codec for codec in media.codecs if codec.name]  # formats with no rtpmap are static ones we skip
    return session


def _media_attribute(media: Media, name: str, value: str) -> None:
    if name == "mid":
        media.mid = value
    elif name in DIRECTIONS:
        media.direction = name
    elif name == "rtpmap":
        pt, _, spec = value.partition(" ")
        parts = spec.split("/")
        codec = _codec(media, pt)
        codec.name = parts[0]
        codec.clockrate = _int(parts[1], "clock rate") if len(parts) > 1 else 8000
        codec.channels = _int(parts[2], "channels") if len(parts) > 2 else 1
    elif name == "fmtp":
        pt, _, spec = value.partition(" ")
        codec = _codec(media, pt)
        for item in spec.split(";"):
            key, sep, val = item.strip().partition("=")
            if key:
                codec.parameters[key] = val if sep else ""
    elif name == "rtcp-fb":
        pt, _, spec = value.partition(" ")
        kind, _, subtype = spec.partition(" ")
        if pt != "*":
            _codec(media, pt).feedback.append((kind, subtype))
    elif name == "extmap":
        ident, _, uri = value.partition(" ")
        media.extensions.append((_int(ident.split("/")[0], "extension id"), uri.split()[0] if uri else ""))
    elif name == "ice-ufrag":
        media.ufrag = value
    elif name == "ice-pwd":
        media.pwd = value
    elif name == "fingerprint":
        hash_name, _, fingerprint = value.partition(" ")
        media.fingerprint_hash, media.fingerprint = hash_name.lower(), fingerprint.strip()
    elif name == "setup":
        media.setup = value
    elif name == "candidate":
        media.candidates.append(Candidate.from_sdp(value))
    elif name == "rtcp-mux":
        media.rtcp_mux = True
    elif name == "ssrc":
        ssrc, _, attribute = value.partition(" ")
        attr, _, attr_value = attribute.partition(":")
        media.ssrcs.append((_int(ssrc, "ssrc"), attr, attr_value))


def _codec(media: Media, pt: str) -> Codec:
    number = _int(pt, "payload type")
    for codec in media.codecs:
        if codec.pt == number:
            return codec
    codec = Codec(number, "", 0)
    media.codecs.append(codec)
    return codec


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SdpError(f"{what} {text[:20]!r} is not a number") from None


def write(session: Session) -> str:
    """The SDP text of `session` (one audio section per media, UDP/TLS/RTP/SAVPF)."""
    lines = ["v=0", "o=- 0 0 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    if session.bundle:
        lines.append("a=group:BUNDLE " + " ".join(session.bundle))
    for media in session.media:
        lines += _media_lines(media)
    return "\r\n".join(lines) + "\r\n"


def _media_lines(media: Media) -> list[str]:
    lines = [f"m=audio 9 UDP/TLS/RTP/SAVPF {' '.join(str(c.pt) for c in media.codecs)}", "c=IN IP4 0.0.0.0",
             f"a=mid:{media.mid}", f"a={media.direction}"]
    lines += [f"a=extmap:{ident} {uri}" for ident, uri in media.extensions]
    if media.rtcp_mux:
        lines.append("a=rtcp-mux")
    for codec in media.codecs:
        channels = f"/{codec.channels}" if codec.channels > 1 else ""
        lines.append(f"a=rtpmap:{codec.pt} {codec.name}/{codec.clockrate}{channels}")
        if codec.parameters:
            lines.append(f"a=fmtp:{codec.pt} " + ";".join(f"{k}={v}" if v else k for k, v in codec.parameters.items()))
        lines += [f"a=rtcp-fb:{codec.pt} {kind}{' ' + sub if sub else ''}" for kind, sub in codec.feedback]
    lines += [f"a=ssrc:{ssrc} {attribute}:{value}" if value else f"a=ssrc:{ssrc} {attribute}"
              for ssrc, attribute, value in media.ssrcs]
    lines += [f"a=ice-ufrag:{media.ufrag}", f"a=ice-pwd:{media.pwd}"]
    if media.fingerprint:
        lines.append(f"a=fingerprint:{media.fingerprint_hash} {media.fingerprint}")
    if media.setup:
        lines.append(f"a=setup:{media.setup}")
    lines += [f"a={candidate.to_sdp()}" for candidate in media.candidates]
    lines.append("a=end-of-candidates")
    return lines
