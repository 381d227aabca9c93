"""Where a file name given by the dialplan may point.

A relative name resolves under the media folder; an absolute name must lie in the media
folder or one of the allowed folders. After following symbolic links the file must still
be inside one of them, so a link cannot lead out. Nothing here creates or changes a file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePath
from typing import Sequence

from .errors import MediaFileError

INVALID = "invalid-argument"
_MISSING_ERRNOS = (errno.ENOENT, errno.ENOTDIR)


def resolve_media_path(
    name: str, media_dir: Path, allowed_dirs: Sequence[Path] = (), must_exist: bool = True
) -> Path:
    """The real path of `name`, ready to read (`must_exist`) or to create a new file at.

    Refusals are `MediaFileError`s: `file_missing` (nothing to read), `file_exists`
    (a recording never overwrites, a dangling symbolic link included) and
    `invalid-argument` (a bad name, outside the folders, not a regular file, or a
    recording into a folder that does not exist).
    """
    given = _checked_name(name)
    folders = [media_dir, *allowed_dirs]
    real_roots = [folder.resolve() for folder in folders]
    if given.is_absolute():
        named_roots = [Path(os.path.abspath(folder)) for folder in folders] + real_roots
        if not any(given.is_relative_to(root) for root in named_roots):
            raise MediaFileError(INVALID, f"{name} is outside the media folder")
        candidate = Path(given)
    else:
        candidate = Path(os.path.abspath(media_dir)) / given
    try:
        target = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
        raise MediaFileError(INVALID, f"{name} cannot be resolved: {exc}") from None
    if not any(target.is_relative_to(root) for root in real_roots):
        raise MediaFileError(INVALID, f"{name} leads outside the media folder")
    mode = _mode(name, target)
    if mode is None:
        return _absent(name, candidate, target, must_exist)
    if not stat.S_ISREG(mode):
        raise MediaFileError(INVALID, f"{name} is not a regular file")
    if not must_exist:
        raise MediaFileError("file_exists", f"{name} already exists (recordings never overwrite)")
    return target


def _checked_name(name: str) -> PurePath:
    if not name:
        raise MediaFileError(INVALID, "the file name is empty")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise MediaFileError(INVALID, "the file name contains a control character")
    given = PurePath(name)
    if ".." in given.parts:
        raise MediaFileError(INVALID, f"{name}: '..' is not allowed in a file name")
    return given


def _mode(name: str, target: Path) -> int | None:
    """The file type bits of `target`, or None if nothing is there."""
    try:
        return os.stat(target).st_mode
    except OSError as exc:
        if exc.errno in _MISSING_ERRNOS:
            return None
        raise MediaFileError(INVALID, f"{name}: {exc.strerror}") from None


def _absent(name: str, candidate: Path, target: Path, must_exist: bool) -> Path:
    if must_exist:
        raise MediaFileError("file_missing", f"{name} does not exist")
    if os.path.lexists(candidate):
        raise MediaFileError("file_exists", f"{name} already exists (a dangling symbolic link)")
    if not os.path.isdir(target.parent):
        raise MediaFileError(INVALID, f"{name}: the folder {target.parent} does not exist")
    return target
