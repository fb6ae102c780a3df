"""What kind of thing a dataset path is, and reading a dataset folder and its small files.

A dataset folder can hold a ``.pt`` name that is not a file (a dangling link, a folder, a named pipe
left by a streaming tool); opening a named pipe blocks until someone writes to it, so anything that is
not a regular file is reported by its kind, judged from ``stat`` alone, and never opened.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from acetui.errors import DatasetError
from acetui.folders import cannot_read, check_folder, not_found
from acetui.jsonfile import read_json

T = TypeVar("T")

_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def regular_file(path: Path) -> os.stat_result | str:
    """The ``stat`` of ``path`` (followed through links) when it is a regular file, else why it cannot be
    read as one; callers keep the ``stat`` so a file is looked at once."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return not_found(path, "file")
    except OSError as error:
        return cannot_read(error)
    if stat.S_ISREG(info.st_mode):
        return info
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    kind = next((name for test, name in _SPECIAL_KINDS if test(info.st_mode)), "something else")
    return f"not a regular file ({kind})"


def folder_entries(folder: Path) -> list[Path]:
    """The entries of a dataset folder ``check_folder`` accepts, in name order."""
    check_folder(folder, DatasetError)
    try:
        return sorted(folder.iterdir(), key=lambda entry: entry.name)
    except OSError as problem:
        raise DatasetError(f"{folder}: {cannot_read(problem)}") from None


def read_json_file(path: Path) -> Any:
    """``read_json`` for a small file of a dataset folder; DatasetError naming it when it is not a regular
    file (then it is never opened), cannot be read or is not JSON."""
    found = regular_file(path)
    if isinstance(found, str):
        raise DatasetError(f"{path}: {found}")
    return read_json(path, DatasetError)


def read_optional_json(path: Path, parse: Callable[[Path, Any], T], ignored: str) -> tuple[T | None, str]:
    """An optional file of a dataset folder, parsed by ``parse(path, data)``, and a note for the user.

    Absent: ``(None, "")``. Unreadable, not JSON, or refused by ``parse`` with a DatasetError: ``(None,
    "<that error>, <ignored>")``, where ``ignored`` says what is done instead; a bad optional file never
    stops a scan. Otherwise ``(parsed, "")``.
    """
    if not os.path.lexists(path):
        return None, ""
    try:
        return parse(path, read_json_file(path)), ""
    except DatasetError as problem:
        return None, f"{problem}, {ignored}"
