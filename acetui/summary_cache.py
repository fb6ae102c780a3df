"""The run history's summaries kept between listings, in the user cache, so that a listing reads only the
records that changed since the last: a record of 3,000 batches takes about a quarter of a second to read
and rank, and History and ``acetui runs`` read every record each time they open.

An entry is keyed by its record's path and by the file's inode, size and modification time: a record is
only ever replaced whole (``write_text_atomic``: a new file each time), so any save changes them. The
caller takes the key before it reads the record, so a record replaced meanwhile is read again next time.
The cache is only a shortcut: unreadable, of another version or not writable, it is rebuilt or left
unwritten without a word, and the records are read as if it were not there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from acetui import __version__, paths
from acetui.atomic import write_text_atomic
from acetui.errors import AcetuiError

CACHE_VERSION = 1
FileKey = tuple[int, int, int]


def made_by() -> str:
    """What wrote the summaries: another version of acetui may summarise a run otherwise (rank it by a
    mended score), so its summaries are read again, not shown."""
    return f"{CACHE_VERSION}/acetui {__version__}"


def cache_file() -> Path:
    return paths.app_dirs().cache / "run-summaries.json"


def file_key(path: Path) -> FileKey | None:
    """The file identity an entry is valid for; None when ``path`` cannot be looked at (the reading that
    follows names the problem)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


class SummaryCache:
    """``get`` a record's summary (a plain dict) when its file is the one summarised, ``put`` a new one, and
    ``save`` what the listing saw (entries of records gone are dropped)."""

    def __init__(self, entries: dict[str, Any]) -> None:
        self.entries = entries
        self.changed = False

    @classmethod
    def load(cls) -> SummaryCache:
        try:
            data = json.loads(cache_file().read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return cls({})
        valid = isinstance(data, dict) and data.get("version") == made_by() and isinstance(data.get("runs"), dict)
        return cls(data["runs"] if valid else {})

    def get(self, path: Path, key: FileKey | None) -> dict[str, Any] | None:
        entry = self.entries.get(str(path))
        if key is None or not isinstance(entry, dict) or entry.get("key") != list(key):
            return None
        summary = entry.get("summary")
        return summary if isinstance(summary, dict) else None

    def put(self, path: Path, key: FileKey | None, summary: dict[str, Any]) -> None:
        if key is not None:
            self.entries[str(path)] = {"key": list(key), "summary": summary}
            self.changed = True

    def save(self, listed: set[Path]) -> None:
        """Keep the entries of ``listed`` records only, written when anything changed."""
        kept = {name: entry for name, entry in self.entries.items() if Path(name) in listed}
        if not self.changed and len(kept) == len(self.entries):
            return
        try:
            write_text_atomic(cache_file(), json.dumps({"version": made_by(), "runs": kept}))
        except AcetuiError:  # a read-only or full cache folder: the next listing reads the records again
            return
        finally:
            self.entries, self.changed = kept, False
