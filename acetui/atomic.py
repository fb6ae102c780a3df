"""Atomic file writes: a temporary file in the same folder, fsynced, then renamed over the target.

A reader (or a crash) therefore sees either the old file or the complete new one, never half of it,
and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from acetui.errors import AcetuiError


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``; raise AcetuiError naming the path when it cannot be written.

    The descriptor is handed to ``open`` at once, so an interruption (a second Ctrl+C) can never
    close it twice; the temporary file is removed on any failure, interruptions included.
    """
    path = Path(path)
    if path.is_dir():
        raise AcetuiError(f"{path}: is a directory, give a file name")
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with open(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        raise AcetuiError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
