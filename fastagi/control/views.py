"""What `show` answers: the gateway's state as tables, and bus events as records."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Iterable

from ..ami import userevents
from ..model.accounts import amount
from ..model.events import Event
from ..status import GatewayStatus
from .protocol import Table


def timestamp(when: float) -> str:
    """Local time with its UTC offset, to the millisecond."""
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="milliseconds")


def accounts(status: GatewayStatus) -> Table:
    rows = [(a.name, a.network, a.status, a.fullname, amount(a.balance), a.currency, a.calls, a.auth_policy)
            for a in status.accounts()]
    return Table(("account", "network", "status", "fullname", "balance", "currency", "calls", "auth_policy"), rows)


def calls(status: GatewayStatus) -> Table:
    rows = [
        (c.id, c.account, c.partner, c.partner_name, c.direction, c.status.value, int(c.duration), c.conference_id, c.uuid)
        for c in status.calls()
    ]
    return Table(("id", "account", "partner", "partner_name", "direction", "status", "duration_seconds", "conference_id",
                  "uuid"), rows)


def history(status: GatewayStatus, account: str | None = None, since: float | None = None, until: float | None = None,
            limit: int | None = None) -> Table:
    rows = [(c.id, c.account, c.partner, c.direction, c.status, c.reason, timestamp(c.started), round(c.duration, 1))
            for c in status.history(account, since, until, limit)]
    return Table(("id", "account", "partner", "direction", "status", "reason", "started", "duration_seconds"), rows)


def chats(status: GatewayStatus) -> Table:
    rows = [
        (chat.account, chat.name, chat.partner, chat.messages, "open" if chat.open else "left", timestamp(chat.created))
        for chat in status.chats()
    ]
    return Table(("account", "chat", "partner", "messages", "state", "created"), rows)


def event_record(event: Event, when: float | None = None) -> dict[str, Any]:
    return {"time": timestamp(time.time() if when is None else when), "kind": userevents.kind(event),
            "account": event.account, "fields": userevents.fields(event)}


def events(records: Iterable[dict[str, Any]]) -> Table:
    """The history's records (time in epoch seconds) as the table `show events` prints."""
    columns = ("time", "kind", "account", "fields")
    return Table(columns, [(timestamp(r["time"]), r["kind"], r["account"], r["fields"]) for r in records])
