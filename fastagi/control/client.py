"""The CLI's end of the control socket: blocking, one request after another."""

from __future__ import annotations

import socket
from collections import deque
from pathlib import Path
from typing import Iterator

from .protocol import READ_CHUNK, LineDecoder, Message, ProtocolError, Request, encode

REPLY_TIMEOUT = 90.0  # longer than an action may run (session_timeout defaults to 60 s)


class ControlError(Exception):
    """The server cannot be reached or broke off; the text is one line for the user."""


class ControlClient:
    def __init__(self, path: Path, timeout: float = REPLY_TIMEOUT) -> None:
        self.path = path
        self._timeout = timeout
        self._sock = _connect(path, timeout)
        self._decoder = LineDecoder()
        self._received: deque[Message] = deque()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def request(self, request: Request) -> Message:
        """Send `request` and return its reply."""
        self._sock.sendall(encode(request.to_message()))
        reply = self._receive()
        if reply is None:
            raise ControlError("the server closed the connection without answering")
        return reply

    def stream(self) -> Iterator[Message]:
        """The messages that follow a reply, for as long as the server sends them."""
        self._sock.settimeout(None)
        while (message := self._receive()) is not None:
            yield message

    def _receive(self) -> Message | None:
        """The next message, or None once the server has closed."""
        while not self._received:
            try:
                data = self._sock.recv(READ_CHUNK)
                self._received.extend(self._decoder.feed(data))
            except TimeoutError:
                raise ControlError(f"no answer from the server within {self._timeout:g} s") from None
            except ProtocolError as exc:
                raise ControlError(f"unreadable answer from the server: {exc}") from None
            if not data:
                return None
        return self._received.popleft()


def _connect(path: Path, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise ControlError(_unreachable(path, exc)) from None
    return sock


def _unreachable(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no server is running (control socket {path} not found)"
    if isinstance(exc, ConnectionRefusedError):
        return f"no server is running (nothing answers on control socket {path})"
    if isinstance(exc, PermissionError):
        return f"control socket {path}: permission denied (run as the user that runs the server)"
    return f"cannot connect to control socket {path}: {exc.strerror or exc}"
