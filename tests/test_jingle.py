"""Jingle and JMI as XML, and their mapping to SDP: the XEPs' examples, hostile stanzas, and aiortc on both ends."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree

import pytest

from fastagi.network.xmpp import jingle, sdp
from fastagi.network.xmpp.jingle import JingleError

# XEP-0167 example 1 (session-initiate), with the XEP-0176 candidate and the XEP-0320 fingerprint
# of their examples, rtcp-mux (XEP-0167 section 6.1), rtcp-fb (XEP-0293), a header extension
# (XEP-0294), a source (XEP-0339) and BUNDLE (XEP-0338).
XEP_OFFER = """
<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' initiator='romeo@montague.lit/orchard' sid='a73sjjvkla37jfea'>
  <content creator='initiator' name='voice'>
    <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
      <payload-type id='96' name='speex' clockrate='16000'/>
      <payload-type id='97' name='speex' clockrate='8000'/>
      <payload-type id='18' name='G729'/>
      <payload-type id='0' name='PCMU'/>
      <payload-type id='111' name='opus' clockrate='48000' channels='2'>
        <parameter name='minptime' value='10'/>
        <parameter name='useinbandfec' value='1'/>
        <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
      </payload-type>
      <payload-type id='101' name='telephone-event' clockrate='8000'/>
      <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1' uri='urn:ietf:params:rtp-hdrext:ssrc-audio-level'/>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1656081975'>
        <parameter name='cname' value='Yv/wvbCdsDW2Prgd'/>
      </source>
      <rtcp-mux/>
    </description>
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' pwd='asd88fgpdd777uzjYhagZg' ufrag='8hhy'>
      <candidate component='1' foundation='1' generation='0' id='el0747fg11' ip='10.0.1.1' network='1' port='8998'
                 priority='2130706431' protocol='udp' type='host'/>
      <candidate component='1' foundation='2' generation='0' id='y3s2b30v3r' ip='192.0.2.3' network='1' port='45664'
                 priority='1694498815' protocol='udp' rel-addr='10.0.1.1' rel-port='8998' type='srflx'/>
      <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>02:1A:CC:54:27:AB:EB:9C:53:3F:3E:4B:65:2E:7D:46:3F:54:42:CD:54:F1:7A:03:A2:7D:F9:B0:7F:46:19:B2</fingerprint>
    </transport>
  </content>
  <group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'><content name='voice'/></group>
</jingle>
"""


def parse(text: str) -> ElementTree.Element:
    return ElementTree.fromstring(text)


def test_the_xep_offer_becomes_an_sdp_session() -> None:
    session = jingle.to_session(parse(XEP_OFFER), offer=True)
    audio = session.audio
    assert session.bundle == ["voice"]
    assert [(c.pt, c.name, c.clockrate, c.channels) for c in audio.codecs] == [
        (96, "speex", 16000, 1), (97, "speex", 8000, 1), (18, "G729", 8000, 1), (0, "PCMU", 8000, 1),
        (111, "opus", 48000, 2), (101, "telephone-event", 8000, 1)]
    opus = audio.codecs[4]
    assert opus.parameters == {"minptime": "10", "useinbandfec": "1"} and opus.feedback == [("transport-cc", "")]
    assert (audio.mid, audio.ufrag, audio.pwd, audio.setup, audio.fingerprint_hash) == (
        "voice", "8hhy", "asd88fgpdd777uzjYhagZg", "actpass", "sha-256")
    assert audio.fingerprint.startswith("02:1A:CC") and audio.rtcp_mux and audio.direction == "sendrecv"
    assert audio.extensions == [(1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level")]
    assert audio.ssrcs == [(1656081975, "cname", "Yv/wvbCdsDW2Prgd")]
    srflx = audio.candidates[1]
    assert (srflx.foundation, srflx.ip, srflx.port, srflx.type, srflx.related_address, srflx.related_port) == (
        "2", "192.0.2.3", 45664, "srflx", "10.0.1.1", 8998)
    text = sdp.write(session)
    assert "a=rtpmap:111 opus/48000/2" in text and "a=fmtp:111 minptime=10;useinbandfec=1" in text
    assert "a=candidate:2 1 udp 1694498815 192.0.2.3 45664 typ srflx raddr 10.0.1.1 rport 8998 generation 0" in text
    assert "a=group:BUNDLE voice" in text and "a=setup:actpass" in text


def test_sdp_to_jingle_to_sdp_keeps_what_matters() -> None:
    session = jingle.to_session(parse(XEP_OFFER), offer=True)
    offer = jingle.jingle("session-initiate", "s1", initiator="a@b/c", children=jingle.contents(session))
    again = jingle.to_session(parse(ElementTree.tostring(offer)), offer=True)
    assert again == session
    assert sdp.parse(sdp.write(session)) == session


@pytest.mark.parametrize("change, reason, text", [
    (lambda x: x.replace("<fingerprint", "<ignored").replace("</fingerprint>", "</ignored>"), "security-error",
     "no DTLS fingerprint: unencrypted calls are refused"),
    (lambda x: "".join(line for line in x.splitlines(keepends=True) if "payload-type id='111'" not in line
                       and "payload-type id='0'" not in line and "parameter" not in line and "rtcp-fb" not in line
                       and "</payload-type>" not in line), "incompatible-parameters", "no codec in common"),
    (lambda x: x.replace("media='audio'", "media='video'"), "failed-application", "no audio content"),
    (lambda x: x.replace("port='8998'", "port='eighty'"), "failed-application", "port='eighty'"),
    (lambda x: x.replace(" ufrag='8hhy'", ""), "failed-application", "without ufrag"),
    (lambda x: x.replace("<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'",
                         "<transport xmlns='urn:xmpp:jingle:transports:raw-udp:1'"), "failed-transport", "no ICE-UDP"),
    (lambda x: x.replace("id='96'", "id='-96'"), "failed-application", "id='-96'"),
    (lambda x: x.replace("name='voice'>", ">", 1), "failed-application", "a content without a name"),
])
def test_a_bad_offer_is_refused_with_a_reason(change, reason: str, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(JingleError) as refused:
        jingle.to_session(parse(change(XEP_OFFER)), offer=True)
    assert refused.value.reason == reason and text in refused.value.text


def test_transport_info_candidates_and_session_info() -> None:
    info = parse("<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='s'>"
                 "<content creator='initiator' name='0'><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' "
                 "ufrag='u' pwd='p'><candidate component='1' foundation='4' generation='0' id='x' ip='2001:db8::1' "
                 "network='0' port='5000' priority='100' protocol='UDP' type='relay' rel-addr='198.51.100.1' "
                 "rel-port='9'/></transport></content></jingle>")
    [candidate] = jingle.candidates(info)["0"]
    assert (candidate.ip, candidate.protocol, candidate.type, candidate.related_port) == ("2001:db8::1", "udp", "relay", 9)
    hold = jingle.jingle("session-info", "s", children=[jingle.session_info("hold")])
    assert jingle.read_session_info(parse(ElementTree.tostring(hold))) == "hold"
    assert jingle.read_session_info(jingle.jingle("session-info", "s")) == ""


def test_terminate_reasons_both_ways() -> None:
    terminate = jingle.jingle("session-terminate", "s", children=[jingle.reason("security-error", "no fingerprint")])
    assert ElementTree.tostring(terminate) == (
        b'<ns0:jingle xmlns:ns0="urn:xmpp:jingle:1" action="session-terminate" sid="s"><ns0:reason>'
        b'<ns0:security-error /><ns0:text>no fingerprint</ns0:text></ns0:reason></ns0:jingle>')
    assert jingle.read_reason(terminate) == ("security-error", "no fingerprint")
    assert jingle.read_reason(jingle.jingle("session-terminate", "s", children=[jingle.reason("bogus")])) == (
        "general-error", "")


# JMI as XEP-0353 shows it (version 0.4, namespace urn:xmpp:jingle-message:0, as Conversations and Dino send it).
def test_jmi_messages() -> None:
    propose = parse("<message xmlns='jabber:client' type='chat' to='juliet@capulet.example'>"
                    "<propose xmlns='urn:xmpp:jingle-message:0' id='ca3cf894-5325-482f-a412-a6e9f832298d'>"
                    "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>"
                    "<store xmlns='urn:xmpp:hints'/></message>")
    assert jingle.read_jmi(propose) == jingle.Jmi("propose", "ca3cf894-5325-482f-a412-a6e9f832298d", True)
    finish = parse("<message xmlns='jabber:client'><finish xmlns='urn:xmpp:jingle-message:0' id='x'>"
                   "<reason xmlns='urn:xmpp:jingle:1'><success/><text>bye</text></reason></finish></message>")
    assert jingle.read_jmi(finish) == jingle.Jmi("finish", "x", False, ("success", "bye"))
    assert jingle.read_jmi(parse("<message xmlns='jabber:client'><proceed xmlns='urn:xmpp:jingle-message:0'/></message>")) is None
    assert jingle.read_jmi(parse("<message xmlns='jabber:client'><body>hi</body></message>")) is None
    made = jingle.jmi("propose", "s9")
    assert ElementTree.tostring(made) == (
        b'<ns0:propose xmlns:ns0="urn:xmpp:jingle-message:0" xmlns:ns1="urn:xmpp:jingle:apps:rtp:1" id="s9">'
        b'<ns1:description media="audio" /></ns0:propose>')


def test_aiortc_on_both_ends_through_jingle() -> None:
    """An offer and an answer made by aiortc cross as Jingle bytes, and DTLS-SRTP comes up and carries audio."""
    aiortc = pytest.importorskip("aiortc")
    from aiortc.mediastreams import AudioStreamTrack

    async def scenario() -> None:
        caller = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        callee = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        caller.addTrack(AudioStreamTrack())
        received = asyncio.get_running_loop().create_future()
        callee.on("track", lambda track: received.set_result(track))
        await caller.setLocalDescription(await caller.createOffer())
        offer = jingle.jingle("session-initiate", "s", initiator="a@x/1",
                              children=jingle.contents(sdp.parse(caller.localDescription.sdp)))
        offer_sdp = sdp.write(jingle.to_session(parse(ElementTree.tostring(offer)), offer=True))
        await callee.setRemoteDescription(aiortc.RTCSessionDescription(offer_sdp, "offer"))
        callee.addTrack(AudioStreamTrack())
        await callee.setLocalDescription(await callee.createAnswer())
        answer = jingle.jingle("session-accept", "s", responder="b@x/1",
                               children=jingle.contents(sdp.parse(callee.localDescription.sdp), "initiator", offer=False))
        answer_sdp = sdp.write(jingle.to_session(parse(ElementTree.tostring(answer)), offer=False))
        await caller.setRemoteDescription(aiortc.RTCSessionDescription(answer_sdp, "answer"))
        track = await asyncio.wait_for(received, 5)
        frame = await asyncio.wait_for(track.recv(), 5)
        assert frame.sample_rate in (8000, 48000)
        assert caller.sctp is None and caller.connectionState in ("connecting", "connected")
        for _ in range(100):
            if caller.connectionState == "connected" and callee.connectionState == "connected":
                break
            await asyncio.sleep(0.02)
        assert (caller.connectionState, callee.connectionState) == ("connected", "connected")
        await caller.close()
        await callee.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))
