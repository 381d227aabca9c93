"""The XMPP network: the gateway's accounts as ordinary clients of standard XMPP servers.

How the Skype model maps (the contract's "Live networks"): a buddy request is a presence
subscription, `user-set-auth` answers one, blocking is XEP-0191, a profile is the
contact's vCard with its presence, a chat message is a `<message type='chat'>` in a
chat named after the contact, a file is uploaded with XEP-0363 and sent as a link
(XEP-0066). SMS and prepaid balance do not exist on XMPP, and calls come with Jingle:
those actions are `not_supported`.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import aiohttp
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0363.http_upload import FileTooBig, HTTPError, UploadServiceNotFound

from ...background import Background
from ...model import errors
from ...model.calls import Call, CallEvent
from ...model.capabilities import Feature
from ...model.errors import SkypeError
from ...model.profiles import Profile
from ..driver import CallAudio, Endpoint, Voicemail
from . import mapping
from .account import Timing, XmppAccount, XmppSettings, bare_jid
from .calls import CallSettings
from .mediaclient import MediaWorker

log = logging.getLogger("fastagi.network.xmpp")

FEATURES = frozenset({Feature.CHAT, Feature.CONTACTS, Feature.BLOCKING, Feature.PROFILES, Feature.FILES,
                      Feature.CALLS, Feature.DTMF, Feature.CONFERENCE, Feature.VOICEMAIL})
DOWNLOAD_CHUNK = 65536


class XmppNetwork:
    """Implements `NetworkDriver` for the accounts with `network = xmpp`."""

    name = "xmpp"

    def __init__(self, accounts: dict[str, XmppSettings], incoming_dir: Path, audio: CallAudio, voicemail: Voicemail,
                 timing: Timing = Timing(), max_file_size: int = 100 * 1024 * 1024, ring_timeout: float = 30.0,
                 media_timeout: float = 20.0) -> None:
        self._settings = accounts
        self._incoming_dir = incoming_dir
        self._timing = timing
        self._max_file_size = max_file_size
        self._worker = MediaWorker()
        self._calls = CallSettings(audio, lambda: self._worker, voicemail, ring_timeout, media_timeout)
        self._accounts: dict[str, XmppAccount] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._background = Background(log)

    def account(self, name: str) -> XmppAccount:
        return self._accounts[name]

    # -- the driver's own life ------------------------------------------------------------
    def capabilities(self, account: str) -> frozenset[Feature]:
        connection = self._accounts[account]
        if connection.discovered and connection.upload_service is None:
            return FEATURES - {Feature.FILES}
        return FEATURES

    def register(self, account: str, endpoint: Endpoint) -> None:
        self._endpoints[account] = endpoint
        self._accounts[account] = XmppAccount(account, self._settings[account], endpoint, self._timing,
                                              self._file_offered, self._calls)

    async def start(self) -> None:
        for connection in self._accounts.values():
            connection.start()

    async def close(self) -> None:
        await self._background.close()
        await asyncio.gather(*(connection.close() for connection in self._accounts.values()))
        await self._worker.close()

    # -- users and contacts ---------------------------------------------------------------
    def known(self, account: str, handle: str) -> Profile | None:
        contact = self._accounts[account].contacts.get(handle)
        if contact is None:
            return None
        status, mood = contact.status()
        return Profile(handle, displayname=contact.name, online_status=status, mood_text=mood)

    def chat_name(self, account: str, handle: str) -> str | None:
        return mapping.chat_name(account, handle)

    async def check_user(self, account: str, handle: str) -> None:
        bare_jid(handle)

    async def profile(self, account: str, handle: str) -> Profile:
        jid = bare_jid(handle)
        connection = self._accounts[account]
        try:
            reply = await connection.query(
                lambda **kw: connection.client.plugin["xep_0054"].get_vcard(jid, local=False, cached=False, **kw),
                f"the vCard query for {jid}")
            vcard = reply["vcard_temp"].xml
        except IqError as exc:
            condition = exc.iq["error"]["condition"]
            if condition in ("remote-server-not-found", "remote-server-timeout"):
                raise SkypeError(errors.UNKNOWN_USER, f"{jid}: its server cannot be reached ({condition})") from None
            vcard = None  # no vCard published, or none shown to us: the presence still counts
        known = self.known(account, jid)
        status, mood = (known.online_status, known.mood_text) if known else (mapping.UNKNOWN, "")
        return mapping.profile_from_vcard(jid, vcard, status, mood)

    async def send_chat_message(self, account: str, handle: str, chat_name: str, body: str) -> None:
        connection = self._accounts[account]
        message = connection.client.make_message(mto=bare_jid(handle), mbody=body, mtype="chat")
        message["origin_id"]["id"] = message["id"] = connection.client.new_id()
        await connection.send_confirmed(message, "the message")

    async def send_auth_request(self, account: str, handle: str, text: str) -> None:
        """Subscribe to `handle`, and approve its subscription to us beforehand (a Skype buddy sees both ways)."""
        connection = self._accounts[account]
        jid = bare_jid(handle)
        await connection.send_confirmed(connection.client.make_presence(pto=jid, ptype="subscribe", pstatus=text),
                                        "the buddy request")
        await connection.send_confirmed(connection.client.make_presence(pto=jid, ptype="subscribed"),
                                        "the pre-approval")

    async def send_auth_reply(self, account: str, handle: str, accepted: bool) -> None:
        connection = self._accounts[account]
        kind = "subscribed" if accepted else "unsubscribed"
        await connection.send_confirmed(connection.client.make_presence(pto=bare_jid(handle), ptype=kind),
                                        "the answer to the buddy request")

    async def remove_contact(self, account: str, handle: str) -> None:
        connection = self._accounts[account]
        jid = bare_jid(handle)
        try:
            await connection.query(lambda **kw: connection.client.update_roster(jid, subscription="remove", **kw),
                                   f"the removal of {jid}")
        except IqError as exc:
            if exc.iq["error"]["condition"] != "item-not-found":
                raise SkypeError(errors.NETWORK_UNAVAILABLE,
                                 f"the server refused to remove {jid}: {exc.iq['error']['condition']}") from None

    async def set_blocked(self, account: str, handle: str, blocked: bool) -> None:
        connection = self._accounts[account]
        jid = bare_jid(handle)
        blocking = connection.client.plugin["xep_0191"]
        request = blocking.block if blocked else blocking.unblock
        try:
            await connection.query(lambda **kw: request(jid, **kw), f"the block list change for {jid}")
        except IqError as exc:
            raise SkypeError(errors.NETWORK_UNAVAILABLE,
                             f"the server refused to change the block list: {exc.iq['error']['condition']}") from None

    # -- SMS, files ------------------------------------------------------------------------
    def sms_price(self, account: str, number: str, body: str) -> int:
        raise _no(account, Feature.SMS)

    async def send_sms(self, account: str, number: str, body: str) -> None:
        raise _no(account, Feature.SMS)

    async def send_file(self, account: str, handle: str, file_name: str, source: BinaryIO) -> None:
        """Upload the file to the account's server (XEP-0363), then send its link to `handle`."""
        connection = self._accounts[account]
        connection.require_online()
        jid = bare_jid(handle)
        content_type = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        try:
            url = await asyncio.wait_for(connection.client.plugin["xep_0363"].upload_file(
                file_name, content_type=content_type, input_file=source, timeout=self._timing.timeout),
                self._timing.timeout * 3)
        except UploadServiceNotFound:
            raise _no(account, Feature.FILES) from None
        except FileTooBig as exc:
            raise SkypeError(errors.NETWORK_UNAVAILABLE, f"the server takes no file this large ({exc})") from None
        except (HTTPError, aiohttp.ClientError, IqError, asyncio.TimeoutError) as exc:
            raise SkypeError(errors.NETWORK_UNAVAILABLE, f"the upload of {file_name} failed: {exc}") from None
        message = connection.client.make_message(mto=jid, mbody=url, mtype="chat")
        message["oob"]["url"] = url
        await connection.send_confirmed(message, "the file's link")

    def _file_offered(self, account: str, sender: str, url: str) -> None:
        self._background.spawn(self._download(account, sender, url))

    async def _download(self, account: str, sender: str, url: str) -> None:
        """Fetch a file a contact sent as a link into the account's incoming folder, within the size limit."""
        name = PurePosixPath(unquote(urlsplit(url).path)).name or "file"
        if urlsplit(url).scheme not in ("http", "https"):
            log.warning("XMPP account %s: a file link from %s is not HTTP(S): %s", account, sender, url[:200])
            return
        folder = self._incoming_dir / account
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".partial-", delete=True) as partial:
            try:
                size = await asyncio.wait_for(self._fetch(url, partial), self._timing.timeout * 6)
            except (aiohttp.ClientError, asyncio.TimeoutError, _TooLarge) as exc:
                log.warning("XMPP account %s: the file %s from %s was not received: %s", account, name, sender,
                            exc or type(exc).__name__)
                return
            partial.seek(0)
            log.info("XMPP account %s: received %s from %s (%d bytes)", account, name, sender, size)
            try:
                await self._endpoints[account].file(sender, name, partial)
            except SkypeError as refused:
                log.info("XMPP account %s: file from %s refused: %s", account, sender, refused.text)

    async def _fetch(self, url: str, out: "tempfile._TemporaryFileWrapper[bytes]") -> int:
        size = 0
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            response.raise_for_status()
            if (response.content_length or 0) > self._max_file_size:
                raise _TooLarge(f"{response.content_length} bytes announced, the limit is {self._max_file_size}")
            async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK):
                size += len(chunk)
                if size > self._max_file_size:
                    raise _TooLarge(f"more than {self._max_file_size} bytes")
                out.write(chunk)
        return size

    # -- calls ------------------------------------------------------------------------------------
    async def place_call(self, call: Call) -> None:
        connection = self._accounts[call.account]
        connection.require_online()
        bare = bare_jid(call.partner)
        contact = connection.contacts.get(bare)
        if contact is not None and contact.seen and not contact.resources:
            endpoint = self._endpoints[call.account]
            asyncio.get_running_loop().call_soon(lambda: endpoint.call_event(call.id, CallEvent.FAIL,
                                                                             reason="user is offline"))
            return
        connection.calls.place(call, bare)

    async def call_action(self, call: Call, event: CallEvent, **details: str) -> None:
        calls = self._accounts[call.account].calls
        calls.action(call, event)
        if call.is_ended:
            calls.forget(call)

    async def send_dtmf(self, call: Call, digits: str) -> None:
        self._accounts[call.account].calls.dtmf(call, digits)

    async def check_transfer(self, call: Call, target: str) -> None:
        raise _no(call.account, Feature.CALL_TRANSFER)

    def forget(self, call: Call) -> None:
        self._accounts[call.account].calls.forget(call)


class _TooLarge(Exception):
    pass


def _no(account: str, feature: Feature) -> SkypeError:
    return SkypeError(errors.NOT_SUPPORTED, f"{account} is on the xmpp network, which has no {feature.value}")
