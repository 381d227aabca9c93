"""What an action handler gets besides its arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..manager.accounts import AccountManager


@dataclass(frozen=True)
class MediaSettings:
    media_dir: Path = Path("media")
    allowed_dirs: tuple[Path, ...] = ()
    record_rate: int = 8000


@dataclass
class ActionContext:
    manager: AccountManager
    account: str  # "" for actions that use no account
    media: MediaSettings = field(default_factory=MediaSettings)
    services: dict[str, Any] = field(default_factory=dict)
    channel: str = ""  # the Asterisk channel that ran the action (agi_channel), if any
