"""What a scan found in each valid sample, kept between scans (a ``FileCache`` per dataset folder and model
widths): the app's dataset step, the run it starts and every later run scan the whole folder, and a scan
loads every file (about 2 ms for a 60 s sample from the page cache, far more from a network disk), where a
run of a few batches reads a few samples.

Only valid samples are kept: a bad file is read again at every scan (it may have been unreadable for a
moment only). So is a file changed within the last ``SETTLED_SECONDS``: a rewrite within the same tick of
the file system's clock would keep its whole identity (the "racy" case git guards against as well).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from acetui import paths
from acetui.data.samples import SampleInfo
from acetui.file_cache import FileCache, FileKey, made_by

CACHE_VERSION = 1
SETTLED_SECONDS = 2  # above the coarsest timestamp tick of a file system a dataset lives on (FAT's 2 s)


def cache_location(folder: Path, condition_width: int | None, context_channels: int) -> Path:
    """One cache file per folder and widths: a sample valid for one model may have the wrong width for
    another."""
    identity = json.dumps([str(folder.resolve()), condition_width, context_channels])
    return paths.app_dirs().scans / f"{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json"


class ScanCache:
    """The samples a scan of ``folder`` for these widths found valid, by file."""

    def __init__(self, folder: Path, condition_width: int | None, context_channels: int) -> None:
        self.folder = folder
        self.real_folder = Path(os.path.realpath(folder))
        self.files = FileCache.load(cache_location(folder, condition_width, context_channels), made_by(CACHE_VERSION))
        self.settled_before_ns = time.time_ns() - SETTLED_SECONDS * 1_000_000_000

    def entry(self, path: Path) -> Path:
        """The name a sample's entry goes by: its path within the folder, however the folder is spelled (a
        relative path, a link to it), so that ``acetui scan data`` and a run's absolute path share entries;
        a sample a manifest lists from elsewhere, its real path."""
        try:
            return path.relative_to(self.folder)  # a file of the folder: no system call
        except ValueError:
            real = Path(os.path.realpath(path))
        try:
            return real.relative_to(self.real_folder)  # an absolute path in a manifest, say
        except ValueError:
            return real

    def get(self, path: Path, key: FileKey) -> SampleInfo | None:
        value = self.files.get(self.entry(path), key)
        if not (isinstance(value, list) and len(value) == 5 and isinstance(value[4], str)):
            return None
        sizes = value[:4]
        if not all(type(size) is int and size >= 0 for size in sizes):
            return None
        return SampleInfo(path, *sizes, value[4])

    def put(self, key: FileKey, info: SampleInfo) -> None:
        if key.last_change_ns < self.settled_before_ns:
            sizes = [info.frames, info.condition_length, info.condition_width, info.size_bytes]
            self.files.put(self.entry(info.path), key, [*sizes, info.content])

    def save(self, scanned: Iterable[Path]) -> None:
        self.files.save({self.entry(path) for path in scanned})
