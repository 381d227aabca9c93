"""What an action handler gets besides its arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..manager.accounts import AccountManager
from ..media.callmedia import CallMedia
from ..media.errors import MediaFileError
from ..media.paths import resolve_media_path
from ..model import errors

MIB = 1024 * 1024


@dataclass(frozen=True)
class MediaSettings:
    media_dir: Path = Path("media")
    allowed_dirs: tuple[Path, ...] = ()
    record_rate: int = 8000
    max_file_size: int = 100 * MIB

    def resolve(self, name: str, must_exist: bool) -> Path:
        """The file a dialplan names, inside the media folders (`MediaFileError` otherwise)."""
        return resolve_media_path(name, self.media_dir, self.allowed_dirs, must_exist=must_exist)

    def check_size(self, name: str, path: Path) -> None:
        """Refuse a file to send over `max_file_size` (invalid-argument, saying both sizes)."""
        size = path.stat().st_size
        if size > self.max_file_size:
            raise MediaFileError(errors.INVALID_ARGUMENT, f"{name} is {size} bytes, over max_file_size "
                                 f"({self.max_file_size // MIB} MiB)")


@dataclass(frozen=True)
class ActionContext:
    manager: AccountManager
    call_media: CallMedia
    media: MediaSettings
    account: str  # "" for actions that use no account
    channel: str = ""  # the Asterisk channel that ran the action (agi_channel), if any
