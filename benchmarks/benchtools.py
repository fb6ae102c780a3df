"""What the benchmark scripts share: acetui's user folders (history, profiles, caches) of their own under a
temporary folder, so that a benchmark never reads or changes the user's and starts from none; the median
time of a step repeated; and a command line whose ``--json`` file takes the results."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

Result = TypeVar("Result")


@contextmanager
def temporary_user_folders() -> Iterator[Path]:
    """The temporary folder holding the XDG folders acetui uses meanwhile; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="acetui-bench-") as work:
        root = Path(work)
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
            os.environ[name] = str(root / name.lower())
        yield root


def median_seconds(
    step: Callable[[], Result], repeats: int, before_each: Callable[[], object] | None = None
) -> tuple[float, Result]:
    """The median time of ``repeats`` calls of ``step`` (``before_each``, untimed, before each) and what the
    last call returned."""
    seconds = []
    for _ in range(repeats):
        if before_each is not None:
            before_each()
        started = time.perf_counter()
        result = step()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def results_parser(doc: str) -> argparse.ArgumentParser:
    """A script's command line, described by its docstring's first paragraph, with ``--json``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser


def write_results(path: Path | None, results: dict) -> None:
    """The results as JSON at ``path``, when ``--json`` named one."""
    if path is not None:
        path.write_text(json.dumps(results, indent=2) + "\n")
