"""Files, SMS and voicemail of the accounts, and the SkypeOut balance that SMS cost."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from ..files import copy_incoming
from ..media.paths import MediaFile
from ..model import errors
from ..model.calls import Call
from ..model.errors import SkypeError
from ..model.events import BalanceChanged, EventBus, FileTransferChanged, SmsChanged, VoicemailReceived
from ..network.driver import NetworkDriver
from .contacts import Contacts
from .registry import Accounts
from .store import Store


class Deliveries:
    def __init__(
        self, accounts: Accounts, contacts: Contacts, store: Store, network: NetworkDriver, bus: EventBus,
        incoming_dir: Path,
    ) -> None:
        self._accounts = accounts
        self._contacts = contacts
        self._store = store
        self._network = network
        self._bus = bus
        self._incoming_dir = incoming_dir

    def seed_balances(self, initial: dict[str, tuple[int, str]]) -> None:
        """The config's balances, for accounts the store does not hold yet; the store's currency wins."""
        for name, (balance, currency) in initial.items():
            _, stored_currency = self._store.ensure_account(name, balance, currency)
            self._accounts.get(name).currency = stored_currency

    def balance(self, account: str) -> tuple[int, str]:
        self._accounts.get(account)
        balance = self._store.balance(account)
        assert balance is not None  # `seed_balances` stores every account's balance before the gateway serves
        return balance

    async def send_sms(self, account: str, number: str, body: str) -> int:
        currency = self._accounts.get(account).currency
        price = self._network.sms_price(account, number, body)
        await self._network.send_sms(account, number, body)
        balance = self._store.charge(account, price)
        if balance is None:
            have, _ = self.balance(account)
            raise SkypeError(errors.CANNOT_SEND, f"SkypeOut credit too low: the SMS costs {price}, balance is {have} {currency}")
        sms_id = self._store.add_sms(account, number, body, "DELIVERED", price)
        self._bus.publish(BalanceChanged(account, balance, currency))
        for status in ("SENDING_TO_SERVER", "DELIVERED"):
            self._bus.publish(SmsChanged(account, sms_id, number, status, price, currency))
        return sms_id

    async def send_file(self, account: str, handle: str, source: MediaFile) -> int:
        self._accounts.get(account)
        await self._network.check_user(account, handle)
        if self._contacts.is_blocked(account, handle):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{handle} is blocked by {account}")
        name = source.path.name
        with open(source.fd, "rb", closefd=False) as data:
            await self._network.send_file(account, handle, name, data)
        transfer_id = self._store.add_transfer(account, handle, name, str(source.path), "COMPLETED", "outgoing")
        self._bus.publish(FileTransferChanged(account, transfer_id, handle, name, "COMPLETED", "outgoing",
                                              str(source.path)))
        return transfer_id

    async def file_received(self, account: str, sender: str, file_name: str, source: BinaryIO) -> None:
        """Keep a copy of a file `sender` sent, in the account's incoming folder (never overwriting)."""
        if self._contacts.is_blocked(account, sender):
            raise SkypeError(errors.NOT_AUTHORIZED, f"{account} does not accept files from {sender}")
        stored = await copy_incoming(self._incoming_dir / account, file_name, source)
        transfer_id = self._store.add_transfer(account, sender, stored.name, str(stored), "COMPLETED", "incoming")
        self._bus.publish(FileTransferChanged(account, transfer_id, sender, stored.name, "COMPLETED", "incoming",
                                              str(stored)))

    def voicemail_received(self, call: Call) -> None:
        """A caller left a voicemail on an incoming call (it ended VM_SENT)."""
        seconds = call.voicemail_seconds if call.voicemail_seconds is not None else call.message_seconds
        path = call.voicemail_path
        self._bus.publish(VoicemailReceived(call.account, call.id, call.id, call.partner, "RECEIVED", round(seconds),
                                            Path(path).name if path else "", path))
