"""The control socket's protocol: one JSON object per line, both ways (sans-I/O).

Requests (client → server):

    {"request": "show", "what": "accounts" | "calls" | "chats" | "events" | "history", "follow": false}
    {"request": "show", "what": "history", "account": "alice", "since": 1764800000.0, "until": null, "limit": 100}
    {"request": "action", "name": "call-start", "arguments": {"account": "alice", "user-name": "echo123"}}
    {"request": "network-call", "user": "carol", "account": "alice"}
    {"request": "network-send", "kind": "chat" | "buddy" | "file", "user": "carol", "account": "alice",
     "text": "hi" (chat, buddy), "file_name": "a.pdf", "data": base64 of the file (file)}

Replies (server → client), one per request:

    {"ok": true, "columns": [...], "rows": [[...], ...]}          a `show`
    {"ok": true, "result": "SUCCESS" | code, "text": "...", "variables": {...}}   an `action`
    {"ok": false, "error": "why the request was refused"}

`show events` with `follow` then streams `{"event": {...}}` lines until either side
closes; a stream the client does not read fast enough ends with an `ok: false` line.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 1 << 20  # one request or reply; an action's arguments are far smaller
READ_CHUNK = 65536  # bytes read from the socket at a time, by both ends
SHOWABLE = ("accounts", "calls", "chats", "events", "history")
SENDABLE = ("chat", "buddy", "file")  # what a scripted user can send an account (network-send)
MAX_FILE = 512 * 1024  # a file sent through the socket: its base64 fits in one request line
HISTORY_FILTERS = ("account", "since", "until", "limit")  # `show history` only

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
    account: str | None = None
    since: float | None = None
    """Epoch seconds: calls started at or after it."""
    until: float | None = None
    """Epoch seconds: calls started before it."""
    limit: int | None = None
    """The newest this many calls."""

    def to_message(self) -> Message:
        filters = {name: getattr(self, name) for name in HISTORY_FILTERS if getattr(self, name) is not None}
        return {"request": "show", "what": self.what, "follow": self.follow, **filters}


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


@dataclass(frozen=True)
class RemoteSend:
    """A scripted user of the embedded network sends an account a chat message, a buddy request or a file."""

    kind: str
    user: str
    account: str
    text: str = ""
    file_name: str = ""
    data: bytes = b""

    def to_message(self) -> Message:
        message = {"request": "network-send", "kind": self.kind, "user": self.user, "account": self.account}
        if self.kind == "file":
            return {**message, "file_name": self.file_name, "data": base64.b64encode(self.data).decode("ascii")}
        return {**message, "text": self.text}


Request = Show | RunAction | RemoteCall | RemoteSend


def parse_request(message: Message) -> Request:
    kind = message.get("request")
    if kind == "show":
        what, follow = message.get("what"), message.get("follow", False)
        if what not in SHOWABLE:
            raise ProtocolError(f"show what? one of {', '.join(SHOWABLE)}")
        if not isinstance(follow, bool) or (follow and what != "events"):
            raise ProtocolError("follow is true or false, and only for events")
        filters = {name: message[name] for name in HISTORY_FILTERS if message.get(name) is not None}
        if filters and what != "history":
            raise ProtocolError(f"{', '.join(filters)}: only for history")
        _check_filters(filters)
        return Show(what, follow, **filters)
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
    if kind == "network-send":
        return _remote_send(message)
    raise ProtocolError(f"unknown request {str(kind)[:40]!r}: show, action, network-call or network-send")


def _remote_send(message: Message) -> RemoteSend:
    kind, user, account = message.get("kind"), message.get("user"), message.get("account")
    if kind not in SENDABLE:
        raise ProtocolError(f"network-send what? one of {', '.join(SENDABLE)}")
    if not isinstance(user, str) or not isinstance(account, str):
        raise ProtocolError("a network-send request needs user and account")
    if kind != "file":
        text = message.get("text", "")
        if not isinstance(text, str):
            raise ProtocolError("text is a string")
        return RemoteSend(kind, user, account, text=text)
    file_name, data = message.get("file_name"), message.get("data")
    if not isinstance(file_name, str) or not file_name or not isinstance(data, str):
        raise ProtocolError("a file needs file_name and data (base64)")
    try:
        content = base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ProtocolError("data is not base64") from None
    if len(content) > MAX_FILE:
        raise ProtocolError(f"a file sent this way is {MAX_FILE // 1024} KiB at most")
    return RemoteSend(kind, user, account, file_name=file_name, data=content)


def _check_filters(filters: dict[str, Any]) -> None:
    if not isinstance(filters.get("account", ""), str):
        raise ProtocolError("account is a string")
    for name in ("since", "until"):
        value = filters.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(f"{name} is a number of seconds since the epoch")
    limit = filters.get("limit", 1)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ProtocolError("limit is a whole number, 1 or more")


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
