"""Voice calls of one XMPP account: ringing with JMI, the Jingle session, and its media in the worker.

Outgoing: `propose` goes to the contact's bare JID (every device rings); `ringing` makes
the call RINGING; the device that answers sends `proceed`, and gets the session-initiate
with the worker's offer; its session-accept makes the call INPROGRESS. `reject` is
REFUSED (BUSY with reason busy), no answer within `ring_timeout` is MISSED (a `retract`
tells the devices), an error for the propose is FAILED.

Incoming: a contact's `propose` rings the account and is answered `ringing`;
`call-answer` sends `proceed` (and `accept` to the account's other devices), then the
contact's session-initiate is answered with session-accept; `call-hangup` sends
`reject`. A session-initiate without JMI (older clients) rings the account the same way.

Voicemail (`call-vm`, or `unanswered = voicemail`): the gateway answers the call itself
(VM_BUFFERING_GREETING), plays the account's greeting and a beep (VM_PLAYING_GREETING),
records the caller (VM_RECORDING) until the caller hangs up, the account hangs up or the
message reaches `voicemail_max` (VM_UPLOADING), and the message is kept (VM_SENT, with
its file and length for the Voicemail event). XMPP has no voicemail of its own.

In a call: hold is session-info `hold`/`unhold`, DTMF is RFC 4733 in the worker, hanging
up is session-terminate and a JMI `finish`. An offer the worker cannot take (no DTLS
fingerprint, no codec in common, malformed) is answered with session-terminate and its
reason, and the call FAILS with that reason.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from xml.etree.ElementTree import Element

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.jid import JID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from ...model.calls import Call, CallEvent
from ...model.errors import SkypeError
from ..driver import CallAudio, Endpoint, Voicemail
from . import jingle, sdp
from .jingle import Jmi, JingleError
from .mediaclient import MediaWorker

log = logging.getLogger("fastagi.network.xmpp")
E = CallEvent

TELEPHONE_EVENTS = (sdp.Codec(101, "telephone-event", 8000), sdp.Codec(102, "telephone-event", 48000))
"""What the gateway's offers add to aiortc's codecs (which do not know telephone-event)."""
MAX_CALLS_PER_CONTACT = 2
"""Calls one contact may have with the account at once: more are answered busy (a flood of proposes rings nothing)."""
SETUP_TIMEOUT = 10.0
"""Seconds the other side has to go on with a call it said yes to (session-initiate, session-accept)."""


@dataclass
class Session:
    """What the account knows of one call on the wire."""

    sid: str
    call_id: int
    bare: str
    outgoing: bool
    peer: str = ""  # the full JID of the device in the call, once one answered
    media: int | None = None  # the worker's number of the call
    offer: str = ""  # an incoming session-initiate's SDP, until it is answered
    answered: bool = False  # call-answer was given (incoming)
    voicemail: bool = False  # answered by the gateway's voicemail
    recording: bool = False  # the voicemail records the caller
    active: bool = False
    timer: asyncio.TimerHandle | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


@dataclass(frozen=True)
class CallSettings:
    """What the calls of every account share: the media engine's side, the media worker, the gateway's voicemail,
    the ring time, and how long media may take to come up or stay silent on the wire."""

    audio: CallAudio
    worker: Callable[[], Any]
    voicemail: Voicemail
    ring_timeout: float = 30.0
    media_timeout: float = 20.0


@dataclass(frozen=True)
class CallPolicy:
    """One account's own ways with calls."""

    ice_servers: Callable[[], list[dict[str, Any]]]
    takes_call_from: Callable[[str], bool]
    greeting: Path | None = None
    voicemail_max: float = 120.0


class XmppCalls:
    """The calls of one account (`name`), over its slixmpp client."""

    def __init__(self, name: str, client: Any, endpoint: Endpoint, settings: CallSettings, policy: CallPolicy) -> None:
        self.name = name
        self.client = client
        self.endpoint = endpoint
        self.audio = settings.audio
        self._worker = settings.worker  # the network's MediaWorker, started on first use
        self._settings = settings
        self._policy = policy
        self.sessions: dict[str, Session] = {}
        self._by_call: dict[int, Session] = {}
        client.register_handler(Callback(f"jingle {name}", MatchXPath(f"{{jabber:client}}iq/{{{jingle.JINGLE}}}jingle"),
                                         self._jingle))
        for kind in jingle.JMI_KINDS:  # slixmpp's `message` event is only for messages with a body
            client.register_handler(Callback(f"jmi {kind} {name}", MatchXPath(f"{{jabber:client}}message/{{{jingle.JMI}}}{kind}"),
                                             self._jmi_message))

    # -- the account's own requests --------------------------------------------------------------
    def place(self, call: Call, bare: str) -> None:
        session = self._new(uuid.uuid4().hex, call.id, bare, outgoing=True)
        self._message(bare, jingle.jmi("propose", session.sid), jingle.store_hint(), message_id=session.sid)
        session.timer = asyncio.get_running_loop().call_later(self._settings.ring_timeout, self._unanswered, session.sid)

    def action(self, call: Call, event: CallEvent) -> None:
        session = self._by_call.get(call.id)
        if session is None:
            return
        if event is E.CANCEL:
            self._message(session.bare, jingle.jmi("retract", session.sid))
        elif event in (E.REFUSE, E.NO_ANSWER):
            self._message(session.peer or session.bare, jingle.jmi("reject", session.sid,
                                                                   "decline" if event is E.REFUSE else "timeout"))
        elif event in (E.ANSWER, E.VOICEMAIL):
            session.answered, session.voicemail = True, event is E.VOICEMAIL
            self._answer(session)
        elif event in (E.FINISH, E.VM_CANCEL):
            self._terminate(session, "success")
        elif event is E.VM_UPLOAD:  # the account hung up on a message being recorded: it is kept
            self._terminate(session, "success")
            self._keep_message(session)
        elif event in (E.LOCAL_HOLD, E.LOCAL_RESUME):
            self._info(session, "hold" if event is E.LOCAL_HOLD else "unhold")

    def dtmf(self, call: Call, digits: str) -> None:
        session = self._by_call.get(call.id)
        if session is not None and session.media is not None:
            self._worker().dtmf(session.media, digits)

    def forget(self, call: Call) -> None:
        session = self._by_call.pop(call.id, None)
        if session is None:
            return
        self.sessions.pop(session.sid, None)
        if session.timer is not None:
            session.timer.cancel()
        for task in session.tasks:
            task.cancel()
        if session.media is not None:
            self._worker().close_call(session.media)
            self.audio.disconnect(self.name, call.id)

    def close(self) -> None:
        self.client.remove_handler(f"jingle {self.name}")
        for kind in jingle.JMI_KINDS:
            self.client.remove_handler(f"jmi {kind} {self.name}")

    def _jmi_message(self, message: Any) -> None:
        if message["type"] == "error":
            self.on_error(message["id"], message["error"]["condition"])
            return
        found = jingle.read_jmi(message.xml)
        if found is not None:
            self.on_jmi(message["from"], found)

    # -- JMI ----------------------------------------------------------------------------------
    def on_jmi(self, sender: JID, message: Jmi) -> None:
        """A JMI element from `sender` (a full JID)."""
        if sender.full == JID(self.client.boundjid).full:
            return  # our own `accept`, sent to the account's other devices, came back to this one
        session = self.sessions.get(message.sid)
        if message.kind == "propose":
            if session is None and message.audio:
                self._incoming(message.sid, sender)
            return
        if session is None or sender.bare != session.bare and sender.bare != JID(self.client.boundjid).bare:
            return
        if session.outgoing:
            self._outgoing_jmi(session, sender, message)
        elif message.kind == "retract":
            self._remote(session, E.NO_ANSWER)
        elif message.kind in ("accept", "reject") and sender.bare == JID(self.client.boundjid).bare:
            log.info("XMPP account %s: call %s taken on another device", self.name, message.sid)
            self._remote(session, E.NO_ANSWER)

    def on_error(self, sid: str, condition: str) -> None:
        """A message of a call came back with an error (the contact does not exist, or blocks the account)."""
        session = self.sessions.get(sid)
        if session is not None and session.outgoing and not session.active:
            self._remote(session, E.FAIL, reason=f"the call could not reach {session.bare} ({condition})")

    def _outgoing_jmi(self, session: Session, sender: JID, message: Jmi) -> None:
        if message.kind == "ringing":
            self._remote(session, E.RING)
        elif message.kind == "proceed" and not session.peer:
            session.peer = sender.full
            if session.timer is not None:
                session.timer.cancel()
            self._spawn(session, self._initiate(session))
        elif message.kind == "reject":
            busy = message.reason[0] == "busy"
            self._remote(session, E.BUSY if busy else E.REFUSE)

    def _incoming(self, sid: str, sender: JID) -> None:
        refused = self._refusal(sender.bare)
        if refused:
            self._message(sender.full, jingle.jmi("reject", sid, refused))
            return
        try:
            call_id = self.endpoint.incoming_call(sender.bare)
        except SkypeError as refused:
            log.info("XMPP account %s: call from %s refused: %s", self.name, sender.bare, refused.text)
            self._message(sender.full, jingle.jmi("reject", sid, "decline"))
            return
        session = self._new(sid, call_id, sender.bare, outgoing=False)
        session.peer = sender.full
        self._message(sender.full, jingle.jmi("ringing", sid))

    def _refusal(self, bare: str) -> str:
        """Why a call from `bare` is refused before it rings (a Jingle reason), or '' if it may ring."""
        if not self._policy.takes_call_from(bare):
            log.info("XMPP account %s: call from %s refused: not a contact (call_policy = contacts)", self.name, bare)
            return "decline"
        if sum(session.bare == bare for session in self.sessions.values()) >= MAX_CALLS_PER_CONTACT:
            log.debug("XMPP account %s: call from %s refused: %d calls with it already", self.name, bare,
                      MAX_CALLS_PER_CONTACT)
            return "busy"
        return ""

    def _answer(self, session: Session) -> None:
        if session.offer:  # rung by a session-initiate: answer it now
            self._spawn(session, self._accept(session))
            return
        self._message(session.peer, jingle.jmi("proceed", session.sid))
        self._message(JID(self.client.boundjid).bare, jingle.jmi("accept", session.sid))
        session.timer = asyncio.get_running_loop().call_later(SETUP_TIMEOUT, self._setup_late, session.sid)

    # -- the Jingle session -------------------------------------------------------------------
    async def _initiate(self, session: Session) -> None:
        worker = await self._started_worker()
        session.media, description = worker.open(self._media_state(session), self._dtmf(session),
                                                 self._policy.ice_servers(), self._settings.media_timeout)
        offer = sdp.parse(await asyncio.wait_for(description, SETUP_TIMEOUT))
        offer.audio.codecs += TELEPHONE_EVENTS
        stanza = jingle.jingle("session-initiate", session.sid, initiator=str(self.client.boundjid),
                               children=jingle.contents(offer))
        await self._iq(session.peer, stanza)
        session.timer = asyncio.get_running_loop().call_later(SETUP_TIMEOUT, self._setup_late, session.sid)

    async def _accept(self, session: Session) -> None:
        worker = await self._started_worker()
        session.media, description = worker.open(self._media_state(session), self._dtmf(session),
                                                 self._policy.ice_servers(), self._settings.media_timeout,
                                                 offer=session.offer)
        answer = sdp.parse(await asyncio.wait_for(description, SETUP_TIMEOUT))
        offered = [c for c in sdp.parse(session.offer).audio.codecs if c.name.lower() == jingle.TELEPHONE_EVENT]
        answer.audio.codecs += offered
        stanza = jingle.jingle("session-accept", session.sid, responder=str(self.client.boundjid),
                               children=jingle.contents(answer, "initiator", offer=False))
        await self._iq(session.peer, stanza)
        self._activate(session)

    def _activate(self, session: Session) -> None:
        session.active = True
        if session.timer is not None:
            session.timer.cancel()
        assert session.media is not None
        self.audio.connect(self.name, session.call_id, self._worker().port(session.media))
        if session.voicemail:
            self._spawn(session, self._take_message(session))

    # -- the gateway's voicemail ------------------------------------------------------------------
    async def _take_message(self, session: Session) -> None:
        box, longest = self._settings.voicemail, self._policy.voicemail_max
        self._remote(session, E.VM_GREETING)
        await box.greet(self.name, session.call_id, self._policy.greeting)
        box.record(self.name, session.call_id)
        session.recording = True
        self._remote(session, E.VM_RECORD)
        await asyncio.sleep(longest)
        log.info("XMPP account %s: voicemail of call %d reached its longest (%g s)", self.name, session.call_id, longest)
        self._terminate(session, "success")
        self._remote(session, E.VM_UPLOAD)
        self._keep_message(session)

    def _keep_message(self, session: Session) -> None:
        """The recording ends: the message is kept (VM_SENT, with its file and length)."""
        message = self._settings.voicemail.stop(self.name, session.call_id)
        if message is None:
            self._remote(session, E.VM_FAIL, reason="no message was recorded")
            return
        path, seconds = message
        self._remote(session, E.VM_SENT, voicemail=str(path), seconds=f"{seconds:.2f}")

    def _jingle(self, iq: Any) -> None:
        element: Element = iq.xml.find(jingle.q(jingle.JINGLE, "jingle"))
        action, sid = element.get("action", ""), element.get("sid", "")
        session = self.sessions.get(sid)
        sender = iq["from"]
        if action == "session-initiate" and session is None:
            self._initiated_without_jmi(iq, element, sender)
            return
        if session is None or sender.bare != session.bare:
            self._iq_error(iq, "item-not-found", "unknown-session")
            return
        iq.reply().send()
        if action == "session-initiate":
            session.peer = sender.full
            self._take_offer(session, element)
        elif action == "session-accept" and session.outgoing:
            self._take_answer(session, element)
        elif action == "transport-info" and session.media is not None:
            lines = [c.to_sdp() for cs in jingle.candidates(element).values() for c in cs]
            self._worker().candidates(session.media, lines)
        elif action == "session-info":
            info = jingle.read_session_info(element)
            if info in ("hold", "unhold"):
                self._remote(session, E.REMOTE_HOLD if info == "hold" else E.REMOTE_RESUME)
            elif info == "ringing":
                self._remote(session, E.RING)
        elif action == "session-terminate":
            condition, text = jingle.read_reason(element)
            self._ended_by_peer(session, condition, text)

    def _initiated_without_jmi(self, iq: Any, element: Element, sender: JID) -> None:
        refused = self._refusal(sender.bare)
        if refused:
            iq.reply().send()
            self._send_terminate(sender.full, element.get("sid", ""), refused, "")
            return
        try:
            offer = jingle.to_session(element, offer=True)
        except JingleError as refused:
            iq.reply().send()
            self._send_terminate(sender.full, element.get("sid", ""), refused.reason, refused.text)
            return
        iq.reply().send()
        sid = element.get("sid", "")
        try:
            call_id = self.endpoint.incoming_call(sender.bare)
        except SkypeError:
            self._send_terminate(sender.full, sid, "decline", "")
            return
        session = self._new(sid, call_id, sender.bare, outgoing=False)
        session.peer, session.offer = sender.full, sdp.write(offer)
        self._info(session, "ringing")

    def _take_offer(self, session: Session, element: Element) -> None:
        try:
            session.offer = sdp.write(jingle.to_session(element, offer=True))
        except JingleError as refused:
            self._refuse(session, refused)
            return
        if session.answered:
            self._spawn(session, self._accept(session))

    def _take_answer(self, session: Session, element: Element) -> None:
        try:
            answer = jingle.to_session(element, offer=False)
        except JingleError as refused:
            self._refuse(session, refused)
            return
        assert session.media is not None
        self._worker().accepted(session.media, sdp.write(answer))
        self._activate(session)
        self._remote(session, E.ANSWER)

    def _refuse(self, session: Session, refused: JingleError) -> None:
        log.warning("XMPP account %s: call %s refused: %s", self.name, session.sid, refused.text)
        self._send_terminate(session.peer, session.sid, refused.reason, refused.text)
        self._remote(session, E.FAIL, reason=refused.text)

    def _ended_by_peer(self, session: Session, condition: str, text: str) -> None:
        if session.voicemail:
            self._caller_left_voicemail(session)
            return
        if session.active:
            event = E.FINISH if condition in ("success", "", "gone") else E.FAIL
        elif session.outgoing:
            event = {"decline": E.REFUSE, "busy": E.BUSY, "cancel": E.REFUSE}.get(condition, E.FAIL)
        else:
            event = E.NO_ANSWER if condition in ("cancel", "success", "") else E.FAIL
        self._remote(session, event, reason=(text or condition) if event is E.FAIL else "")

    def _caller_left_voicemail(self, session: Session) -> None:
        """Hanging up after the beep leaves the message; before it, nothing."""
        for task in session.tasks:
            task.cancel()
        if session.recording:
            self._remote(session, E.VM_UPLOAD)
            self._keep_message(session)
        else:
            self._remote(session, E.VM_CANCEL)

    # -- sending ---------------------------------------------------------------------------------
    def _terminate(self, session: Session, condition: str) -> None:
        if session.peer and (session.active or session.offer or session.media is not None):
            self._send_terminate(session.peer, session.sid, condition, "")
        self._message(session.peer or session.bare, jingle.jmi("finish", session.sid, condition))

    def _send_terminate(self, to: str, sid: str, condition: str, text: str) -> None:
        stanza = jingle.jingle("session-terminate", sid, children=[jingle.reason(condition, text)])
        self._spawn(None, self._iq(to, stanza, quiet=True))

    def _info(self, session: Session, kind: str) -> None:
        if session.peer:
            stanza = jingle.jingle("session-info", session.sid, children=[jingle.session_info(kind)])
            self._spawn(session, self._iq(session.peer, stanza, quiet=True))

    async def _iq(self, to: str, element: Element, quiet: bool = False) -> None:
        iq = self.client.make_iq_set(ito=to)
        iq.xml.append(element)
        try:
            await iq.send(timeout=SETUP_TIMEOUT)
        except (IqError, IqTimeout) as exc:
            if not quiet:
                raise RuntimeError(f"{element.get('action')} to {to} was not taken: {exc}") from None

    def _message(self, to: str, *elements: Element, message_id: str = "") -> None:
        message = self.client.make_message(mto=to, mtype="chat")
        if message_id:
            message["id"] = message_id
        for element in elements:
            message.xml.append(element)
        message.send()

    def _iq_error(self, iq: Any, condition: str, jingle_condition: str) -> None:
        reply = iq.reply()
        reply.error()
        reply["error"]["type"] = "cancel"
        reply["error"]["condition"] = condition
        reply["error"].xml.append(Element(f"{{urn:xmpp:jingle:errors:1}}{jingle_condition}"))
        reply.send()

    # -- bookkeeping -------------------------------------------------------------------------------
    def _new(self, sid: str, call_id: int, bare: str, outgoing: bool) -> Session:
        session = Session(sid, call_id, bare, outgoing)
        self.sessions[sid] = session
        self._by_call[call_id] = session
        return session

    def _remote(self, session: Session, event: CallEvent, **details: str) -> None:
        if session.voicemail and event is E.FAIL:
            event = E.VM_FAIL
        self.endpoint.call_event(session.call_id, event, **details)

    def _unanswered(self, sid: str) -> None:
        session = self.sessions.get(sid)
        if session is not None and not session.peer:
            self._message(session.bare, jingle.jmi("retract", sid))
            self._remote(session, E.NO_ANSWER)

    def _setup_late(self, sid: str) -> None:
        session = self.sessions.get(sid)
        if session is not None and not session.active:
            self._terminate(session, "timeout")
            self._remote(session, E.FAIL, reason="the other side did not set the call up in time")

    def _media_state(self, session: Session) -> Callable[[str, str], None]:
        def changed(state: str, reason: str) -> None:
            if state not in ("failed", "closed") or not sid_alive(self, session.sid):
                return
            if session.voicemail:  # the caller's line is gone: what was recorded is kept
                self._terminate(session, "success")
                self._caller_left_voicemail(session)
            elif state == "failed":
                log.info("XMPP account %s: call %d: %s", self.name, session.call_id, reason)
                self._terminate(session, "failed-transport")
                self._remote(session, E.FAIL, reason=reason or "the media connection failed")
            elif session.active:  # the other side closed its media without a session-terminate
                self._terminate(session, "success")
                self._remote(session, E.FINISH, reason="the other side closed the media")
        return changed

    def _dtmf(self, session: Session) -> Callable[[str], None]:
        return lambda digit: self.endpoint.dtmf(session.call_id, digit)

    async def _started_worker(self) -> MediaWorker:
        worker = self._worker()
        if worker.lost is None:
            await worker.start()
        return worker

    def _spawn(self, session: Session | None, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        if session is not None:
            session.tasks.add(task)
            task.add_done_callback(session.tasks.discard)
        task.add_done_callback(lambda done: self._failed(session, done))

    def _failed(self, session: Session | None, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.warning("XMPP account %s: call %s: %s", self.name, session.sid if session else "-", error)
        if session is not None and sid_alive(self, session.sid):
            self._terminate(session, "general-error")
            self._remote(session, E.FAIL, reason=str(error) or type(error).__name__)


def sid_alive(calls: XmppCalls, sid: str) -> bool:
    return sid in calls.sessions
