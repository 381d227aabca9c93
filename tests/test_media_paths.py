"""Where a dialplan-given file name may point, that a refusal touches nothing, and that a name is
opened where it was checked even while someone swaps a link in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastagi.media.errors import MediaFileError
from fastagi.media.paths import create_media_file, open_media_file


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """media/ (the media folder), extra/ (an allowed folder), outside/ (neither)."""
    media, extra, outside = tmp_path / "media", tmp_path / "extra", tmp_path / "outside"
    for folder in (media / "sub", extra, outside / "folder"):
        folder.mkdir(parents=True)
    for path in ("media/greet.wav", "media/sub/x.wav", "extra/a.wav", "outside/secret.wav"):
        (tmp_path / path).write_bytes(b"RIFF")
    (media / "folder").mkdir()
    os.mkfifo(media / "fifo.wav")
    (media / "alias.wav").symlink_to(media / "sub" / "x.wav")
    (media / "to_extra.wav").symlink_to(extra / "a.wav")
    (media / "escape.wav").symlink_to(outside / "secret.wav")
    (media / "escape_dir").symlink_to(outside)
    (media / "dangling.wav").symlink_to(media / "never.wav")
    (media / "dangling_out.wav").symlink_to(outside / "never.wav")
    (media / "loop1.wav").symlink_to(media / "loop2.wav")
    (media / "loop2.wav").symlink_to(media / "loop1.wav")
    (tmp_path / "media_link").symlink_to(media)
    return tmp_path


def resolve(tree: Path, name: str, must_exist: bool, media: str = "media") -> Path:
    """Open (or create) the file as the actions do; the real path it was found at."""
    opened = (open_media_file if must_exist else create_media_file)(name, tree / media, [tree / "extra"])
    os.close(opened.fd)
    return opened.path


def snapshot(root: Path) -> list[tuple[str, int, int, int]]:
    return sorted(
        (str(path), info.st_mode, info.st_size, info.st_mtime_ns)
        for path in root.rglob("*")
        for info in [path.lstat()]
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("greet.wav", "media/greet.wav"),
        ("sub/x.wav", "media/sub/x.wav"),
        ("./sub//x.wav", "media/sub/x.wav"),
        ("alias.wav", "media/sub/x.wav"),
        ("to_extra.wav", "extra/a.wav"),
        ("{tree}/media/greet.wav", "media/greet.wav"),
        ("{tree}/extra/a.wav", "extra/a.wav"),
    ],
)
def test_files_to_play(tree, name, expected):
    assert resolve(tree, name.format(tree=tree), must_exist=True) == tree / expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("new.wav", "media/new.wav"),
        ("sub/new.wav", "media/sub/new.wav"),
        ("{tree}/extra/new.wav", "extra/new.wav"),
    ],
)
def test_files_to_record(tree, name, expected):
    before = {entry[0] for entry in snapshot(tree)}
    assert resolve(tree, name.format(tree=tree), must_exist=False) == tree / expected
    assert {entry[0] for entry in snapshot(tree)} - before == {str(tree / expected)}
    assert (tree / expected).stat().st_size == 0


def test_media_folder_given_through_a_link(tree):
    media = tree / "media"
    assert resolve(tree, "greet.wav", True, media="media_link") == media / "greet.wav"
    assert resolve(tree, f"{media}/new.wav", False, media="media_link") == media / "new.wav"


def test_links_inside_are_followed_by_the_walk(tree):
    (tree / "media" / "sub" / "up.wav").symlink_to("../greet.wav")
    (tree / "media" / "sub_link").symlink_to("sub")
    (tree / "media" / "climb.wav").symlink_to("sub/../../outside/secret.wav")
    assert resolve(tree, "sub/up.wav", True) == tree / "media" / "greet.wav"
    assert resolve(tree, "sub_link/x.wav", True) == tree / "media" / "sub" / "x.wav"
    assert resolve(tree, "sub_link/new.wav", False) == tree / "media" / "sub" / "new.wav"
    with pytest.raises(MediaFileError, match="climb.wav leads outside the media folder"):
        resolve(tree, "climb.wav", True)


BAD = "invalid-argument"
REFUSALS = [
    ("", True, BAD, "the file name is empty"),
    ("a\nb.wav", False, BAD, "the file name contains a control character"),
    ("../outside/secret.wav", True, BAD, "../outside/secret.wav: '..' is not allowed"),
    ("sub/../greet.wav", True, BAD, "sub/../greet.wav: '..' is not allowed in a file name"),
    ("{tree}/media/../outside/secret.wav", True, BAD, "'..' is not allowed"),
    ("/etc/passwd", True, BAD, "/etc/passwd is outside the media folder"),
    ("/dev/null", False, BAD, "/dev/null is outside the media folder"),
    ("{tree}/outside/secret.wav", True, BAD, "outside/secret.wav is outside the media folder"),
    ("{tree}/outside/new.wav", False, BAD, "outside/new.wav is outside the media folder"),
    ("{tree}/media_link/greet.wav", True, BAD, "media_link/greet.wav is outside the media folder"),
    ("escape.wav", True, BAD, "escape.wav leads outside the media folder"),
    ("escape_dir/secret.wav", True, BAD, "escape_dir/secret.wav leads outside the media folder"),
    ("escape_dir/new.wav", False, BAD, "escape_dir/new.wav leads outside the media folder"),
    ("dangling_out.wav", False, BAD, "dangling_out.wav leads outside the media folder"),
    ("loop1.wav", True, BAD, "loop1.wav cannot be resolved"),
    ("fifo.wav", True, BAD, "fifo.wav is not a regular file"),
    ("fifo.wav", False, BAD, "fifo.wav is not a regular file"),
    ("folder", True, BAD, "folder is not a regular file"),
    (".", False, BAD, ". is not a regular file"),
    ("missing.wav", True, "file_missing", "missing.wav does not exist"),
    ("nodir/missing.wav", True, "file_missing", "nodir/missing.wav does not exist"),
    ("greet.wav/x.wav", True, "file_missing", "greet.wav/x.wav does not exist"),
    ("dangling.wav", True, "file_missing", "dangling.wav does not exist"),
    ("greet.wav", False, "file_exists", "greet.wav already exists (recordings never overwrite)"),
    ("alias.wav", False, "file_exists", "alias.wav already exists"),
    ("dangling.wav", False, "file_exists", "dangling.wav already exists (a dangling symbolic"),
    ("nodir/new.wav", False, BAD, "nodir/new.wav: the folder {tree}/media/nodir does not exist"),
    ("greet.wav/new.wav", False, BAD, "the folder {tree}/media/greet.wav does not exist"),
]


@pytest.mark.parametrize("name, must_exist, code, text", REFUSALS)
def test_refusals_touch_nothing(tree, name, must_exist, code, text):
    before = snapshot(tree)
    with pytest.raises(MediaFileError) as caught:
        resolve(tree, name.format(tree=tree), must_exist)
    assert caught.value.code == code
    assert text.format(tree=tree) in caught.value.text
    assert snapshot(tree) == before
