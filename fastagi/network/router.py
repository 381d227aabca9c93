"""Several networks behind the one driver interface: each account's requests go to its own network."""

from __future__ import annotations

import asyncio
from typing import BinaryIO

from ..model.calls import Call, CallEvent
from ..model.capabilities import Feature
from ..model.profiles import Profile
from .driver import Endpoint, NetworkDriver


class Networks:
    """A `NetworkDriver` that hands each request to the driver of the account it concerns."""

    name = "networks"

    def __init__(self, drivers: list[NetworkDriver], account_networks: dict[str, str]) -> None:
        by_name = {driver.name: driver for driver in drivers}
        self._drivers = drivers
        self._of = {account: by_name[network] for account, network in account_networks.items()}

    def of(self, account: str) -> NetworkDriver:
        """The driver of `account`'s network."""
        return self._of[account]

    def capabilities(self, account: str) -> frozenset[Feature]:
        return self._of[account].capabilities(account)

    def register(self, account: str, endpoint: Endpoint) -> None:
        self._of[account].register(account, endpoint)

    async def start(self) -> None:
        for driver in self._drivers:
            await driver.start()

    async def close(self) -> None:
        await asyncio.gather(*(driver.close() for driver in self._drivers))

    def known(self, account: str, handle: str) -> Profile | None:
        return self._of[account].known(account, handle)

    async def check_user(self, account: str, handle: str) -> None:
        await self._of[account].check_user(account, handle)

    async def profile(self, account: str, handle: str) -> Profile:
        return await self._of[account].profile(account, handle)

    def chat_name(self, account: str, handle: str) -> str | None:
        return self._of[account].chat_name(account, handle)

    async def send_chat_message(self, account: str, handle: str, chat_name: str, body: str) -> None:
        await self._of[account].send_chat_message(account, handle, chat_name, body)

    async def send_auth_request(self, account: str, handle: str, text: str) -> None:
        await self._of[account].send_auth_request(account, handle, text)

    async def send_auth_reply(self, account: str, handle: str, accepted: bool) -> None:
        await self._of[account].send_auth_reply(account, handle, accepted)

    async def remove_contact(self, account: str, handle: str) -> None:
        await self._of[account].remove_contact(account, handle)

    async def set_blocked(self, account: str, handle: str, blocked: bool) -> None:
        await self._of[account].set_blocked(account, handle, blocked)

    def sms_price(self, account: str, number: str, body: str) -> int:
        return self._of[account].sms_price(account, number, body)

    async def send_sms(self, account: str, number: str, body: str) -> None:
        await self._of[account].send_sms(account, number, body)

    async def send_file(self, account: str, handle: str, file_name: str, source: BinaryIO) -> None:
        await self._of[account].send_file(account, handle, file_name, source)

    async def place_call(self, call: Call) -> None:
        await self._of[call.account].place_call(call)

    async def call_action(self, call: Call, event: CallEvent, **details: str) -> None:
        await self._of[call.account].call_action(call, event, **details)

    async def send_dtmf(self, call: Call, digits: str) -> None:
        await self._of[call.account].send_dtmf(call, digits)

    async def check_transfer(self, call: Call, target: str) -> None:
        await self._of[call.account].check_transfer(call, target)

    def forget(self, call: Call) -> None:
        self._of[call.account].forget(call)
