"""What kind of thing a dataset path is, judged from ``stat`` alone.

A dataset folder can hold a ``.pt`` name that is not a file (a dangling link, a folder, a named pipe
left by a streaming tool); opening a named pipe blocks until someone writes to it, so anything that is
not a regular file is reported by its kind and never opened.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from acetui.errors import DatasetError
from acetui.jsonfile import read_json

_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def file_problem(path: Path) -> str | None:
    """Why ``path`` (followed through links) cannot be read as a file, or None for a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "broken link (its target does not exist)" if path.is_symlink() else "file not found"
    except PermissionError:
        return "cannot read (permission denied)"
    except OSError as error:
        return f"cannot read ({error.strerror or error})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "something else")
    return f"not a regular file ({kind})"


def read_json_file(path: Path) -> Any:
    """``read_json`` for a small file of a dataset folder; DatasetError naming it when it is not a regular
    file (then it is never opened), cannot be read or is not JSON."""
    problem = file_problem(path)
    if problem:
        raise DatasetError(f"{path}: {problem}")
    return read_json(path, DatasetError)
