"""Sans-I/O FastAGI protocol core: bytes in, environment and replies out.

Modelled on what Asterisk 22's `res_agi.c` really sends (see the captures): an
environment block of `agi_key: value` lines ended by an empty line, then one reply per
command: `200 result=N[ (data)][ endpos=N]`, `510 …`, `511 …`, or a multi-line
`520-…` usage block ended by `520 End of proper usage.`. An unsolicited `HANGUP` line
may arrive between replies; it is an event of its own, never mistaken for a reply.

The connection is an explicit state machine:

    ENVIRONMENT --(empty line)--> IDLE --send_command--> AWAITING_REPLY --reply--> IDLE
    any state --(peer closed)--> CLOSED

Commands may be pipelined (each one adds an outstanding reply); whether that is safe on
a live socket is the I/O layer's decision (see `session.py`).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field

MAX_COMMAND_BYTES = 8192  # Asterisk reads commands with a buffer of this size


class AgiProtocolError(Exception):
    """The peer broke the protocol or a limit; the session must end."""


class State(enum.Enum):
    ENVIRONMENT = "environment"
    IDLE = "idle"
    AWAITING_REPLY = "awaiting_reply"
    CLOSED = "closed"


@dataclass(frozen=True)
class Limits:
    max_line: int = 8192
    max_environment: int = 65536
    max_arguments: int = 128
    max_usage_lines: int = 64  # a 520 usage block: Asterisk's longest is a few dozen lines
    max_hangups: int = 8  # Asterisk sends one `HANGUP` per channel: a flood of them is not Asterisk


@dataclass(frozen=True)
class Environment:
    """The `agi_*` variables of a session, `agi_arg_N` kept apart and in order."""

    variables: dict[str, str]
    arguments: list[str]

    def get(self, key: str, default: str = "") -> str:
        return self.variables.get(key, default)


@dataclass(frozen=True)
class Reply:
    code: int
    result: str = ""
    data: str | None = None
    lines: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.code == 200


@dataclass(frozen=True)
class Hangup:
    """Asterisk's unsolicited `HANGUP`: the channel is gone, the session may go on."""


@dataclass(frozen=True)
class Closed:
    """The peer closed its side."""


Event = Environment | Reply | Hangup | Closed

_REPLY_200 = re.compile(r"^200 result=(?P<result>-?\S*)(?: \((?P<data>.*)\))?(?: endpos=-?\d+)?$")
_SET_VARIABLE_REPLY = Reply(200, "1", None, ("200 result=1",))
_SET_VARIABLE_LINE = b"200 result=1\n"  # the reply to nearly every command a session sends
_ENVIRONMENT_PAIR = re.compile(r"^(agi_[^:\n]*): ?(.*)$", re.MULTILINE)  # one leading space dropped
_TRAILING_CR = re.compile(r"\r+$", re.MULTILINE)
_EMPTY_LINE = re.compile(rb"\n\r?\n")


def _environment_end(buffer: bytearray) -> tuple[int, int] | None:
    """Where the empty line that ends the environment starts and ends in `buffer`, if it is there."""
    for empty in (b"\n", b"\r\n"):
        if buffer.startswith(empty):
            return 0, len(empty)
    found = _EMPTY_LINE.search(buffer)
    return (found.start() + 1, found.end()) if found else None


class AgiConnection:
    """One FastAGI session seen from the server side, without any I/O."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.state = State.ENVIRONMENT
        self._buffer = bytearray()
        self._env: dict[str, str] = {}
        self._env_bytes = 0
        self._arguments = False  # whether an `agi_arg_N` line may have come
        self._usage: list[str] | None = None
        self._hangups = 0
        self._outstanding = 0

    # -- input ---------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer (b"" means it closed); returns the new events."""
        if self.state is State.CLOSED:
            return []
        if not data:
            self.state = State.CLOSED
            return [Closed()]
        self._buffer += data
        events: list[Event] = []
        if self.state is State.ENVIRONMENT:
            environment = self._receive_environment()
            if environment is None:
                return events
            events.append(environment)
        while self.state is not State.CLOSED:
            if self._outstanding and self._usage is None and self._buffer.startswith(_SET_VARIABLE_LINE):
                del self._buffer[: len(_SET_VARIABLE_LINE)]  # the usual reply, taken without decoding a line
                events.append(self._replied(_SET_VARIABLE_REPLY))
                continue
            line = self._next_line()
            if line is None:
                break
            event = self._handle_line(line)
            if event is not None:
                events.append(event)
        return events

    def _receive_environment(self) -> Environment | None:
        """Take the environment's complete lines from the buffer (all at once: the usual case is one chunk).

        Lines are checked as soon as they are complete, so garbage is refused at its first line.
        """
        end = _environment_end(self._buffer)
        complete = end[0] if end else self._buffer.rfind(b"\n") + 1
        if not end and len(self._buffer) - complete > self.limits.max_line:
            raise AgiProtocolError(f"line longer than {self.limits.max_line} bytes")
        block = bytes(self._buffer[:complete])
        del self._buffer[: end[1] if end else complete]
        self._env_bytes += len(block)
        if self._env_bytes > self.limits.max_environment:
            raise AgiProtocolError(f"environment larger than {self.limits.max_environment} bytes")
        if len(block) > self.limits.max_line and max(map(len, block.split(b"\n"))) > self.limits.max_line:
            raise AgiProtocolError(f"line longer than {self.limits.max_line} bytes")
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AgiProtocolError("invalid UTF-8 from the peer") from exc
        self._environment_lines(_TRAILING_CR.sub("", text) if "\r" in text else text)
        if end is None:
            return None
        self.state = State.IDLE
        return self._build_environment()

    def _next_line(self) -> str | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > self.limits.max_line:
                raise AgiProtocolError(f"line longer than {self.limits.max_line} bytes")
            return None
        if end > self.limits.max_line:
            raise AgiProtocolError(f"line longer than {self.limits.max_line} bytes")
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        try:
            return raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise AgiProtocolError("invalid UTF-8 from the peer") from exc

    def _handle_line(self, line: str) -> Event | None:
        if line == "HANGUP":
            self._hangups += 1
            if self._hangups > self.limits.max_hangups:
                raise AgiProtocolError(f"more than {self.limits.max_hangups} HANGUP lines")
            return Hangup()
        if self.state is not State.AWAITING_REPLY:
            raise AgiProtocolError(f"unexpected line from the peer: {line[:80]!r}")
        return self._reply_line(line)

    def _environment_lines(self, text: str) -> None:
        """Check and keep complete `agi_key: value` lines: one regular-expression pass, not a loop per line."""
        pairs = _ENVIRONMENT_PAIR.findall(text)
        if len(pairs) != text.count("\n"):  # each good line gives one pair: some line is not `agi_key: value`
            bad = next(line for line in text.split("\n") if not _ENVIRONMENT_PAIR.fullmatch(line))
            raise AgiProtocolError(f"malformed environment line: {bad[:80]!r}")
        self._env.update(pairs)
        self._arguments = self._arguments or "agi_arg_" in text
        if len(self._env) > self.limits.max_arguments + 64:
            raise AgiProtocolError("too many environment variables")

    def _build_environment(self) -> Environment:
        if not self._arguments:  # the usual case: the action's arguments are in the URL
            return Environment(self._env, [])
        numbered = {}
        variables = {}
        for key, value in self._env.items():
            number = key[8:]
            if key.startswith("agi_arg_") and number.isascii() and number.isdigit():
                if len(number) > 6:  # Asterisk numbers at most 128 arguments
                    raise AgiProtocolError(f"AGI argument number out of range: {key[:80]!r}")
                numbered[int(number)] = value
            else:
                variables[key] = value
        if len(numbered) > self.limits.max_arguments:
            raise AgiProtocolError(f"more than {self.limits.max_arguments} AGI arguments")
        return Environment(variables, [numbered[i] for i in sorted(numbered)])

    def _reply_line(self, line: str) -> Reply | None:
        if self._usage is not None:
            self._usage.append(line)
            if len(self._usage) > self.limits.max_usage_lines:
                raise AgiProtocolError(f"520 usage block longer than {self.limits.max_usage_lines} lines")
            if line.startswith("520 "):
                lines, self._usage = tuple(self._usage), None
                return self._replied(Reply(520, lines=lines))
            return None
        if line.startswith("520-"):
            self._usage = [line]
            return None
        return self._replied(parse_reply(line))

    def _replied(self, reply: Reply) -> Reply:
        self._outstanding -= 1
        if self._outstanding == 0:
            self.state = State.IDLE
        return reply

    # -- output --------------------------------------------------------------
    def send_command(self, command: str) -> bytes:
        """The bytes for one command; the connection then awaits one more reply."""
        if self.state not in (State.IDLE, State.AWAITING_REPLY):
            raise AgiProtocolError(f"cannot send a command in state {self.state.value}")
        data = encode_command(command)
        self._outstanding += 1
        self.state = State.AWAITING_REPLY
        return data


def parse_reply(line: str) -> Reply:
    """One single-line reply (`200 …`, `510 …`, `511 …`, or anything else Asterisk sends)."""
    match = _REPLY_200.match(line)
    if match:
        return Reply(200, match.group("result"), match.group("data"), (line,))
    code = line[:3]
    if code.isdecimal():  # not isdigit(): "²" is a digit that int() refuses
        return Reply(int(code), lines=(line,))
    raise AgiProtocolError(f"malformed reply: {line[:80]!r}")


def encode_command(command: str) -> bytes:
    if "\n" in command or "\r" in command:
        raise ValueError("an AGI command is one line")
    data = command.encode("utf-8") + b"\n"
    if len(data) > MAX_COMMAND_BYTES:
        raise ValueError(f"AGI command longer than {MAX_COMMAND_BYTES} bytes")
    return data


_PLAIN = re.compile(r'[^\x00-\x1f\x7f"\\\ud800-\udfff]{0,1024}')  # needs no change, and fits however it encodes
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_VARIABLE_NAME = re.compile(r"^[A-Za-z0-9_()]+$")
# room for `SET VARIABLE <name> "<value>"\n` with the longest names we use
_MAX_VALUE_BYTES = MAX_COMMAND_BYTES - 200


def quote_value(value: str) -> str:
    """Quote a value the way Asterisk's `parse_args` reads it back.

    Backslash and double quote are escaped; control characters (CR, LF, TAB, …) would
    end or corrupt the command line, so each becomes one space; a lone surrogate has no
    UTF-8 form, so it becomes U+FFFD. Values whose quoted form is longer than fits in
    one command are cut at a character boundary, never inside an escape.
    """
    if _PLAIN.fullmatch(value):  # the usual case: a code, a number, a name
        return f'"{value}"'
    value = _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", value))
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    encoded = quoted.encode("utf-8")
    if len(encoded) > _MAX_VALUE_BYTES:
        quoted = encoded[:_MAX_VALUE_BYTES].decode("utf-8", errors="ignore")
        if (len(quoted) - len(quoted.rstrip("\\"))) % 2:  # the cut split a `\\` or `\"`
            quoted = quoted[:-1]
    return '"' + quoted + '"'


def set_variable(name: str, value: str) -> str:
    return _set_variable_head(name) + quote_value(value)


@functools.lru_cache(maxsize=1024)  # a session sets a handful of names, the same ones every time
def _set_variable_head(name: str) -> str:
    if not _VARIABLE_NAME.match(name):
        raise ValueError(f"bad channel variable name {name!r}")
    return f"SET VARIABLE {name} "


def get_variable(name: str) -> str:
    if not _VARIABLE_NAME.match(name):
        raise ValueError(f"bad channel variable name {name!r}")
    return f"GET VARIABLE {name}"
