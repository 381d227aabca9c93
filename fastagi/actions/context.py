"""What an action handler gets besides its arguments."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..manager.accounts import AccountManager
from ..media.callmedia import CallMedia
from ..media.errors import MediaFileError
from ..media.paths import MediaFile, create_media_file, open_media_file
from ..model import errors

MIB = 1024 * 1024


@dataclass(frozen=True)
class MediaSettings:
    media_dir: Path = Path("media")
    allowed_dirs: tuple[Path, ...] = ()
    record_rate: int = 8000
    max_file_size: int = 100 * MIB

    def open(self, name: str) -> MediaFile:
        """The file a dialplan names, inside the media folders, open to read (`MediaFileError` otherwise)."""
        return open_media_file(name, self.media_dir, self.allowed_dirs)

    def create(self, name: str) -> MediaFile:
        """A new file a dialplan names, inside the media folders, open to write (`MediaFileError` otherwise)."""
        return create_media_file(name, self.media_dir, self.allowed_dirs)

    def check_size(self, name: str, source: MediaFile) -> None:
        """Refuse a file to send over `max_file_size` (invalid-argument, saying both sizes)."""
        size = os.fstat(source.fd).st_size
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
