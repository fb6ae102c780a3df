"""Atomic file writes: a temporary file in the same folder, fsynced, then renamed over the target.

A reader (or a crash) therefore sees either the old file or the complete new one, never half of it,
and a failed write leaves no temporary file behind. The file gets the mode any new file of the process
gets (0o666 less the umask), or keeps the mode of the file it replaces, so an export or
``fisher_map.json`` in a shared folder stays readable to whoever could read it before. A symbolic link
is written through (its target gets the text, the link stays); a path that exists but is not a regular
file (a device, a pipe, a socket) is refused rather than replaced by a file. Whether an existing file may
be replaced at all is decided here too, from the same ``stat``, for every export a user asks for.
"""

from __future__ import annotations

import os
import secrets
import stat
from contextlib import suppress
from glob import escape as glob_escape
from pathlib import Path

from acetui.errors import AcetuiError, OutputExistsError

NEW_FILE_MODE = 0o666  # narrowed by the umask when the file is created, as open() does


def remove_leftovers(path: Path) -> None:
    """Remove the temporary files that writes of ``path`` killed before their rename (SIGKILL, a power cut)
    left beside it; only for a caller that knows no write of ``path`` is under way (a run's lock holder)."""
    target = Path(os.path.realpath(path))
    for leftover in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        with suppress(OSError):  # one that cannot go is only wasted space
            leftover.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, *, replace: bool = True) -> None:
    """Replace ``path`` (or the file it links to) with ``text``; raise AcetuiError naming the path when it
    cannot or must not be written, OutputExistsError when it is a file and ``replace`` is False.

    The descriptor is handed to ``open`` at once, so an interruption (a second Ctrl+C) can never
    close it twice; the temporary file is removed on any failure, interruptions included.
    """
    path = Path(path)
    target = Path(os.path.realpath(path))  # the file a link points to is the one to replace
    try:
        mode: int | None = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise AcetuiError(f"{path}: cannot write ({error.strerror or error})") from None
    if mode is not None and not stat.S_ISREG(mode):
        problem = "is a directory, give a file name" if stat.S_ISDIR(mode) else "not a regular file"
        raise AcetuiError(f"{path}: {problem}")
    if mode is not None and not replace:
        raise OutputExistsError(path)
    temporary = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # not tempfile.mkstemp: its 0o600 would make the file unreadable to everyone else
        candidate = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # O_BINARY: no \r\n on Windows
        descriptor = os.open(candidate, flags, NEW_FILE_MODE)
        temporary = candidate
        with open(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, stat.S_IMODE(mode))
        os.replace(temporary, target)
        temporary = None
    except OSError as error:
        raise AcetuiError(f"{path}: cannot write ({error.strerror or error})") from None
    except UnicodeEncodeError:  # a file name of other bytes than UTF-8, which TOML cannot hold, for one
        raise AcetuiError(f"{path}: cannot write (a file or folder name in it is not valid UTF-8)") from None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
