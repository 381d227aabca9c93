"""Asterisk AudioSocket: the bridge between an Asterisk channel's audio and a call's media."""

from fastagi.audiosocket.codec import (
    AudioSocketParser,
    Frame,
    Kind,
    ProtocolError,
    encode_audio,
    encode_hangup,
)
from fastagi.audiosocket.server import (
    AudioSocketConnection,
    AudioSocketServer,
    CallMediaBinder,
    MediaCounters,
    MediaSettings,
)

__all__ = [
    "AudioSocketConnection",
    "AudioSocketParser",
    "AudioSocketServer",
    "CallMediaBinder",
    "Frame",
    "Kind",
    "MediaCounters",
    "MediaSettings",
    "ProtocolError",
    "encode_audio",
    "encode_hangup",
]
