"""A read-only view of a running gateway, for the admin socket (`show …`) and the metrics endpoint.

It reads plain attributes only, so the metrics endpoint can read it from its own thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from .agi.server import AgiServer
from .ami.listener import AmiListener
from .loopmonitor import LoopMonitor
from .manager.accounts import AccountManager
from .media.engine import MediaEngine
from .model.calls import Call


@dataclass(frozen=True)
class AccountState:
    name: str
    network: str
    status: str
    fullname: str
    balance: int
    currency: str
    calls: int
    auth_policy: str


@dataclass(frozen=True)
class ChatState:
    account: str
    name: str
    partner: str
    messages: int
    open: bool
    created: float


@dataclass(frozen=True)
class EndedCall:
    """A call of the history: how it ended."""

    id: int
    account: str
    partner: str
    direction: str
    status: str
    reason: str
    started: float
    duration: float
    """Seconds from the answer to the end (0 for a call never answered)."""


@dataclass(frozen=True)
class AmiState:
    connected: bool
    queued: int
    delivered: int
    rejected: int
    dropped: int


class GatewayStatus:
    def __init__(self, manager: AccountManager, agi: AgiServer, engine: MediaEngine, loop: LoopMonitor,
                 ami: AmiListener | None) -> None:
        self._manager = manager
        self._agi = agi
        self._engine = engine
        self._loop = loop
        self._ami = ami

    def accounts(self) -> list[AccountState]:
        manager = self._manager
        live = [call.account for call in self.calls()]
        rows = []
        for account in manager.accounts.all():
            balance, currency = manager.deliveries.balance(account.name)
            rows.append(AccountState(account.name, account.network, account.status, account.profile.fullname,
                                     balance, currency, live.count(account.name), account.auth_policy))
        return rows

    def calls(self) -> list[Call]:
        """The live calls, by id."""
        return sorted(tuple(self._manager.calls.live.values()), key=lambda call: call.id)

    def chats(self) -> list[ChatState]:
        store = self._manager.store
        return [
            ChatState(name, chat["name"], chat["partner"], len(store.messages(name, chat["name"])),
                      not chat["left_at"], chat["created"])
            for name in self._manager.accounts.names()
            for chat in store.chats(name)
        ]

    def history(self, account: str | None = None, since: float | None = None, until: float | None = None,
                limit: int | None = None) -> list[EndedCall]:
        """Ended calls, oldest first (the store's call history; see `Store.call_history` for the filters)."""
        return [
            EndedCall(row["id"], row["account"], row["partner"], row["direction"], row["status"],
                      row["failure_reason"], row["started"], row["duration"])
            for row in self._manager.store.call_history(account, since, until, limit)
        ]

    @property
    def agi_sessions(self) -> int:
        """FastAGI connections open now."""
        return self._agi.active

    @property
    def agi_refused(self) -> int:
        return self._agi.refused

    @property
    def ami(self) -> AmiState | None:
        """None when AMI is off."""
        ami = self._ami
        if ami is None:
            return None
        return AmiState(ami.connected, ami.queued, ami.delivered, ami.rejected, ami.dropped)

    @property
    def media_ticks(self) -> tuple[int, int]:
        """(ticks run, ticks late or skipped) of the media clock."""
        return self._engine.ticks, self._engine.late_ticks

    @property
    def loop_lag(self) -> tuple[float, float]:
        """(the last, the worst) event-loop lag, in seconds."""
        return self._loop.lag, self._loop.worst
