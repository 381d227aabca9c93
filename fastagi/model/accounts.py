"""An account registered on this gateway."""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Profile


@dataclass
class Account:
    name: str
    profile: Profile
    currency: str
    auth_policy: str = "ask"
    """Incoming buddy requests: ask (an AuthRequest event), allow or deny."""
    voicemail: bool = True
    unanswered: str = "missed"
    """An incoming call nobody takes: missed, or voicemail."""
    network: str = "embedded"
    status: str = "OFFLINE"
    """The account's connection to its network, as `SkypeAccountStatus` shows it."""


def amount(hundredths: int) -> str:
    """SkypeOut credit as people read it: 1050 hundredths is `10.50`."""
    sign = "-" if hundredths < 0 else ""
    whole, cents = divmod(abs(hundredths), 100)
    return f"{sign}{whole}.{cents:02d}"
