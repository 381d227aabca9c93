"""Users as a network describes them: names and profiles."""

from __future__ import annotations

import re
from dataclasses import dataclass

SKYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._,:-]{1,63}$")
"""A Skype name: a letter, then 1 to 63 letters, digits or `. , - _ :` (account and user names)."""


@dataclass(frozen=True)
class Profile:
    """Everything `get-user` returns about a user, as the network publishes it."""

    handle: str
    fullname: str = ""
    displayname: str = ""
    birthday: str = ""
    sex: str = "unknown"
    language: str = ""
    country: str = ""
    province: str = ""
    city: str = ""
    phone_home: str = ""
    phone_office: str = ""
    phone_mobile: str = ""
    homepage: str = ""
    mood_text: str = ""
    rich_mood_text: str = ""
    timezone: str = ""
    online_status: str = "ONLINE"

    @property
    def shown_name(self) -> str:
        """The name others see: the display name, else the full name."""
        return self.displayname or self.fullname


@dataclass(frozen=True)
class Contact:
    """How a user stands in an account's contact list."""

    buddy: int = 0
    """0 not in the list, 1 a buddy request is pending, 2 in the list (`BUDDY_*`)."""
    authorized: bool = False
    """The account lets this user see it (answered their buddy request with yes)."""
    blocked: bool = False


BUDDY_NONE, BUDDY_PENDING, BUDDY_ADDED = 0, 1, 2
