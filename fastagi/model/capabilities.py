"""What a network can do: each action that needs a feature declares it, each driver lists its own."""

from __future__ import annotations

import enum


class Feature(enum.Enum):
    """A feature of a network; the value says what it is, for `SKYPE_ERROR_TEXT`."""

    CHAT = "chat messages"
    CONTACTS = "contact lists"
    BLOCKING = "blocking of users"
    PROFILES = "user profiles"
    FILES = "file transfer"
    SMS = "SMS"
    BALANCE = "prepaid balance"
    CALLS = "voice calls"
    CALL_TRANSFER = "call transfer"
    CONFERENCE = "conference calls"
    VOICEMAIL = "voicemail"
    DTMF = "DTMF"


ALL_FEATURES = frozenset(Feature)
