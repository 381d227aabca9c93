"""The one exception the media layer raises for a file a user named."""

from __future__ import annotations

from ..model.errors import SkypeError


class MediaFileError(SkypeError):
    """A media file that cannot be used, with the action error code to report.

    `code` is one of the action error codes (`file_missing`, `file_exists`,
    `invalid-argument`); `text` is one line a PBX administrator can act on.
    """

    def __init__(self, code: str, text: str) -> None:
        super().__init__(code, text)
