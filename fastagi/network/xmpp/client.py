"""The slixmpp client an account connects with, fitted to a gateway's traffic."""

from __future__ import annotations

import asyncio
import socket

import slixmpp
from slixmpp.plugins.xep_0198.stanza import RequestAck

QUICKACK = getattr(socket, "TCP_QUICKACK", None)
"""Linux only; elsewhere the client acknowledges as the system does."""


class Client(slixmpp.ClientXMPP):
    """slixmpp's client with quick TCP acknowledgements and one stream-management ack request per turn.

    Servers keep Nagle's algorithm on for their clients (Prosody's default), so a stanza the
    server writes while its previous one is unacknowledged waits for our TCP ACK, which Linux
    delays up to 40 ms when we have nothing to send back: a peer's message then reaches the
    dialplan tens of milliseconds late. `TCP_QUICKACK` after each read acknowledges at once
    (the option does not stay set, hence each read).
    """

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self._ack_requested = False

    def data_received(self, data: bytes) -> None:
        self._quick_ack()
        super().data_received(data)

    def _quick_ack(self) -> None:
        raw = self.transport.get_extra_info("socket") if self.transport is not None else None
        if QUICKACK is not None and raw is not None:
            try:
                raw.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            except OSError:  # closing, or not TCP
                pass

    def request_ack(self) -> None:
        """Ask the server to acknowledge what was sent so far, once for all stanzas sent in this turn of the loop.

        The request is queued behind those stanzas, so the server's answer covers them
        (slixmpp's own request bypasses the send queue and would leave ahead of them).
        """
        if not self._ack_requested:
            self._ack_requested = True
            asyncio.get_running_loop().call_soon(self._send_ack_request)

    def _send_ack_request(self) -> None:
        self._ack_requested = False
        if self.transport is not None:
            self.send(RequestAck(self), use_filters=False)
