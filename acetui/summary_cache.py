"""The run history's summaries kept between listings (a ``FileCache``), so that a listing reads only the
records that changed since the last: a record of 3,000 batches takes about a quarter of a second to read
and rank, and History and ``acetui runs`` read every record each time they open."""

from __future__ import annotations

from pathlib import Path

from acetui import paths
from acetui.file_cache import FileCache, made_by

CACHE_VERSION = 3


def cache_file() -> Path:
    return paths.app_dirs().cache / "run-summaries.json"


def load_summaries() -> FileCache:
    return FileCache.load(cache_file(), made_by(CACHE_VERSION))
