"""Where a file name given by the dialplan may point, and opening it there.

A relative name is under the media folder; an absolute name must lie in the media folder
or one of the allowed folders. A name is never checked and then opened again by name
(someone who can write in a media folder could swap a symbolic link in between): it is
walked one component at a time from a descriptor of its folder, each component opened
with O_NOFOLLOW relative to the one before, and the file is read or created through the
descriptor found at the end. A symbolic link met on the way is followed by the walk
itself, only where it stays inside the folders; `..` is refused in a name and, in a
link, never climbs above the folder it started from.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Callable, Sequence

from .errors import MediaFileError

INVALID = "invalid-argument"
MAX_LINKS = 40  # as the kernel's own limit: more is a loop
READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC  # O_NONBLOCK: a FIFO never blocks the open
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RACED = (errno.ELOOP, errno.ENOENT, errno.ENOTDIR)  # what an entry swapped since it was looked at gives


@dataclass(frozen=True)
class MediaFile:
    """An open file of a media folder: `fd` (the caller closes it) and the real path it was found at."""

    fd: int
    path: Path

    def __enter__(self) -> MediaFile:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def open_media_file(name: str, media_dir: Path, allowed_dirs: Sequence[Path] = ()) -> MediaFile:
    """Open an existing regular file to read (`file_missing`, `invalid-argument` otherwise)."""

    def read(found: _Found) -> MediaFile:
        if found.missing_folder is not None or found.info is None:
            raise MediaFileError("file_missing", f"{name} does not exist")
        if not stat.S_ISREG(found.info.st_mode):
            raise MediaFileError(INVALID, f"{name} is not a regular file")
        fd = _open_at(found, READ_FLAGS)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise MediaFileError(INVALID, f"{name} is not a regular file")
        return MediaFile(fd, found.path)

    return _walk_then(_Walk(name, media_dir, allowed_dirs), read)


def create_media_file(name: str, media_dir: Path, allowed_dirs: Sequence[Path] = (), mode: int = 0o640) -> MediaFile:
    """Create a new file to write (`file_exists`: never overwrite; `invalid-argument`)."""

    def create(found: _Found) -> MediaFile:
        if found.missing_folder is not None:
            raise MediaFileError(INVALID, f"{name}: the folder {found.missing_folder} does not exist")
        if found.info is not None and not stat.S_ISREG(found.info.st_mode):
            raise MediaFileError(INVALID, f"{name} is not a regular file")
        if found.info is not None:
            raise MediaFileError("file_exists", f"{name} already exists (recordings never overwrite)")
        if found.through_link:
            raise MediaFileError("file_exists", f"{name} already exists (a dangling symbolic link)")
        try:
            return MediaFile(_open_at(found, CREATE_FLAGS, mode), found.path)
        except FileExistsError:  # made since the walk looked (a file or a link): never overwritten
            raise MediaFileError("file_exists", f"{name} already exists (recordings never overwrite)") from None

    return _walk_then(_Walk(name, media_dir, allowed_dirs), create)


def open_subfolder(root: Path, *names: str, mode: int = 0o750) -> int:
    """A descriptor of the folder `root/names…` (each made if missing); a symbolic link on the way is refused.

    `root` is the administrator's (followed as configured); each of `names` (a media
    subfolder, an account's name) is one component opened with O_NOFOLLOW from the one
    before, so a link swapped in for it cannot lead elsewhere. The caller closes the
    descriptor and creates files in it with `dir_fd`.
    """
    root.mkdir(parents=True, exist_ok=True)
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for name in names:
        try:
            folder = _enter_subfolder(folder, name, mode)
        except OSError as exc:
            raise MediaFileError(INVALID, f"{root.joinpath(*names)}: {name} is not a folder: {exc.strerror}") from None
    return folder


def _enter_subfolder(parent: int, name: str, mode: int) -> int:
    """The folder `name` in `parent`, made if missing, opened without following a link; `parent` is closed."""
    try:
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise OSError(errno.EINVAL, "not a folder name")
        try:
            os.mkdir(name, mode, dir_fd=parent)
        except FileExistsError:
            pass
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    finally:
        os.close(parent)


class _Changed(Exception):
    """An entry changed between being looked at and being opened: walk again."""


def _walk_then(walk: _Walk, use: Callable[[_Found], MediaFile]) -> MediaFile:
    for _ in range(MAX_LINKS):
        try:
            with walk as found:
                return use(found)
        except _Changed:
            continue
    raise MediaFileError(INVALID, f"{walk.name} cannot be resolved: it keeps changing")


def _open_at(found: _Found, flags: int, mode: int = 0o600) -> int:
    try:
        return os.open(found.leaf, flags, mode, dir_fd=found.parent)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno in _RACED:
            raise _Changed from None
        raise MediaFileError(INVALID, f"{found.path.name}: cannot open: {exc.strerror}") from None


@dataclass
class _Found:
    """Where a walk ended: the leaf's name in the open folder `parent`, and what is there."""

    parent: int
    leaf: str
    info: os.stat_result | None  # lstat of the leaf; None when nothing is there
    path: Path
    through_link: bool  # the name given was a symbolic link (to `path`)
    missing_folder: Path | None = None  # a folder on the way does not exist


@dataclass(frozen=True)
class _Root:
    named: Path  # as configured, made absolute
    real: Path  # with its own links resolved (the administrator's, trusted)


class _Walk:
    """One name's walk from its root; `start()` opens the folders on the way and closes them on exit."""

    def __init__(self, name: str, media_dir: Path, allowed_dirs: Sequence[Path]) -> None:
        self.name = name
        given = _checked_name(name)
        self.roots = [_Root(Path(os.path.abspath(d)), d.resolve()) for d in [media_dir, *allowed_dirs]]
        if given.is_absolute():
            self.root, self.parts = self._root_of(given, f"{name} is outside the media folder")
        else:
            self.root, self.parts = self.roots[0], list(given.parts)
        self._open: list[int] = []

    def _root_of(self, path: PurePath, refusal: str) -> tuple[_Root, list[str]]:
        for root in self.roots:
            for base in (root.named, root.real):
                if path.is_relative_to(base):
                    return root, list(path.relative_to(base).parts)
        raise MediaFileError(INVALID, refusal)

    def __enter__(self) -> _Found:
        try:
            return self._walk(self.root, self.parts)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:  # closes the folders opened on the way
        while self._open:
            os.close(self._open.pop())

    def _enter_root(self, root: _Root) -> list[Path]:
        self.__exit__()
        try:
            self._open.append(os.open(root.real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except OSError as exc:
            raise MediaFileError(INVALID, f"{self.name}: the media folder {root.named}: {exc.strerror}") from None
        return [root.real]

    def _walk(self, root: _Root, parts: list[str]) -> _Found:
        folders = self._enter_root(root)
        pending = _components(parts)
        links = 0
        through_link = False
        while pending:
            part = pending.pop(0)
            if part == "..":  # only from a link's target: never above the folder the walk started in
                if len(self._open) == 1:
                    raise MediaFileError(INVALID, f"{self.name} leads outside the media folder")
                os.close(self._open.pop())
                folders.pop()
                continue
            last = not pending
            try:
                info: os.stat_result | None = os.stat(part, dir_fd=self._open[-1], follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                info = None
            if info is not None and stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise MediaFileError(INVALID, f"{self.name} cannot be resolved: too many symbolic links")
                through_link = through_link or last
                try:
                    target = PurePath(os.readlink(part, dir_fd=self._open[-1]))
                except OSError:  # no longer a link
                    raise _Changed from None
                if target.is_absolute():
                    root, rest = self._root_of(target, f"{self.name} leads outside the media folder")
                    folders = self._enter_root(root)
                    pending = _components(rest) + pending
                else:
                    pending = _components(target.parts) + pending
                continue
            if last:
                return _Found(self._open[-1], part, info, folders[-1] / part, through_link)
            if info is None or not stat.S_ISDIR(info.st_mode):
                return _Found(self._open[-1], part, None, folders[-1] / part, through_link,
                              missing_folder=folders[-1] / part)
            try:
                self._open.append(os.open(part, _DIR_FLAGS, dir_fd=self._open[-1]))
            except OSError as exc:
                if exc.errno in _RACED:
                    raise _Changed from None
                raise MediaFileError(INVALID, f"{self.name}: cannot open {part}: {exc.strerror}") from None
            folders.append(folders[-1] / part)
        return _Found(self._open[-1], ".", os.fstat(self._open[-1]), folders[-1], through_link)  # a folder itself


def _components(parts: Sequence[str]) -> list[str]:
    """The parts of a path that name something (not "" or ".")."""
    return [part for part in parts if part not in ("", ".")]


def _checked_name(name: str) -> PurePath:
    if not name:
        raise MediaFileError(INVALID, "the file name is empty")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise MediaFileError(INVALID, "the file name contains a control character")
    given = PurePath(name)
    if ".." in given.parts:
        raise MediaFileError(INVALID, f"{name}: '..' is not allowed in a file name")
    return given
