"""The shared account manager: the accounts and everything they hold, in three parts.

Actions (FastAGI and the admin socket), the AMI listener and the media bridge all go
through it: `calls` (placing, answering, ending calls), `contacts` (contacts and chats)
and `deliveries` (files, SMS, voicemail, balance). Each part owns its state; they use
each other's public methods only. Every state change is written to SQLite first and then
published on the event bus.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..background import Background
from ..model import errors
from ..model.accounts import Account
from ..model.capabilities import Feature
from ..model.errors import SkypeError
from ..model.events import EventBus
from ..network.driver import NetworkDriver
from .calls import Calls
from .contacts import Contacts
from .deliveries import Deliveries
from .endpoint import AccountEndpoint
from .registry import Accounts
from .store import Store

log = logging.getLogger("fastagi.manager")


class AccountManager:
    def __init__(
        self,
        accounts: list[Account],
        store: Store,
        network: NetworkDriver,
        bus: EventBus,
        incoming_dir: Path,
        ring_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.network = network
        self.bus = bus
        self.background = Background(log)
        self.accounts = Accounts(accounts, bus)
        self.contacts = Contacts(self.accounts, store, network, bus, self.background)
        self.deliveries = Deliveries(self.accounts, self.contacts, store, network, bus, incoming_dir)
        self.calls = Calls(self.accounts, self.contacts, self.deliveries, store, network, bus, self.background,
                           ring_timeout)
        for account in accounts:
            network.register(account.name, AccountEndpoint(
                account.name, self.accounts, self.contacts, self.deliveries, self.calls))

    def require(self, account: str, feature: Feature) -> None:
        """`not_supported` when the account's network lacks `feature`."""
        network = self.network
        if feature not in network.capabilities(account):
            kind = self.accounts.get(account).network
            raise SkypeError(errors.NOT_SUPPORTED, f"{account} is on the {kind} network, which has no {feature.value}")

    async def close(self) -> None:
        """End every call and background task (the gateway stops)."""
        await self.calls.close()
        await self.background.close()
