"""The accounts registered on this gateway, by name."""

from __future__ import annotations

from ..model import errors
from ..model.accounts import Account
from ..model.errors import SkypeError
from ..model.events import AccountChanged, EventBus


class Accounts:
    def __init__(self, accounts: list[Account], bus: EventBus) -> None:
        self._accounts = {account.name: account for account in accounts}
        self._bus = bus

    def get(self, name: str) -> Account:
        """The account `name`, or `unknown_account`."""
        try:
            return self._accounts[name]
        except KeyError:
            raise SkypeError(errors.UNKNOWN_ACCOUNT, f"no account {name!r} is registered here") from None

    def names(self) -> list[str]:
        return list(self._accounts)

    def all(self) -> list[Account]:
        return list(self._accounts.values())

    def set_status(self, name: str, status: str) -> None:
        """The account's link to its network changed (`SkypeAccountStatus`)."""
        self._accounts[name].status = status
        self._bus.publish(AccountChanged(name, status))
