"""XMPP users for the tests, written with slixmpp alone (none of the gateway's code).

A `Peer` logs in over STARTTLS trusting the test CA, records every message, presence and
subscription it gets, and answers as told: `echo` sends each chat message back,
`on_subscribe` accepts ("accept", subscribing back) or refuses ("refuse") a buddy request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from xml.etree import ElementTree

import slixmpp
from slixmpp.plugins.xep_0054.stanza import VCardTemp
from slixmpp.plugins.xep_0198.stanza import RequestAck

from .server import Prosody


@dataclass(frozen=True)
class Got:
    """One stanza a peer received, reduced to what tests look at."""

    kind: str  # "message", "subscribe", "subscribed", "unsubscribed", "unsubscribe", "available", "unavailable", "error"
    sender: str  # bare JID
    body: str = ""
    url: str = ""
    show: str = ""
    status: str = ""
    condition: str = ""


class Peer(slixmpp.ClientXMPP):
    def __init__(self, server: Prosody, jid: str, password: str, *, echo: bool = False,
                 on_subscribe: str | None = None, show: str = "", status: str = "") -> None:
        super().__init__(f"{jid}/peer", password)
        self.prosody = server
        self.echo = echo
        self.on_subscribe = on_subscribe
        self.enable_direct_tls = self.enable_plaintext = False
        self.ca_certs = server.ca_file
        for plugin in ("xep_0030", "xep_0054", "xep_0066", "xep_0191", "xep_0198", "xep_0363"):
            self.register_plugin(plugin)
        self.auto_authorize = None
        self.auto_subscribe = False
        self.got: list[Got] = []
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._presence = (show, status)
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("message", self._message)
        self.add_event_handler("message_error", self._error)
        self.add_event_handler("presence", self._presence_in)

    async def online(self) -> "Peer":
        """Connect and wait for the session (roster fetched, presence sent)."""
        self.connect("127.0.0.1", self.prosody.c2s_port)
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def _start(self, _: Any) -> None:
        await self.get_roster()
        show, status = self._presence
        self.send_presence(pshow=show or None, pstatus=status or None)
        self._ready.set()

    def _record(self, got: Got) -> None:
        self.got.append(got)
        self._changed.set()

    def _message(self, message: Any) -> None:
        if message["type"] == "error":
            return
        url = message["oob"]["url"] if message.get_plugin("oob", check=True) else ""
        self._record(Got("message", message["from"].bare, message["body"], url))
        if self.echo and message["body"]:
            self.send_message(mto=message["from"].bare, mbody=message["body"], mtype="chat")

    def _error(self, message: Any) -> None:
        self._record(Got("error", message["from"].bare, condition=message["error"]["condition"]))

    def _presence_in(self, presence: Any) -> None:
        kind = presence.xml.get("type") or "available"
        sender = presence["from"].bare
        self._record(Got(kind, sender, show=presence["show"] or "", status=presence["status"] or ""))
        if kind == "subscribe" and self.on_subscribe == "accept":
            self.send_presence(pto=sender, ptype="subscribed")
            self.send_presence(pto=sender, ptype="subscribe")
        elif kind == "subscribe" and self.on_subscribe == "refuse":
            self.send_presence(pto=sender, ptype="unsubscribed")

    async def next(self, match: Callable[[Got], bool], timeout: float = 5.0) -> Got:
        """The first thing received (already, or within `timeout`) that `match`es."""
        async def first() -> Got:
            seen = 0
            while True:
                for got in self.got[seen:]:
                    if match(got):
                        return got
                seen = len(self.got)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(first(), timeout)

    async def flushed(self, timeout: float = 5.0) -> None:
        """Wait until the server acknowledged everything this peer sent (stream management).

        Asked again every 0.1 s: the answers slixmpp sends by itself (to roster pushes) may follow a request.
        """
        sm = self.plugin["xep_0198"]
        deadline = asyncio.get_running_loop().time() + timeout
        while sm.unacked_queue:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{len(sm.unacked_queue)} stanzas not acknowledged by the server")
            self.send(RequestAck(self), use_filters=False)
            await asyncio.sleep(0.1)

    async def publish_vcard(self, xml: str) -> None:
        """Publish a vcard-temp given as the XML inside `<vCard xmlns='vcard-temp'>`."""
        vcard = VCardTemp(xml=ElementTree.fromstring(f"<vCard xmlns='vcard-temp'>{xml}</vCard>"))
        await self.plugin["xep_0054"].publish_vcard(vcard, timeout=5)

    async def close(self) -> None:
        self.disconnect()
        await asyncio.sleep(0)


async def peer(server: Prosody, name: str, password: str = "secret", **behaviour: Any) -> Peer:
    """A new account on `server`, logged in."""
    return await Peer(server, server.register(name, password), password, **behaviour).online()
