"""Run history: one JSON record per run in the user data folder, rewritten atomically after each batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from acetui import paths
from acetui.errors import AcetuiError
from acetui.estimate.result import EstimateResult
from acetui.jsonfile import read_json


@dataclass(frozen=True)
class HistoryProblem:
    """A record that could not be read; it is moved aside so the history still opens."""

    path: Path
    reason: str


def load_record(path: Path) -> EstimateResult:
    """Read one run record; AcetuiError naming the file when it does not parse."""
    data = read_json(path)
    try:
        return EstimateResult.from_dict(data)
    except RecursionError:
        raise AcetuiError(f"{path}: not a valid run record (nested too deeply)") from None
    except (KeyError, TypeError, ValueError, AttributeError, AcetuiError) as error:
        raise AcetuiError(f"{path}: not a valid run record ({error})") from None


def find_run(reference: str) -> Path:
    """A run id (or unique prefix) from the history, or a path to a record file."""
    candidate = Path(reference).expanduser()
    if candidate.is_file():
        return candidate
    folder = paths.app_dirs().runs
    matches = sorted(folder.glob(f"{reference}*.json")) if folder.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AcetuiError(f"{reference}: no such run id in {folder} and no such file")
    raise AcetuiError(f"{reference}: ambiguous run id ({len(matches)} runs match)")


def list_runs() -> tuple[list[EstimateResult], list[HistoryProblem]]:
    """Every readable run, newest first; unreadable records are renamed to ``*.bad`` and reported."""
    folder = paths.app_dirs().runs
    if not folder.is_dir():
        return [], []
    runs, problems = [], []
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            runs.append(load_record(path))
        except AcetuiError as error:
            aside = path.with_suffix(".json.bad")
            try:
                path.replace(aside)
            except OSError:
                aside = path
            problems.append(HistoryProblem(aside, str(error)))
    return runs, problems
