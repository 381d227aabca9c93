"""One gateway account's connection to its XMPP server, with slixmpp.

The account logs in at start and stays logged in: STARTTLS (the default), direct TLS, or
plain TCP to a loopback server; it reconnects after any loss with a growing delay, and
after a refused login slowly. Stream management (XEP-0198) is used where the server
offers it, so a stanza sent before a short loss is sent again once the stream resumes,
and is never sent twice.

A request the account makes (a message, a subscription, a block) succeeds only once the
server confirmed it: a stream-management ack of that stanza, or, on a server without
stream management, the answer to a ping sent right after it (a server handles a stream's
stanzas in order). Every wait is bounded by `timeout`; a request made while the account
is not connected fails at once. Both are `network_unavailable`, with a text that says
what happened.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from xml.etree.ElementTree import Element

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.jid import JID, InvalidJID

from ...model import errors
from ...model.errors import SkypeError
from ..driver import Endpoint
from . import mapping
from .calls import CallPolicy, CallSettings, XmppCalls
from .client import Client

log = logging.getLogger("fastagi.network.xmpp")

PLUGINS = ("xep_0030", "xep_0066", "xep_0054", "xep_0191", "xep_0198", "xep_0199", "xep_0363", "xep_0359")
NO_AUTOMATIC_ACK_REQUESTS = {"window": 2**31}
"""slixmpp's own ack request leaves ahead of the stanza it follows (it bypasses the send queue),
so it never covers that stanza: `send_confirmed` queues its request behind the stanza instead (`Client.request_ack`)."""
EXTDISCO = "urn:xmpp:extdisco:2"
MAX_BODY = 65536
"""Characters of a received message kept; the rest is cut (a peer may send megabytes)."""


@dataclass(frozen=True)
class XmppSettings:
    """An account's `network = xmpp` keys (SCHEMA checked them)."""

    jid: str
    password: str
    xmpp_server: str = ""
    xmpp_port: int = 0
    xmpp_tls: str = "starttls"
    xmpp_ca_file: Path | None = None
    resource: str = "skype-fastagi"
    call_policy: str = "anyone"
    stun_server: tuple[str, int] | None = None
    turn_server: tuple[str, int] | None = None
    turn_username: str = ""
    turn_password: str = ""
    voicemail_greeting: Path | None = None
    voicemail_max: float = 120.0

    def ice_servers(self) -> list[dict[str, Any]]:
        """The STUN and TURN servers the account's settings give (aiortc's RTCIceServer fields)."""
        servers: list[dict[str, Any]] = []
        if self.stun_server is not None:
            servers.append({"urls": f"stun:{self.stun_server[0]}:{self.stun_server[1]}"})
        if self.turn_server is not None:
            servers.append({"urls": f"turn:{self.turn_server[0]}:{self.turn_server[1]}",
                            "username": self.turn_username, "credential": self.turn_password})
        return servers

    @property
    def address(self) -> tuple[str, int] | None:
        """Where to connect, or None to look the JID's domain up (DNS SRV, then A/AAAA)."""
        if not self.xmpp_server and not self.xmpp_port:
            return None
        port = self.xmpp_port or (5223 if self.xmpp_tls == "direct" else 5222)
        return self.xmpp_server or JID(self.jid).domain, port


@dataclass(frozen=True)
class Timing:
    timeout: float = 10.0
    """Seconds the server has to confirm a request or answer a query."""
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    login_retry: float = 60.0
    """Seconds between tries after the server refused the login (a wrong password stays wrong)."""


@dataclass
class Presence:
    """What the account knows of a contact: its roster entry and the presence of its resources."""

    name: str = ""
    subscription: str = "none"
    pending_out: bool = False
    resources: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    """resource -> (priority, show, status text) of each available resource."""
    seen: bool = False
    """Whether any presence of the contact arrived (else its status is UNKNOWN)."""

    def status(self) -> tuple[str, str]:
        """(Skype online status, mood text) from its highest-priority resource."""
        if not self.resources:
            return mapping.online_status(False if self.seen else None), ""
        _, show, text = max(self.resources.values(), key=lambda value: value[0])
        return mapping.online_status(True, show), text


class XmppAccount:
    """The connection of one account (`name` in the config) to its XMPP server."""

    def __init__(self, name: str, settings: XmppSettings, endpoint: Endpoint, timing: Timing,
                 on_file: Callable[[str, str, str], None], call_settings: CallSettings) -> None:
        self.name = name
        self.settings = settings
        self.jid = JID(settings.jid)
        self._endpoint = endpoint
        self._timing = timing
        self._on_file = on_file
        self.state = "OFFLINE"
        self.contacts: dict[str, Presence] = {}
        self.upload_service: JID | None = None
        self.discovered = False
        """True once the services of the server (upload, STUN/TURN) were looked for."""
        self.ice_servers: list[dict[str, Any]] = settings.ice_servers()
        """Where calls find STUN/TURN: the settings', else what the server offers (XEP-0215), else none."""
        self._closing = False
        self._retry_delay = timing.reconnect_min
        self._retry: asyncio.TimerHandle | None = None
        self._acks: dict[str, asyncio.Future[None]] = {}
        self.client = self._client()
        policy = CallPolicy(lambda: self.ice_servers, self._takes_call_from, settings.voicemail_greeting,
                            settings.voicemail_max)
        self.calls = XmppCalls(name, self.client, endpoint, call_settings, policy)

    # -- the connection ------------------------------------------------------------
    def _client(self) -> Client:
        settings = self.settings
        client = Client(f"{self.jid.bare}/{settings.resource}", settings.password)
        client.enable_starttls = settings.xmpp_tls == "starttls"
        client.enable_direct_tls = settings.xmpp_tls == "direct"
        client.enable_plaintext = settings.xmpp_tls == "none"
        if settings.xmpp_tls == "none":
            client.plugin["feature_mechanisms"].unencrypted_scram = True  # only to a loopback server (config checks)
        if settings.xmpp_ca_file is not None:
            client.ca_certs = settings.xmpp_ca_file
        for plugin in PLUGINS:
            client.register_plugin(plugin, pconfig=NO_AUTOMATIC_ACK_REQUESTS if plugin == "xep_0198" else None)
        client.auto_authorize = None  # buddy requests are the account's to answer (auth_policy)
        client.auto_subscribe = False
        for event, handler in (
            ("session_start", self._session_start), ("session_resumed", self._resumed),
            ("disconnected", self._disconnected), ("failed_all_auth", self._login_refused),
            ("connection_failed", self._connection_failed), ("session_end", self._session_end),
            ("stanza_acked", self._acked), ("message", self._message),
            ("presence_subscribe", self._subscribe), ("presence_subscribed", self._subscribed),
            ("presence_unsubscribed", self._unsubscribed), ("presence", self._presence),
            ("roster_update", self._roster_update), ("blocked", self._block_pushed),
            ("unblocked", self._unblock_pushed), ("message_error", self._message_error),
        ):
            client.add_event_handler(event, handler)
        return client

    def start(self) -> None:
        """Log in (in the background: the state follows through `connection_changed`)."""
        self._connect()

    async def close(self) -> None:
        self._closing = True
        self.calls.close()
        if self._retry is not None:
            self._retry.cancel()
        self._fail_waiting("the gateway is stopping")
        if self.client.transport is not None:
            await self.client.disconnect(wait=1.0)
        else:
            self.client.cancel_connection_attempt()
        self._set_state("OFFLINE")

    def _connect(self) -> None:
        self._retry = None
        if self._closing:
            return
        self._set_state("CONNECTING")
        address = self.settings.address
        self.client.connect(*(address or (None, None)))

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            log.info("XMPP account %s (%s): %s", self.name, self.jid.bare, state)
            self._endpoint.connection_changed(state)

    def _reconnect_later(self, delay: float) -> None:
        if self._closing or self._retry is not None:
            return
        self.client.cancel_connection_attempt()
        self._retry = asyncio.get_running_loop().call_later(delay, self._connect)

    async def _session_start(self, _: Any) -> None:
        self._retry_delay = self._timing.reconnect_min
        try:
            await self.client.get_roster(timeout=self._timing.timeout)
        except (IqError, IqTimeout) as exc:
            log.warning("XMPP account %s: roster not received (%s)", self.name, exc)
        self.client.send_presence()
        self._set_state("ONLINE")
        await self._read_block_list()
        await self._discover_upload()
        if not self.settings.ice_servers():
            await self._discover_ice_servers()
        self.discovered = True

    def _resumed(self, _: Any) -> None:
        self._retry_delay = self._timing.reconnect_min
        self._set_state("ONLINE")

    def _disconnected(self, reason: Any) -> None:
        if self._closing or self.state == "LOGIN_REFUSED":  # the login retry is already planned
            return
        self._set_state("OFFLINE")
        delay = self._retry_delay
        self._retry_delay = min(delay * 2, self._timing.reconnect_max)
        log.warning("XMPP account %s lost its connection (%s); reconnecting in %g s", self.name, reason, delay)
        self._reconnect_later(delay)

    def _connection_failed(self, reason: Any) -> None:
        if self._closing or self.state == "LOGIN_REFUSED":
            return
        self._set_state("OFFLINE")
        delay = self._retry_delay
        self._retry_delay = min(delay * 2, self._timing.reconnect_max)
        log.warning("XMPP account %s cannot connect (%s); next try in %g s", self.name, reason, delay)
        self._reconnect_later(delay)

    def _login_refused(self, _: Any) -> None:
        delay = self._timing.login_retry
        log.error("XMPP account %s: the server refused the login of %s; next try in %g s",
                  self.name, self.jid.bare, delay)
        self._set_state("LOGIN_REFUSED")
        self._retry = None
        self.client.disconnect(wait=0)
        self._retry = asyncio.get_running_loop().call_later(delay, self._connect)

    def _session_end(self, _: Any) -> None:
        """The stream could not be resumed: what was not acked is lost, so its requests fail."""
        self._fail_waiting("the connection to the server was lost before it confirmed the request")

    async def _read_block_list(self) -> None:
        try:
            blocked = await self.client.plugin["xep_0191"].get_blocked_jids(timeout=self._timing.timeout)
        except (IqError, IqTimeout) as exc:
            log.info("XMPP account %s: no block list (%s)", self.name, exc)
            return
        for jid in blocked:
            self._endpoint.contact_changed(jid.bare, blocked=True)

    async def _discover_ice_servers(self) -> None:
        """The STUN/TURN services the server announces (XEP-0215), for calls behind NAT."""
        iq = self.client.make_iq_get(ito=self.jid.domain)
        iq.xml.append(Element(f"{{{EXTDISCO}}}services"))
        try:
            reply = await iq.send(timeout=self._timing.timeout)
        except (IqError, IqTimeout):
            return  # none offered: host candidates only (never a public STUN server)
        self.ice_servers = mapping.ice_servers(reply.xml.find(f"{{{EXTDISCO}}}services"))

    def _takes_call_from(self, bare: str) -> bool:
        """`call_policy`: anyone's calls ring, or only those of a contact the account has a subscription with."""
        if self.settings.call_policy == "anyone":
            return True
        contact = self.contacts.get(bare)
        return contact is not None and contact.subscription in ("to", "from", "both")

    async def _discover_upload(self) -> None:
        try:
            info = await self.client.plugin["xep_0363"].find_upload_service(timeout=self._timing.timeout)
        except (IqError, IqTimeout) as exc:
            log.info("XMPP account %s: no upload service found (%s)", self.name, exc)
            info = None
        self.upload_service = info["from"] if info is not None else None

    # -- requests the account makes -----------------------------------------------------
    def require_online(self) -> None:
        if self.state != "ONLINE":
            raise SkypeError(errors.NETWORK_UNAVAILABLE, f"{self.name} is not connected to its XMPP server"
                             f" ({self.state.lower().replace('_', ' ')}): nothing was sent")

    async def send_confirmed(self, stanza: Any, what: str) -> None:
        """Send a message or presence and return once the server has it."""
        self.require_online()
        if not stanza["id"]:
            stanza["id"] = self.client.new_id()
        stream_managed = self.client.plugin["xep_0198"].enabled_out
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if stream_managed:
            self._acks[stanza["id"]] = waiter
        try:
            stanza.send()
            if stream_managed:
                self.client.request_ack()
                await asyncio.wait_for(waiter, self._timing.timeout)
            else:
                await self.client.plugin["xep_0199"].ping(jid=self.jid.domain, timeout=self._timing.timeout)
        except (asyncio.TimeoutError, IqTimeout):
            raise SkypeError(errors.NETWORK_UNAVAILABLE,
                             f"the XMPP server did not confirm {what} within {self._timing.timeout:g} s") from None
        except IqError as exc:
            raise SkypeError(errors.NETWORK_UNAVAILABLE, f"the XMPP server did not confirm {what}: "
                             f"{exc.iq['error']['condition']}") from None
        finally:
            self._acks.pop(stanza["id"], None)

    def _acked(self, stanza: Any) -> None:
        waiter = self._acks.pop(stanza["id"], None) if stanza["id"] else None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail_waiting(self, why: str) -> None:
        waiting, self._acks = self._acks, {}
        for waiter in waiting.values():
            if not waiter.done():
                waiter.set_exception(SkypeError(errors.NETWORK_UNAVAILABLE, why))

    async def query(self, request: Any, what: str) -> Any:
        """Send an IQ and return its result (`IqError` goes to the caller, a timeout is `network_unavailable`)."""
        self.require_online()
        try:
            return await request(timeout=self._timing.timeout)
        except IqTimeout:
            raise SkypeError(errors.NETWORK_UNAVAILABLE,
                             f"the XMPP server did not answer {what} within {self._timing.timeout:g} s") from None

    # -- what arrives ----------------------------------------------------------------------
    def _message(self, message: Any) -> None:
        if message["type"] not in ("chat", "normal"):
            return
        sender = message["from"].bare
        if sender == self.jid.bare:
            return
        body = message["body"] or ""
        url = message["oob"]["url"] if message.get_plugin("oob", check=True) else ""
        if url:
            self._on_file(self.name, sender, url)
            return
        if not body:
            return  # chat states, receipts, markers
        if len(body) > MAX_BODY:
            log.warning("XMPP account %s: a message of %d characters from %s was cut to %d",
                        self.name, len(body), sender, MAX_BODY)
            body = body[:MAX_BODY]
        try:
            self._endpoint.chat_message(sender, mapping.chat_name(self.name, sender), body, _message_id(message, self.jid))
        except SkypeError as refused:
            log.info("XMPP account %s: message from %s refused: %s", self.name, sender, refused.text)

    def _subscribe(self, presence: Any) -> None:
        self._endpoint.auth_request(presence["from"].bare, presence["status"] or "")

    def _subscribed(self, presence: Any) -> None:
        self._endpoint.auth_reply(presence["from"].bare, True)

    def _unsubscribed(self, presence: Any) -> None:
        self._endpoint.auth_reply(presence["from"].bare, False)

    def _presence(self, presence: Any) -> None:
        """A contact's resource came, changed or went (slixmpp names its event after `show`, so it is read here)."""
        kind = presence.xml.get("type")
        sender = presence["from"]
        if kind not in (None, "unavailable") or sender.bare == self.jid.bare:
            return
        contact = self.contacts.setdefault(sender.bare, Presence())
        if kind is None:
            state = (int(presence["priority"] or 0), presence["show"] or "", presence["status"] or "")
            self._presence_changed(sender.bare, contact, lambda: contact.resources.__setitem__(sender.resource, state))
        else:
            self._presence_changed(sender.bare, contact, lambda: contact.resources.pop(sender.resource, None))

    def _presence_changed(self, handle: str, contact: Presence, change: Callable[[], None]) -> None:
        before = contact.status() if contact.seen else None
        contact.seen = True
        change()
        if contact.status() != before:
            self._endpoint.presence_changed(handle)

    def _block_pushed(self, iq: Any) -> None:
        for item in iq["block"]["items"]:
            self._endpoint.contact_changed(JID(item["jid"]).bare, blocked=True)

    def _unblock_pushed(self, iq: Any) -> None:
        for item in iq["unblock"]["items"]:
            self._endpoint.contact_changed(JID(item["jid"]).bare, blocked=False)

    def _message_error(self, message: Any) -> None:
        error = message["error"]
        if message["id"] in self.calls.sessions:  # a bounced JMI message (the bounce may not repeat its payload)
            self.calls.on_error(message["id"], error["condition"])
            return
        log.info("XMPP account %s: a message to %s came back: %s %s", self.name, message["from"].bare,
                 error["condition"], error["text"] or "")

    def _roster_update(self, iq: Any) -> None:
        for jid, item in iq["roster"]["items"].items():
            handle = JID(jid).bare
            if item["subscription"] == "remove":
                self.contacts.pop(handle, None)
                self._endpoint.contact_changed(handle, buddy=mapping.buddy_status("none", False), authorized=False)
                continue
            contact = self.contacts.setdefault(handle, Presence())
            contact.name = item["name"] or ""
            contact.subscription = item["subscription"] or "none"
            contact.pending_out = item["ask"] == "subscribe"
            self._endpoint.contact_changed(handle, buddy=mapping.buddy_status(contact.subscription, contact.pending_out),
                                           authorized=mapping.authorized(contact.subscription))


def _message_id(message: Any, own: JID) -> str:
    """The id that tells a message again from a new one: the server's stanza-id for us (XEP-0359), else the sender's."""
    for stanza_id in message.xml.findall("{urn:xmpp:sid:0}stanza-id"):
        if stanza_id.get("by") == own.bare and stanza_id.get("id"):
            return f"sid:{stanza_id.get('id')}"
    origin = message.xml.find("{urn:xmpp:sid:0}origin-id")
    if origin is not None and origin.get("id"):
        return f"oid:{message['from'].bare}:{origin.get('id')}"
    return f"id:{message['from'].bare}:{message['id']}" if message["id"] else ""


def bare_jid(handle: str) -> str:
    """`handle` as a bare JID (normalised), or `unknown_user` for text that is no XMPP address."""
    try:
        jid = JID(handle)
    except InvalidJID as exc:
        raise SkypeError(errors.UNKNOWN_USER, f"{handle!r} is not an XMPP address ({exc})") from None
    if not jid.user or jid.resource:
        raise SkypeError(errors.UNKNOWN_USER, f"{handle!r} is not an XMPP address of a user (a bare JID such as bob@example.org)")
    return jid.bare
