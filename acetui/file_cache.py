"""What was learned from reading files, kept in the user cache for as long as each file stays the same, so
that a folder read again costs a ``stat`` per unchanged file: the run history's summaries
(``summary_cache``) and what a dataset scan found in each sample (``data.scan_cache``).

An entry is keyed by its file's path and identity: device, inode, size, modification and change times. A
save through ``write_text_atomic`` is a new file (a new inode); a rewrite in place changes the change time,
which no tool sets back (``touch -d``, ``rsync -t`` and ``tar`` set the modification time only). The
caller takes the key before it reads the file, so a file replaced meanwhile is read again next time.
A cache is only a shortcut: unreadable, of another version or not writable, it is rebuilt or left
unwritten without a word, and the files are read as if it were not there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from acetui import __version__
from acetui.atomic import write_text_atomic
from acetui.errors import AcetuiError


def made_by(cache_version: int) -> str:
    """What wrote a cache: another version of acetui may read a file otherwise (rank a run by a mended score,
    refuse a sample it took), so its entries are read again, not used."""
    return f"{cache_version}/acetui {__version__}"


class FileKey(NamedTuple):
    """The identity of a file's contents, as far as ``stat`` can tell it."""

    device: int
    inode: int
    size: int
    modified_ns: int
    changed_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileKey:
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)

    @property
    def last_change_ns(self) -> int:
        return max(self.modified_ns, self.changed_ns)


def file_key(path: Path) -> FileKey | None:
    """The identity an entry is valid for (through a link, of the file read); None when ``path`` cannot be
    looked at (the reading that follows names the problem)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return FileKey.of(status)


class FileCache:
    """``get`` the value kept for a file while it is the file it was taken from, ``put`` a new one, and
    ``save`` the entries of the files still there. Values are whatever JSON holds; the caller checks them."""

    def __init__(self, location: Path, made_by: str, entries: dict[str, Any]) -> None:
        self.location = location
        self.made_by = made_by
        self.entries = entries
        self.changed = False

    @classmethod
    def load(cls, location: Path, made_by: str) -> FileCache:
        """The cache at ``location``; empty when missing, unreadable or written by another ``made_by``."""
        try:
            data = json.loads(location.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return cls(location, made_by, {})
        valid = isinstance(data, dict) and data.get("version") == made_by and isinstance(data.get("files"), dict)
        return cls(location, made_by, data["files"] if valid else {})

    def get(self, path: Path, key: FileKey | None) -> Any:
        entry = self.entries.get(str(path))
        if key is None or not isinstance(entry, dict) or entry.get("key") != list(key):
            return None
        return entry.get("value")

    def put(self, path: Path, key: FileKey | None, value: Any) -> None:
        if key is not None:
            self.entries[str(path)] = {"key": list(key), "value": value}
            self.changed = True

    def save(self, present: set[Path]) -> None:
        """Keep the entries of the ``present`` files only, written when anything changed."""
        kept = {name: entry for name, entry in self.entries.items() if Path(name) in present}
        if not self.changed and len(kept) == len(self.entries):
            return
        try:
            write_text_atomic(self.location, json.dumps({"version": self.made_by, "files": kept}))
        except AcetuiError:  # a read-only or full cache folder: the next reading reads the files again
            return
        finally:
            self.entries, self.changed = kept, False
