"""Atomic writes to a path that is a symbolic link or not a regular file: a link is written through to its
target (the link stays), anything but a regular file or a folder is refused with one line and left as it is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from acetui.atomic import write_text_atomic
from acetui.errors import AcetuiError


def error_for(path: Path) -> str:
    with pytest.raises(AcetuiError) as caught:
        write_text_atomic(path, "new\n")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_link_is_written_through_to_its_target(tmp_path):
    exports, shared = tmp_path / "exports", tmp_path / "shared"
    exports.mkdir()
    shared.mkdir()
    target = shared / "ranking.json"
    target.write_text("old\n")
    target.chmod(0o640)
    link = exports / "ranking.json"
    link.symlink_to(Path("..") / "shared" / "ranking.json")  # relative, as `ln -s` usually makes them
    write_text_atomic(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "shared", "ranking.json")
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(exports.iterdir()) == [link] and sorted(shared.iterdir()) == [target]  # no temporary file


def test_a_chain_of_links_reaches_the_file(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old\n")
    (tmp_path / "middle.json").symlink_to(target)
    (tmp_path / "outer.json").symlink_to(tmp_path / "middle.json")
    write_text_atomic(tmp_path / "outer.json", "new\n")
    assert (tmp_path / "outer.json").is_symlink() and (tmp_path / "middle.json").is_symlink()
    assert target.read_text() == "new\n"


def test_a_dangling_link_gets_its_target_created(tmp_path):
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "made.json")
    write_text_atomic(link, "new\n")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "new\n"


def test_a_named_pipe_is_refused_and_kept(tmp_path):
    pipe = tmp_path / "out.json"
    os.mkfifo(pipe)
    assert error_for(pipe) == f"{pipe}: not a regular file"
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    assert sorted(tmp_path.iterdir()) == [pipe]


def test_a_link_to_a_named_pipe_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "pipe")
    assert error_for(link) == f"{link}: not a regular file"
    assert link.is_symlink() and stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode)


def test_a_link_to_a_folder_is_refused(tmp_path):
    (tmp_path / "folder").mkdir()
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "folder")
    assert error_for(link) == f"{link}: is a directory, give a file name"
    assert link.is_symlink() and list((tmp_path / "folder").iterdir()) == []


def test_a_link_loop_is_one_line(tmp_path):
    loop = tmp_path / "out.json"
    loop.symlink_to(loop)
    assert error_for(loop) == f"{loop}: cannot write (Too many levels of symbolic links)"
    assert loop.is_symlink()
