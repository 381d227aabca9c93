"""Storing received files: never overwrite, never leave a half-written file behind."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path


async def copy_incoming(folder: Path, file_name: str, source: Path) -> Path:
    """`store_incoming` in a worker thread: a large file must not hold up every other session."""
    return await asyncio.to_thread(store_incoming, folder, file_name, source)


def store_incoming(folder: Path, file_name: str, source: Path) -> Path:
    """Copy `source` into `folder` as `file_name`, or `name (2).ext`, … if it exists.

    The name is created with O_EXCL, so two transfers racing for one name both keep
    their file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = os.path.splitext(Path(file_name).name or "file")
    for n in range(1, 10000):
        target = folder / (f"{stem}{suffix}" if n == 1 else f"{stem} ({n}){suffix}")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target
    raise FileExistsError(f"no free name for {file_name} in {folder}")
