"""Run history: one JSON record per run in the user data folder, rewritten atomically after each batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from acetui import paths
from acetui.errors import AcetuiError
from acetui.estimate.result import RECORD_SUFFIX, EstimateResult
from acetui.estimate.result import read_record as load_record
from acetui.estimate.scores import rank_modules
from acetui.model.checkpoint import DECODER_PREFIX

__all__ = ["HistoryProblem", "batches_done", "find_run", "list_runs", "load_record", "runs_table", "top_module"]


@dataclass(frozen=True)
class HistoryProblem:
    """A record that could not be read; it is moved aside so the history still opens."""

    path: Path
    reason: str

    @property
    def fate(self) -> str:
        """What became of the file: renamed to ``*.bad``, or left where it was when renaming failed."""
        return f"moved aside to {self.path.name}" if self.path.name.endswith(".bad") else "could not be moved aside"


def find_run(reference: str) -> Path:
    """A run id (or unique prefix) from the history, or a path to a record file; taken literally (a
    ``*`` or a folder is no pattern), and an empty reference matches nothing rather than every run."""
    if not reference.strip():
        raise AcetuiError("empty run id (give a run id from the history or a run record file)")
    candidate = Path(reference).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        raise AcetuiError(f"{reference}: is a folder, not a run id or run record file")
    folder = paths.app_dirs().runs
    records = folder.glob(f"*{RECORD_SUFFIX}") if folder.is_dir() else ()
    matches = sorted(path for path in records if path.name.startswith(reference))
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
    for path in sorted(folder.glob(f"*{RECORD_SUFFIX}"), reverse=True):
        try:
            runs.append(load_record(path))
        except AcetuiError as error:
            aside = path.with_suffix(f"{RECORD_SUFFIX}.bad")
            try:
                path.replace(aside)
            except OSError:
                aside = path
            problems.append(HistoryProblem(aside, str(error)))
    runs.sort(key=started, reverse=True)
    return runs, problems


def started(run: EstimateResult) -> tuple[str, str]:
    """Sorts runs by when they were created (microseconds: two runs can start within the second their
    ids share), then by id."""
    return str(run.metadata.get("created", "")), run.run_id


def top_module(run: EstimateResult) -> str:
    """The run's most sensitive unit by its own score, without the ``decoder.`` prefix; ``-`` before any
    included batch."""
    if not run.included_batches:
        return "-"
    return rank_modules(run)[0].module.removeprefix(DECODER_PREFIX)


def batches_done(run: EstimateResult) -> str:
    """``done/asked``; an auto run ``done (auto, max N)``: it stops when stable, so ``9/12`` would read as
    unfinished. ASCII, as all of the CLI's output (a Windows console may not encode more)."""
    request = run.request
    if request.auto_batches:
        return f"{run.completed_batches} (auto, max {request.max_batches})"
    return f"{run.completed_batches}/{request.batches}"


def runs_table(runs: list[EstimateResult]) -> str:
    """``acetui runs``: one aligned line per run with the app's History's facts (the top module last here,
    where a long name can run on)."""
    rows = [("run", "status", "variant", "dataset", "batches", "top module")]
    rows += [
        (
            run.run_id,
            run.status,
            run.request.variant,
            Path(run.request.dataset_dir).name,
            batches_done(run),
            top_module(run),
        )
        for run in runs
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    return "\n".join(lines) + "\n"
