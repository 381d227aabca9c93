"""Storing received files: never overwrite, never leave a half-written file behind."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from .media.paths import CREATE_FLAGS, open_subfolder


async def copy_incoming(folder: Path, file_name: str, source: BinaryIO) -> Path:
    """`store_incoming` in a worker thread: a large file must not hold up every other session."""
    return await asyncio.to_thread(store_incoming, folder, file_name, source)


def store_incoming(folder: Path, file_name: str, source: BinaryIO) -> Path:
    """Copy `source` (open, read from where it stands) into `folder` as `file_name`, or `name (2).ext`, … if it exists.

    The file is created with O_EXCL|O_NOFOLLOW through a descriptor of `folder`
    (`open_subfolder`), so two transfers racing for one name both keep their file and a
    symbolic link swapped in for the folder or the name never leads the copy elsewhere.
    """
    stem, suffix = os.path.splitext(Path(file_name).name or "file")
    dir_fd = open_subfolder(folder.parent, folder.name)
    try:
        for n in range(1, 10000):
            name = f"{stem}{suffix}" if n == 1 else f"{stem} ({n}){suffix}"
            try:
                fd = os.open(name, CREATE_FLAGS, 0o640, dir_fd=dir_fd)
            except FileExistsError:
                continue
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out)
            except BaseException:
                os.unlink(name, dir_fd=dir_fd)
                raise
            return folder / name
    finally:
        os.close(dir_fd)
    raise FileExistsError(f"no free name for {file_name} in {folder}")
