"""What the gateway and its media worker process say to each other, as bytes (no I/O).

Each message is a kind byte, a 4-byte big-endian length and the payload: a control
message is UTF-8 JSON (an object with `op` and `call`), an audio message is the call's
number (4 bytes) and one 20 ms frame of 16 kHz 16-bit mono PCM. Audio crosses in those
units both ways, so the media engine's clock in the gateway paces what the worker sends.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

CONTROL, AUDIO = 1, 2
_HEADER = struct.Struct("!BI")
_CALL = struct.Struct("!I")
MAX_MESSAGE = 1 << 20
"""Longest message accepted: an SDP is a few kilobytes, a frame 644 bytes."""


class WireError(ValueError):
    """Bytes that are not this protocol: the other side is broken, the link is closed."""


@dataclass(frozen=True)
class Audio:
    call: int
    pcm: bytes


def control(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(CONTROL, len(payload)) + payload


def audio(call: int, pcm: bytes) -> bytes:
    return _HEADER.pack(AUDIO, _CALL.size + len(pcm)) + _CALL.pack(call) + pcm


class Decoder:
    """Bytes in, messages out (a dict for control, `Audio` for a frame), in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any] | Audio]:
        self._buffer += data
        messages: list[dict[str, Any] | Audio] = []
        view = self._buffer
        offset = 0
        while len(view) - offset >= _HEADER.size:
            kind, length = _HEADER.unpack_from(view, offset)
            if length > MAX_MESSAGE or kind not in (CONTROL, AUDIO):
                raise WireError(f"message of kind {kind} and {length} bytes")
            end = offset + _HEADER.size + length
            if len(view) < end:
                break
            payload = bytes(view[offset + _HEADER.size:end])
            offset = end
            messages.append(_control(payload) if kind == CONTROL else _audio(payload))
        del self._buffer[:offset]
        return messages


def _control(payload: bytes) -> dict[str, Any]:
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"control message is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise WireError("control message without op")
    return message


def _audio(payload: bytes) -> Audio:
    if len(payload) < _CALL.size:
        raise WireError("audio message without a call")
    return Audio(_CALL.unpack_from(payload)[0], payload[_CALL.size:])
