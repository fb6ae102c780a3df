"""A benchmark's own user folders: acetui's history, profiles and caches under a temporary folder, so that a
benchmark never reads or changes the user's, and starts from none."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def temporary_user_folders() -> Iterator[Path]:
    """The temporary folder holding the XDG folders acetui uses meanwhile; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="acetui-bench-") as work:
        root = Path(work)
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
            os.environ[name] = str(root / name.lower())
        yield root
