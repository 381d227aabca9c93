"""What an action handler gets besides its arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..manager.accounts import AccountManager
from ..media.callmedia import CallMedia
from ..media.paths import resolve_media_path


@dataclass(frozen=True)
class MediaSettings:
    media_dir: Path = Path("media")
    allowed_dirs: tuple[Path, ...] = ()
    record_rate: int = 8000

    def resolve(self, name: str, must_exist: bool) -> Path:
        """The file a dialplan names, inside the media folders (`MediaFileError` otherwise)."""
        return resolve_media_path(name, self.media_dir, self.allowed_dirs, must_exist=must_exist)


@dataclass(frozen=True)
class ActionContext:
    manager: AccountManager
    call_media: CallMedia
    media: MediaSettings
    account: str  # "" for actions that use no account
    channel: str = ""  # the Asterisk channel that ran the action (agi_channel), if any
