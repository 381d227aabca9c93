"""What the AMI listener needs to know, built once from the `[ami]` section (`config.SCHEMA` checked it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AmiSettings:
    host: str
    port: int
    username: str
    secret: str
    incoming_context: str = "skype-incoming"
    events_context: str = ""
    """Skype events also run this context (off when empty)."""
    queue_size: int = 1000
    ping_interval: float = 5.0
    ping_timeout: float = 3.0
    """Deadline for every answer from Asterisk: connecting, Ping (and Login, plus 1 s)."""
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    auth_retry: float = 30.0
    incoming_media: str = "local"
    """How an incoming call reaches the dialplan: ``local``, a Local channel whose ``;2``
    half runs it (the dialplan brings the audio in with AudioSocket itself);
    ``audiosocket``, an AudioSocket channel to the gateway's AudioSocket server that
    carries the call's audio runs it."""
    variable_prefix: str = "SKYPE_"
    originate_timeout: float = 30.0
    """Seconds the dialplan has to answer its Local channel before the call counts unhandled."""
