"""The control socket's protocol: one JSON object per line, both ways (sans-I/O).

Requests (client → server):

    {"request": "show", "what": "accounts" | "calls" | "chats" | "events", "follow": false}
    {"request": "action", "name": "call-start", "arguments": {"account": "alice", "user-name": "echo123"}}
    {"request": "network-call", "user": "carol", "account": "alice"}

Replies (server → client), one per request:

    {"ok": true, "columns": [...], "rows": [[...], ...]}          a `show`
    {"ok": true, "result": "SUCCESS" | code, "text": "...", "variables": {...}}   an `action`
    {"ok": false, "error": "why the request was refused"}

`show events` with `follow` then streams `{"event": {...}}` lines until either side
closes; a stream the client does not read fast enough ends with an `ok: false` line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 1 << 20  # one request or reply; an action's arguments are far smaller
READ_CHUNK = 65536  # bytes read from the socket at a time, by both ends
SHOWABLE = ("accounts", "calls", "chats", "events")

Message = dict[str, Any]


class ProtocolError(ValueError):
    """A line that is not a message of this protocol; the text says why."""


def encode(message: Message) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class LineDecoder:
    """Bytes in, messages out; a line longer than `limit` is a ProtocolError."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        *lines, rest = self._buffer.split(b"\n")
        if len(rest) > self.limit:
            raise ProtocolError(f"line longer than {self.limit} bytes")
        self._buffer = bytearray(rest)
        return [_decode(line) for line in lines if line.strip()]


def _decode(line: bytes) -> Message:
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("not a request: JSON nested too deeply") from None
    except ValueError:  # json's int() refuses numbers of more than 4,300 digits
        raise ProtocolError("not a request: a number too long") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message is a JSON object")
    return message


# -- requests ----------------------------------------------------------------------
@dataclass(frozen=True)
class Show:
    what: str
    follow: bool = False

    def to_message(self) -> Message:
        return {"request": "show", "what": self.what, "follow": self.follow}


@dataclass(frozen=True)
class RunAction:
    name: str
    arguments: dict[str, str] = field(default_factory=dict)

    def to_message(self) -> Message:
        return {"request": "action", "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class RemoteCall:
    """A scripted user of the embedded network calls an account (to try incoming-call dialplans)."""

    user: str
    account: str

    def to_message(self) -> Message:
        return {"request": "network-call", "user": self.user, "account": self.account}


Request = Show | RunAction | RemoteCall


def parse_request(message: Message) -> Request:
    kind = message.get("request")
    if kind == "show":
        what, follow = message.get("what"), message.get("follow", False)
        if what not in SHOWABLE:
            raise ProtocolError(f"show what? one of {', '.join(SHOWABLE)}")
        if not isinstance(follow, bool) or (follow and what != "events"):
            raise ProtocolError("follow is true or false, and only for events")
        return Show(what, follow)
    if kind == "action":
        name, arguments = message.get("name"), message.get("arguments", {})
        if not isinstance(name, str):
            raise ProtocolError("an action request needs its name")
        if not isinstance(arguments, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in arguments.items()):
            raise ProtocolError("arguments are an object of strings")
        return RunAction(name, arguments)
    if kind == "network-call":
        user, account = message.get("user"), message.get("account")
        if not isinstance(user, str) or not isinstance(account, str):
            raise ProtocolError("a network-call request needs user and account")
        return RemoteCall(user, account)
    raise ProtocolError(f"unknown request {str(kind)[:40]!r}: show, action or network-call")


# -- replies -----------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """Rows of JSON values under named columns (the keys of `--json` objects)."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def to_message(self) -> Message:
        return {"ok": True, "columns": list(self.columns), "rows": [list(row) for row in self.rows]}

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def table_of(message: Message) -> Table:
    return Table(tuple(message["columns"]), [tuple(row) for row in message["rows"]])


def error_reply(text: str) -> Message:
    return {"ok": False, "error": text}


def action_reply(result: str, text: str, variables: dict[str, str]) -> Message:
    return {"ok": True, "result": result, "text": text, "variables": variables}


def event_message(record: dict[str, Any]) -> Message:
    return {"event": record}
