"""The one check of a folder the user picked (a dataset, a checkpoints root), so that every step and
command words the same problem the same way."""

from __future__ import annotations

import os
from pathlib import Path

from acetui.errors import AcetuiError

PERMISSION_DENIED = "cannot read (permission denied)"


def cannot_read(error: OSError) -> str:
    """Why an OSError stopped a read, in the words every path check uses."""
    if isinstance(error, PermissionError):
        return PERMISSION_DENIED
    return f"cannot read ({error.strerror or error})"


def not_found(path: Path, what: str) -> str:
    """Why ``path`` (a ``what``) is missing: a link to nowhere is named with its target, which is what the
    user must mend (a dataset or checkpoint moved from under the link); otherwise plainly "not found"."""
    try:
        return f"a link to {os.readlink(path)}, which does not exist"
    except OSError:  # not a link (or gone): the path itself is missing
        return f"{what} not found"


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists: where creating ``path`` would start (or fail)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder(folder: Path, error: type[AcetuiError], what: str = "folder") -> None:
    """Raise ``error`` naming ``folder`` (described as ``what`` when missing) when it is missing, not a
    folder, or cannot be listed and entered (without search permission its files cannot be read)."""
    try:
        found = folder.is_dir()
    except OSError as problem:  # is_dir says False for a missing path, raises for others (a name too long)
        raise error(f"{folder}: {cannot_read(problem)}") from None
    if not found:
        raise error(f"{folder}: {'not a folder' if folder.exists() else not_found(folder, what)}")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise error(f"{folder}: {PERMISSION_DENIED}")
