r"""Sans-I/O codec for the Asterisk Manager Interface (AMI): bytes in, messages out.

Framing
-------
Asterisk opens with one greeting line (`Asterisk Call Manager/11.0.0`). After it, every
message is a block of `Key: value` lines ended by CR LF, closed by an empty line.
`AmiParser` accepts the stream cut at any byte, also takes a bare LF as a line end (as
Asterisk does), keeps every header of a message in order, a repeated one included (a
UserEvent whose sender let a CR/LF through arrives with two `Event:` lines), and bounds
memory: a line longer than `max_line` or a message larger than `max_message` is
discarded whole and counted, and parsing goes on with the next message.

On the way out, `encode_action` refuses what Asterisk would misread: a header name
outside `[A-Za-z0-9_-]`, a control character inside a value, a line longer than
Asterisk's 1024-byte line buffer (it refuses the whole action), more than 128 lines.

Escaping text from the Skype side
---------------------------------
Asterisk ends a header line at LF (or CR LF) and copies a UserEvent's headers as they
are into the event every AMI client receives, so a CR or LF inside a chat message would
forge headers there. `escape_value` turns such text into a single line that reads the
same and converts back exactly with `unescape_value`:

| character | sent as |
| --- | --- |
| backslash `\` | `\\` |
| carriage return, line feed, tab | `\r`, `\n`, `\t` |
| any other control character (U+0000-U+001F, U+007F-U+009F) | `\xNN` (two lower-case hex digits) |
| line separator U+2028, paragraph separator U+2029, lone surrogates | `\uNNNN` (four lower-case hex digits) |

Everything else, non-ASCII letters included, goes out as UTF-8 unchanged.

The dialplan sees the same escaped text in the channel variables of an `Originate`
(`SKYPE_MESSAGE_BODY`, ...) and in the CallerID name: for `Variable: NAME=value`,
`escape_argument` adds one more layer that Asterisk itself removes (its argument
splitter would cut the value at a comma and eat quotes and backslashes). A value whose
line would not fit Asterisk's line buffer is cut by `fit_value` between two characters
(never inside an escape) and ends in `...`.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

MAX_LINE = 1024
"""Longest line Asterisk reads, CR LF included (its buffer is ``char inbuf[1025]``)."""
MAX_HEADERS = 128
"""Most lines Asterisk keeps of one action (``AST_MAX_MANHEADERS``)."""
GREETING_PREFIX = b"Asterisk Call Manager/"
ELLIPSIS = "..."

_HEADER_NAME = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TO_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ESCAPED = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|(.)|\Z)", re.DOTALL)
_NAMED = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}
_UNNAMED = {value[1]: key for key, value in _NAMED.items()}
_ARGUMENT_SPECIALS = re.compile(r'[\\,"()\[\]]')


class AmiMessage:
    """One AMI message: its headers as ordered (name, value) pairs, repeats kept.

    `get` answers the first value of a name, compared case-insensitively as Asterisk does.
    """

    __slots__ = ("headers", "_first")

    def __init__(self, headers: Iterable[tuple[str, str]]) -> None:
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)
        self._first: dict[str, tuple[str, str]] = {}
        for name, value in self.headers:
            self._first.setdefault(name.lower(), (name, value))

    def get(self, name: str, default: str | None = None) -> str | None:
        found = self._first.get(name.lower())
        return default if found is None else found[1]

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [value for header, value in self.headers if header.lower() == key]

    def first_values(self) -> dict[str, str]:
        """Each name once (as first spelled) with its first value."""
        return dict(self._first.values())

    def __repr__(self) -> str:
        return f"AmiMessage({list(self.headers)!r})"


class AmiParser:
    """Turns the byte stream from Asterisk into `AmiMessage`s.

    ``greeting`` holds the greeting line once seen; ``discarded`` counts the messages
    dropped for breaking ``max_line`` or ``max_message`` (bytes, line ends included).
    """

    def __init__(self, max_line: int = 16384, max_message: int = 262144) -> None:
        self.max_line = max_line
        self.max_message = max_message
        self.greeting: str | None = None
        self.discarded = 0
        self._buffer = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._size = 0
        self._oversized = False
        self._skipping_line = False
        self._at_start = True

    def feed(self, data: bytes) -> list[AmiMessage]:
        self._buffer += data
        messages: list[AmiMessage] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._skipping_line:
                self._skipping_line = False
            elif end + 1 > self.max_line:
                self._oversized = True
            else:
                message = self._line(line[:-1] if line.endswith(b"\r") else line)
                if message is not None:
                    messages.append(message)
        if len(self._buffer) >= self.max_line:
            # Never hold more than one line: drop the rest of this one as it comes.
            self._buffer.clear()
            self._oversized = self._skipping_line = True
        return messages

    def _line(self, line: bytes) -> AmiMessage | None:
        if self._at_start:
            self._at_start = False
            if line.startswith(GREETING_PREFIX):
                self.greeting = line.decode("utf-8", "replace")
                return None
        if not line:
            return self._end_message()
        self._size += len(line) + 2
        if self._size > self.max_message:
            self._oversized = True
            self._headers.clear()
        if not self._oversized:
            name, _, value = line.decode("utf-8", "replace").partition(":")
            self._headers.append((name, value[1:] if value.startswith(" ") else value))
        return None

    def _end_message(self) -> AmiMessage | None:
        message = AmiMessage(self._headers) if self._headers and not self._oversized else None
        if self._oversized:
            self.discarded += 1
        self._headers = []
        self._size = 0
        self._oversized = False
        return message


def check_header_name(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"invalid AMI header name {name!r}: only A-Z, a-z, 0-9, _ and - are allowed")
    return name


def encode_action(action: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """``Action: <action>`` and the headers in the order given, as Asterisk reads them.

    Raises ValueError for anything Asterisk would misread or refuse (see the module doc):
    values are expected escaped already.
    """
    lines = [_encode_line("Action", action)]
    lines += [_encode_line(name, value) for name, value in headers]
    if len(lines) > MAX_HEADERS:
        raise ValueError(f"an AMI action holds at most {MAX_HEADERS} lines, not {len(lines)}")
    return b"".join(lines) + b"\r\n"


def _encode_line(name: str, value: str) -> bytes:
    check_header_name(name)
    if _CONTROL.search(value):
        raise ValueError(f"AMI header {name} holds a control character: escape the value first")
    line = f"{name}: {value}\r\n".encode("utf-8")
    if len(line) > MAX_LINE:
        raise ValueError(f"AMI header {name} is {len(line)} bytes long; Asterisk reads at most {MAX_LINE}")
    return line


def escape_value(text: str) -> str:
    """Text made safe for one header value; the scheme is in the module doc."""
    return _TO_ESCAPE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def unescape_value(text: str) -> str:
    """The text `escape_value` was given. Raises ValueError on an unknown escape."""
    return _ESCAPED.sub(_unescape_match, text)


def _unescape_match(match: re.Match[str]) -> str:
    hex2, hex4, named = match.groups()
    if hex2 or hex4:
        return chr(int(hex2 or hex4, 16))
    if named not in _UNNAMED:
        raise ValueError(f"invalid escape {match.group()!r}")
    return _UNNAMED[named]


def escape_argument(text: str) -> str:
    """`text` kept as one argument by Asterisk's argument splitter, which removes the
    backslashes again (used for ``Variable: name=value``)."""
    return _ARGUMENT_SPECIALS.sub(lambda match: "\\" + match.group(), text)


def value_budget(name: str) -> int:
    """Bytes left for the value of header `name` on one line Asterisk accepts."""
    return MAX_LINE - len(f"{name}: \r\n".encode("utf-8"))


def fit_value(text: str, encode: Callable[[str], str], budget: int) -> str:
    """``encode(text)`` if it fits in `budget` UTF-8 bytes; else the encoding of the
    longest prefix of `text` that fits with ``...`` after it.

    Cutting the text before encoding never splits an escape sequence.
    """
    encoded = encode(text)
    if _size(encoded) <= budget:
        return encoded
    room = budget - len(ELLIPSIS)
    low, high = 0, len(text)  # encode(text[:low]) fits, encode(text[:high]) does not
    while high - low > 1:
        middle = (low + high) // 2
        if _size(encode(text[:middle])) <= room:
            low = middle
        else:
            high = middle
    return encode(text[:low]) + ELLIPSIS


def _size(text: str) -> int:
    return len(text.encode("utf-8"))
