"""Atomic writes keep files readable as any other file of the process would be: umask on create, the old
mode on replace."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from acetui.atomic import write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o000], ids=oct)
def test_a_new_file_gets_the_umask_mode(tmp_path, umask, mask):
    umask(mask)
    target = tmp_path / "out.json"
    write_text_atomic(target, "[]\n")
    assert target.read_text() == "[]\n"
    assert mode(target) == 0o666 & ~mask
    assert sorted(tmp_path.iterdir()) == [target]  # no temporary file left


@pytest.mark.parametrize("kept", [0o640, 0o644, 0o600, 0o444], ids=oct)
def test_replacing_keeps_the_old_mode(tmp_path, umask, kept):
    umask(0o077)
    target = tmp_path / "fisher_map.json"
    target.write_text("old\n")
    target.chmod(kept)
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert mode(target) == kept
    assert sorted(tmp_path.iterdir()) == [target]
