"""Shared fixtures: a gateway on an ephemeral port with its state in a temporary folder."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

sys.path.insert(0, str(Path(__file__).parent))

from fastagi.ami import userevents  # noqa: E402
from fastagi.app import Gateway, with_ports  # noqa: E402
from fastagi.config import ENVIRONMENT, load_config  # noqa: E402
from fastagi.model.events import Event  # noqa: E402

import pytest  # noqa: E402

# No test, nor any command it runs, reads the machine's configuration (/etc/skype-fastagi/…):
# set empty, the variable means "no file, the embedded defaults" unless --config says otherwise.
os.environ[ENVIRONMENT] = ""

ACCOUNTS = """
[alice]
type = account
fullname = Alice Example
balance = 1050
currency = EUR
auth_policy = ask
city = Lyon

[bob]
type = account
fullname = Bob Builder
balance = 5
currency = USD
auth_policy = allow
"""

USERS = """
[carol]
type = user
fullname = Carol Remote
country = Italy
behaviour = answer
ring_delay = 0.01
answer_delay = 0.01

[dave]
type = user
fullname = Dave Denier
auth_policy = deny
behaviour = busy
ring_delay = 0.01
answer_delay = 0.01

[erin]
type = user
behaviour = offline
"""


def write_config(tmp_path: Path, body: str, general: str = "") -> Path:
    (tmp_path / "media").mkdir(exist_ok=True)
    text = f"""
[general]
database = {tmp_path / 'state.db'}
media_dir = {tmp_path / 'media'}
incoming_dir = {tmp_path / 'incoming'}
control_socket = {tmp_path / 'skype-fastagi.ctl'}
{general}
{body}
"""
    path = tmp_path / "skype-fastagi.conf"
    path.write_text(text)
    return path


@asynccontextmanager
async def running_gateway(tmp_path: Path, body: str = ACCOUNTS + USERS, general: str = "") -> AsyncIterator[Gateway]:
    config = with_ports(load_config(write_config(tmp_path, body, general)), 0, 0)
    gateway = Gateway(config)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


class Dialplan:
    """Runs actions like `AGI()` lines of a dialplan, each on a fresh channel."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def __call__(self, account: str, action: str, **args: str) -> dict[str, str]:
        """`AGI(agi://…/action?account=…&name=value…)`; argument `user_name` is sent as `user-name`."""
        from doubles.asterisk_agi import FakeAsterisk

        query = "&".join([f"account={account}"] + [f"{k.replace('_', '-')}={v}" for k, v in args.items()])
        result = await FakeAsterisk(self.port).agi(f"{action}?{query}")
        assert result.agistatus == "SUCCESS"
        return result.skype()


async def connect_from(source: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to 127.0.0.1:`port` from `source`, another loopback address (to meet a server's `permit`)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


def run(coro):  # type: ignore[no-untyped-def]
    """Run one async test body in a fresh event loop."""
    return asyncio.run(coro)


@dataclass(frozen=True)
class Seen:
    """An event as Asterisk sees it: `SkypeCallStatus` is kind `CallStatus`, with its header fields."""

    kind: str
    account: str
    fields: dict[str, str]
    event: Event


def seen(event: Event) -> Seen:
    return Seen(userevents.kind(event), event.account, userevents.fields(event), event)


class Recorder:
    """Every event the gateway publishes (as `Seen`), with a way to wait for one."""

    def __init__(self, bus) -> None:  # type: ignore[no-untyped-def]
        self.events: list[Seen] = []
        self._changed = asyncio.Event()
        bus.subscribe(self._record)

    def _record(self, event: Event) -> None:
        self.events.append(seen(event))
        self._changed.set()

    async def wait(self, predicate, timeout: float = 5.0, since: int = 0):  # type: ignore[no-untyped-def]
        """The first event from index `since` on that matches, waiting up to `timeout` for it."""
        async def first():  # type: ignore[no-untyped-def]
            seen = since
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(first(), timeout)

    def statuses(self, account: str, call_id: int | str) -> list[str]:
        return [e.fields["Status"] for e in self.events
                if e.kind == "CallStatus" and e.account == account and e.fields["CallID"] == str(call_id)]

    async def status(self, account: str, call_id: int | str, status: str, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        return await self.wait(lambda e: e.kind == "CallStatus" and e.account == account
                               and e.fields["CallID"] == str(call_id) and e.fields["Status"] == status, timeout)


# -- XMPP ------------------------------------------------------------------------------------
_names = itertools.count(1)


def unique(name: str) -> str:
    """A user name no other test of this run has taken on the shared server."""
    return f"{name}{next(_names)}"


@pytest.fixture(scope="session")
def prosody():  # type: ignore[no-untyped-def]
    """The tests' Prosody, started once per run; skipped (or failed, in CI) without the package."""
    from xmpp.server import Prosody, available

    if not available():
        if os.environ.get("SKYPE_FASTAGI_REQUIRE_XMPP") == "1":
            pytest.fail("Prosody is not installed, and SKYPE_FASTAGI_REQUIRE_XMPP=1 requires it")
        pytest.skip("Prosody is not installed (apt-get install prosody): the XMPP tests are skipped")
    server = Prosody()
    server.start()
    yield server
    server.remove()


def xmpp_account(server, name: str, jid: str, password: str = "secret", **keys: str) -> str:  # type: ignore[no-untyped-def]
    """A `network = xmpp` account section of the gateway's config, on the tests' Prosody (STARTTLS, its CA)."""
    lines = {"type": "account", "network": "xmpp", "jid": jid, "password": password, "xmpp_server": "127.0.0.1",
             "xmpp_port": str(server.c2s_port), "xmpp_ca_file": str(server.ca_file), **keys}
    return f"\n[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in lines.items())
