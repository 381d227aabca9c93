"""Jingle voice calls as XML, and their mapping to and from SDP (no I/O).

A call is rung with Jingle Message Initiation (XEP-0353: `propose`, `ringing`,
`proceed`, `accept`, `reject`, `retract`, `finish`), then set up as a Jingle session
(XEP-0166) with an RTP description (XEP-0167, with rtcp-fb XEP-0293 and header
extensions XEP-0294), ICE-UDP (XEP-0176), a DTLS-SRTP fingerprint (XEP-0320), BUNDLE
(XEP-0338) and SSRCs (XEP-0339). `to_session` reads a `<jingle>` element into an
`sdp.Session`; `contents` writes a session as `<content>` elements.

Whatever comes from the network is checked: an offer without a DTLS fingerprint is a
`JingleError` with reason `security-error` (no unencrypted calls), an offer with no codec
in common is `incompatible-parameters`, a malformed element is `failed-application`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable
from xml.etree.ElementTree import Element, SubElement

from .sdp import Candidate, Codec, Media, Session, SdpError

JINGLE = "urn:xmpp:jingle:1"
RTP = "urn:xmpp:jingle:apps:rtp:1"
RTP_INFO = "urn:xmpp:jingle:apps:rtp:info:1"
ICE_UDP = "urn:xmpp:jingle:transports:ice-udp:1"
DTLS = "urn:xmpp:jingle:apps:dtls:0"
RTCP_FB = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"
HDREXT = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"
GROUPING = "urn:xmpp:jingle:apps:grouping:0"
SSMA = "urn:xmpp:jingle:apps:rtp:ssma:0"
JMI = "urn:xmpp:jingle-message:0"
HINTS = "urn:xmpp:hints"

REASONS = ("success", "decline", "busy", "cancel", "timeout", "gone", "security-error", "failed-application",
           "failed-transport", "incompatible-parameters", "general-error", "connectivity-error", "media-error")
SUPPORTED = {("opus", 48000), ("pcmu", 8000), ("pcma", 8000)}
"""(codec name in lower case, clock rate) the gateway can send and receive."""
TELEPHONE_EVENT = "telephone-event"
SENDERS = {"both": "sendrecv", "initiator": "sendonly", "responder": "recvonly", "none": "inactive"}
"""A content's `senders`, as the initiator's SDP direction."""


class JingleError(ValueError):
    """A Jingle stanza that cannot be taken: `reason` is the `session-terminate` reason to answer with."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


# -- Jingle to SDP ----------------------------------------------------------------------------
def to_session(jingle: Element, offer: bool) -> Session:
    """The SDP session a `<jingle>` session-initiate (`offer`) or session-accept describes."""
    session = Session()
    try:
        for content in jingle.findall(q(JINGLE, "content")):
            description = content.find(q(RTP, "description"))
            if description is None or description.get("media") != "audio":
                continue
            session.media.append(_media(content, description, offer))
    except SdpError as exc:
        raise JingleError("failed-application", str(exc)) from None
    if not session.media:
        raise JingleError("failed-application", "no audio content")
    group = jingle.find(q(GROUPING, "group"))
    if group is not None and group.get("semantics") == "BUNDLE":
        session.bundle = [c.get("name", "") for c in group.findall(q(GROUPING, "content"))]
    return session


def _media(content: Element, description: Element, offer: bool) -> Media:
    name = content.get("name")
    if not name:
        raise JingleError("failed-application", "a content without a name")
    transport = content.find(q(ICE_UDP, "transport"))
    if transport is None:
        raise JingleError("failed-transport", f"content {name!r} has no ICE-UDP transport")
    fingerprint = transport.find(q(DTLS, "fingerprint"))
    if fingerprint is None or not (fingerprint.text or "").strip():
        raise JingleError("security-error", "no DTLS fingerprint: unencrypted calls are refused")
    codecs = [_codec(payload) for payload in description.findall(q(RTP, "payload-type"))]
    if offer and not any((c.name.lower(), c.clockrate) in SUPPORTED for c in codecs):
        offered = ", ".join(f"{c.name}/{c.clockrate}" for c in codecs) or "none"
        raise JingleError("incompatible-parameters", f"no codec in common (offered: {offered})")
    senders = content.get("senders", "both")
    if senders not in SENDERS:
        raise JingleError("failed-application", f"senders {senders!r}")
    return Media(
        mid=name,
        codecs=codecs,
        direction=_direction(senders, offer),
        ufrag=_required(transport, "ufrag"),
        pwd=_required(transport, "pwd"),
        fingerprint_hash=fingerprint.get("hash", "sha-256").lower(),
        fingerprint=(fingerprint.text or "").strip(),
        setup=fingerprint.get("setup", "actpass" if offer else "active"),
        candidates=[_candidate(c) for c in transport.findall(q(ICE_UDP, "candidate"))],
        rtcp_mux=description.find(q(RTP, "rtcp-mux")) is not None,
        extensions=[(_number(e, "id"), _required(e, "uri")) for e in description.findall(q(HDREXT, "rtp-hdrext"))],
        ssrcs=[(_number(source, "ssrc"), parameter.get("name", ""), parameter.get("value", ""))
               for source in description.findall(q(SSMA, "source"))
               for parameter in source.findall(q(SSMA, "parameter"))],
    )


def _direction(senders: str, offer: bool) -> str:
    """The SDP direction of the party that wrote the stanza (the initiator for an offer)."""
    direction = SENDERS[senders]
    if offer:
        return direction
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(direction, direction)


def _codec(payload: Element) -> Codec:
    return Codec(
        pt=_number(payload, "id"), name=_required(payload, "name"),
        clockrate=_number(payload, "clockrate", 8000), channels=_number(payload, "channels", 1),
        parameters={p.get("name", ""): p.get("value", "") for p in payload.findall(q(RTP, "parameter")) if p.get("name")},
        feedback=[(f.get("type", ""), f.get("subtype", "")) for f in payload.findall(q(RTCP_FB, "rtcp-fb"))],
    )


def _candidate(element: Element) -> Candidate:
    related = element.get("rel-port")
    return Candidate(
        foundation=_required(element, "foundation"), component=_number(element, "component"),
        protocol=element.get("protocol", "udp").lower(), priority=_number(element, "priority"),
        ip=_required(element, "ip"), port=_number(element, "port"), type=element.get("type", "host"),
        generation=_number(element, "generation", 0), related_address=element.get("rel-addr", ""),
        related_port=int(related) if related and related.isdigit() else None,
    )


def candidates(jingle: Element) -> dict[str, list[Candidate]]:
    """The candidates of a transport-info, by content name."""
    found: dict[str, list[Candidate]] = {}
    try:
        for content in jingle.findall(q(JINGLE, "content")):
            transport = content.find(q(ICE_UDP, "transport"))
            if transport is not None:
                found.setdefault(content.get("name", ""), []).extend(
                    _candidate(c) for c in transport.findall(q(ICE_UDP, "candidate")))
    except SdpError as exc:
        raise JingleError("failed-application", str(exc)) from None
    return found


def _required(element: Element, attribute: str) -> str:
    value = element.get(attribute)
    if not value:
        raise JingleError("failed-application", f"<{element.tag.rpartition('}')[2]}> without {attribute}")
    return value


def _number(element: Element, attribute: str, default: int | None = None) -> int:
    value = element.get(attribute)
    if value is None and default is not None:
        return default
    if value is None or not value.isdigit() or len(value) > 10:
        raise JingleError("failed-application", f"<{element.tag.rpartition('}')[2]}> {attribute}={value!r}")
    return int(value)


# -- SDP to Jingle ----------------------------------------------------------------------------
def contents(session: Session, creator: str = "initiator", offer: bool = True) -> list[Element]:
    """The `<content>` elements (and a BUNDLE `<group>` when the session has one) describing `session`."""
    elements = [_content(media, creator, offer) for media in session.media]
    if session.bundle:
        group = Element(q(GROUPING, "group"), semantics="BUNDLE")
        for name in session.bundle:
            SubElement(group, q(GROUPING, "content"), name=name)
        elements.append(group)
    return elements


def _content(media: Media, creator: str, offer: bool) -> Element:
    senders = {value: key for key, value in SENDERS.items()}[_direction_as_initiator(media.direction, offer)]
    content = Element(q(JINGLE, "content"), creator=creator, name=media.mid)
    if senders != "both":
        content.set("senders", senders)
    description = SubElement(content, q(RTP, "description"), media="audio")
    for codec in media.codecs:
        payload = SubElement(description, q(RTP, "payload-type"), id=str(codec.pt), name=codec.name,
                             clockrate=str(codec.clockrate))
        if codec.channels > 1:
            payload.set("channels", str(codec.channels))
        for name, value in codec.parameters.items():
            SubElement(payload, q(RTP, "parameter"), name=name, value=value)
        for kind, subtype in codec.feedback:
            feedback = SubElement(payload, q(RTCP_FB, "rtcp-fb"), type=kind)
            if subtype:
                feedback.set("subtype", subtype)
    for ident, uri in media.extensions:
        SubElement(description, q(HDREXT, "rtp-hdrext"), id=str(ident), uri=uri)
    _sources(description, media.ssrcs)
    if media.rtcp_mux:
        SubElement(description, q(RTP, "rtcp-mux"))
    transport = SubElement(content, q(ICE_UDP, "transport"), ufrag=media.ufrag, pwd=media.pwd)
    if media.fingerprint:
        fingerprint = SubElement(transport, q(DTLS, "fingerprint"), hash=media.fingerprint_hash, setup=media.setup)
        fingerprint.text = media.fingerprint
    for number, candidate in enumerate(media.candidates):
        _candidate_element(transport, candidate, number)
    return content


def _direction_as_initiator(direction: str, offer: bool) -> str:
    if offer:
        return direction
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(direction, direction)


def _sources(description: Element, ssrcs: Iterable[tuple[int, str, str]]) -> None:
    sources: dict[int, Element] = {}
    for ssrc, name, value in ssrcs:
        source = sources.get(ssrc)
        if source is None:
            source = sources[ssrc] = SubElement(description, q(SSMA, "source"), ssrc=str(ssrc))
        SubElement(source, q(SSMA, "parameter"), name=name, value=value)


def _candidate_element(transport: Element, candidate: Candidate, number: int) -> None:
    element = SubElement(transport, q(ICE_UDP, "candidate"), component=str(candidate.component),
                         foundation=candidate.foundation, generation=str(candidate.generation), id=f"c{number}",
                         ip=candidate.ip, network="0", port=str(candidate.port), priority=str(candidate.priority),
                         protocol=candidate.protocol, type=candidate.type)
    if candidate.related_address:
        element.set("rel-addr", candidate.related_address)
        element.set("rel-port", str(candidate.related_port))


# -- Jingle actions ------------------------------------------------------------------------------
def jingle(action: str, sid: str, *, initiator: str = "", responder: str = "",
           children: Iterable[Element] = ()) -> Element:
    element = Element(q(JINGLE, "jingle"), action=action, sid=sid)
    if initiator:
        element.set("initiator", initiator)
    if responder:
        element.set("responder", responder)
    element.extend(children)
    return element


def reason(condition: str, text: str = "") -> Element:
    """`<reason><condition/><text>…</text></reason>` of a session-terminate or a JMI finish."""
    if condition not in REASONS:
        condition = "general-error"
    element = Element(q(JINGLE, "reason"))
    SubElement(element, q(JINGLE, condition))
    if text:
        SubElement(element, q(JINGLE, "text")).text = text
    return element


def read_reason(parent: Element) -> tuple[str, str]:
    """(condition, text) of the `<reason>` in `parent` (a terminate or a finish); ("", "") without one."""
    element = parent.find(q(JINGLE, "reason"))
    if element is None:
        return "", ""
    condition = next((child.tag.rpartition("}")[2] for child in element if child.tag != q(JINGLE, "text")), "")
    text = element.find(q(JINGLE, "text"))
    return condition, (text.text or "") if text is not None else ""


def session_info(kind: str) -> Element:
    """The payload of a session-info: `ringing`, `hold`, `unhold`, `active`, `mute`, `unmute`."""
    return Element(q(RTP_INFO, kind))


def read_session_info(element: Element) -> str:
    """What a session-info says (`hold`, `unhold`, `ringing`, …), or "" for a ping (no payload)."""
    child = next(iter(element), None)
    return child.tag.rpartition("}")[2] if child is not None and child.tag.startswith(f"{{{RTP_INFO}}}") else ""


# -- Jingle Message Initiation --------------------------------------------------------------------
JMI_KINDS = ("propose", "ringing", "proceed", "accept", "reject", "retract", "finish")


@dataclass(frozen=True)
class Jmi:
    """One JMI element of a message: its kind, the session id, and for `propose` whether it offers audio."""

    kind: str
    sid: str
    audio: bool = False
    reason: tuple[str, str] = ("", "")


def jmi(kind: str, sid: str, finish_reason: str = "") -> Element:
    """The JMI element to put in a `<message type='chat'>` (a `propose` offers audio)."""
    element = Element(q(JMI, kind), id=sid)
    if kind == "propose":
        SubElement(element, q(RTP, "description"), media="audio")
    elif kind in ("finish", "retract", "reject") and finish_reason:
        element.append(reason(finish_reason))
    return element


def store_hint() -> Element:
    """`<store xmlns='urn:xmpp:hints'/>`: a propose is kept for an offline device (as Conversations sends it)."""
    return Element(q(HINTS, "store"))


def read_jmi(message: Element) -> Jmi | None:
    """The JMI element a `<message>` carries, if any (None for a malformed one)."""
    for kind in JMI_KINDS:
        element = message.find(q(JMI, kind))
        if element is None:
            continue
        sid = element.get("id", "")
        if not sid or len(sid) > 256:
            return None
        audio = any(d.get("media") == "audio" for d in element.findall(q(RTP, "description")))
        return Jmi(kind, sid, audio, read_reason(element))
    return None
