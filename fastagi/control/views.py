"""What `show` answers: the gateway's state as tables, and bus events as records."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from ..manager.events import Event
from .protocol import Table

if TYPE_CHECKING:
    from ..app import Gateway


def timestamp(when: float) -> str:
    """Local time with its UTC offset, to the millisecond."""
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="milliseconds")


def accounts(gateway: Gateway) -> Table:
    manager = gateway.manager
    rows = []
    for name in manager.names():
        account = manager.accounts[name]
        balance, currency = manager.balance(name)
        rows.append((name, account.status, account.profile.fullname, balance, currency,
                     len(manager.live_calls(name)), account.auth_policy))
    return Table(("account", "status", "fullname", "balance", "currency", "calls", "auth_policy"), rows)


def calls(gateway: Gateway) -> Table:
    rows = [
        (c.id, c.account, c.partner, c.partner_name, c.direction, c.status.value, int(c.duration), c.conference_id, c.uuid)
        for c in sorted(gateway.manager.calls.values(), key=lambda c: c.id)
    ]
    return Table(("id", "account", "partner", "partner_name", "direction", "status", "duration", "conference_id", "uuid"), rows)


def chats(gateway: Gateway) -> Table:
    store = gateway.manager.store
    rows = [
        (name, chat["name"], chat["partner"], len(store.messages(name, chat["name"])),
         "left" if chat["left_at"] else "open", timestamp(chat["created"]))
        for name in gateway.manager.names()
        for chat in store.chats(name)
    ]
    return Table(("account", "chat", "partner", "messages", "state", "created"), rows)


def event_record(event: Event, when: float | None = None) -> dict[str, Any]:
    return {"time": timestamp(time.time() if when is None else when), "kind": event.kind.value,
            "account": event.account, "fields": dict(event.fields)}


def events(records: Iterable[dict[str, Any]]) -> Table:
    columns = ("time", "kind", "account", "fields")
    return Table(columns, [tuple(record[c] for c in columns) for record in records])
