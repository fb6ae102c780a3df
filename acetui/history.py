"""Run history: one JSON record per run in the user data folder, rewritten atomically as batches complete."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from acetui import paths
from acetui.atomic import remove_leftovers
from acetui.errors import AcetuiError
from acetui.estimate.ownership import being_taken_up, run_left_alone, run_owner_alive
from acetui.estimate.request import EstimateRequest
from acetui.estimate.result import RECORD_SUFFIX, EstimateResult, OtherVersionRecord, record_file
from acetui.estimate.result import read_record as load_record
from acetui.estimate.scores import rank_modules
from acetui.file_cache import file_key
from acetui.model.checkpoint import DECODER_PREFIX
from acetui.model.variants import variant_label
from acetui.summary_cache import load_summaries
from acetui.units import aligned_lines

__all__ = [
    "HistoryProblem",
    "RunSummary",
    "batches_done",
    "delete_run",
    "find_run",
    "history_record",
    "list_runs",
    "load_record",
    "runs_table",
    "shown_status",
    "top_module",
]


@dataclass(frozen=True)
class HistoryProblem:
    """A record that is not listed, and what became of its file: a broken one is moved aside so the history
    still opens; another version's record, or a copy of a listed run, is left where it is."""

    path: Path
    reason: str
    fate: str


def history_record(run_id: str) -> Path:
    """Where the run history keeps run ``run_id``'s record (what the engine of this app writes)."""
    return record_file(paths.app_dirs().runs, run_id)


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
    if record_file(folder, reference).is_file():  # a whole id, even where a copy's name starts with it
        return record_file(folder, reference)
    records = folder.glob(f"*{RECORD_SUFFIX}") if folder.is_dir() else ()
    matches = sorted(path for path in records if path.name.startswith(reference))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AcetuiError(f"{reference}: no such run id in {folder} and no such file")
    raise AcetuiError(f"{reference}: ambiguous run id ({len(matches)} runs match)")


def list_runs() -> tuple[list[RunSummary], list[HistoryProblem]]:
    """Every readable run, newest first, summarised (one record held at a time, and only the records
    changed since the last listing read: ``summary_cache``); unreadable records are renamed to ``*.bad``
    and reported."""
    folder = paths.app_dirs().runs
    if not folder.is_dir():
        return [], []
    runs, problems = [], []
    cache = load_summaries()
    records = sorted(folder.glob(f"*{RECORD_SUFFIX}"), reverse=True)
    for path in records:
        key = file_key(path)  # before the read: a record replaced meanwhile is read again next time
        cached = RunSummary.from_dict(cache.get(path, key))
        if cached is not None:
            runs.append(cached)
            continue
        try:
            run = load_record(path)
        except OtherVersionRecord as error:
            problems.append(HistoryProblem(path, str(error), "left in place"))
            continue
        except AcetuiError as error:
            problems.append(_move_aside(path, str(error)))
            continue
        if path.name != record_file(folder, run.run_id).name:  # a backup copy would list the run twice
            reason = f"{path}: holds run {run.run_id} under another name (a copy?)"
            problems.append(HistoryProblem(path, reason, "left in place"))
            continue
        summary = RunSummary.of(run)
        if run.status != "running":  # whether a running run's owner lives is asked at every listing
            cache.put(path, key, summary.to_dict())
        runs.append(summary)
    cache.save(set(records))
    runs = [_resuming(run) for run in runs]
    runs.sort(key=RunSummary.age, reverse=True)
    return runs, problems


def delete_run(record: Path) -> EstimateResult:
    """Remove a run of the history for good (a history of trial runs only grows otherwise); refused, naming
    why, while a process runs it or is taking it up, or when ``record`` is no record of the history. The
    run as it was, for the caller to say what went."""
    folder = paths.app_dirs().runs
    if record.parent.resolve() != folder.resolve():
        raise AcetuiError(f"{record}: not a run of the history in {folder} (a file elsewhere is yours to delete)")
    with run_left_alone(load_record(record), record) as run:
        try:
            record.unlink()
            remove_leftovers(record)
        except OSError as error:
            raise AcetuiError(f"{record}: cannot delete ({error.strerror or error})") from None
    return run


def _resuming(run: RunSummary) -> RunSummary:
    """A stopped run that a process is taking up (setting up, before its record says it runs) is shown as
    resuming, not as stopped: resuming or deleting it is refused meanwhile."""
    if run.status in ("running", "complete") or not being_taken_up(history_record(run.run_id)):
        return run
    return replace(run, status="resuming")


def _move_aside(path: Path, reason: str) -> HistoryProblem:
    """Rename a broken record to ``*.bad`` (numbered when one is there already, never replacing it)."""
    for number in range(1000):
        aside = path.with_name(path.name + (f".{number}" if number else "") + ".bad")
        if aside.exists():
            continue
        try:
            path.replace(aside)
        except OSError:
            break
        return HistoryProblem(aside, reason, f"moved aside to {aside.name}")
    return HistoryProblem(path, reason, "could not be moved aside")


def shown_status(run: EstimateResult) -> str:
    """The status to show: a record left "running" by a process that is gone (killed, or aborted by a second
    Ctrl-C before it could say so) is an interrupted run, which resume continues."""
    return "interrupted" if run.status == "running" and not run_owner_alive(run) else run.status


def top_module(run: EstimateResult) -> str:
    """The run's most sensitive unit by its own score, without the ``decoder.`` prefix; ``-`` before any
    included batch."""
    if not run.included_batches:
        return "-"
    request = run.request
    return rank_modules(run, request.score, request.granularity)[0].module.removeprefix(DECODER_PREFIX)


def batches_done(run: EstimateResult) -> str:
    return batches_text(run.completed_batches, run.request)


def batches_text(completed: int, request: EstimateRequest) -> str:
    """``done/asked``; an auto run ``done (auto, max N)``: it stops when stable, so ``9/12`` would read as
    unfinished. ASCII, as all of the CLI's output (a Windows console may not encode more)."""
    if request.auto_batches:
        return f"{completed} (auto, max {request.max_batches})"
    return f"{completed}/{request.batches}"


@dataclass(frozen=True)
class RunSummary:
    """A listed run: what History and ``acetui runs`` show of it, without its batches (hundreds of runs held
    whole took GBs: a long run's norms alone are tens of MB once read). Opening, comparing or resuming it
    reads its record in the history again (``load``). ``created`` sorts runs (to the microsecond: two runs
    can start within the second their ids share)."""

    run_id: str
    request: EstimateRequest
    status: str
    completed: int  # batches done
    top: str
    created: str

    @classmethod
    def of(cls, run: EstimateResult) -> RunSummary:
        return cls(
            run_id=run.run_id,
            request=run.request,
            status=shown_status(run),
            completed=run.completed_batches,
            top=top_module(run),
            created=str(run.metadata.get("created", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "request": self.request.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> RunSummary | None:
        """Inverse of ``to_dict``; None for None or for anything else than what ``to_dict`` gives (a cache
        file of another make), which is then read from its record again."""
        if values is None:
            return None
        try:
            summary = cls(**{**values, "request": EstimateRequest.from_dict(values["request"])})
        except (AcetuiError, KeyError, TypeError, ValueError, AttributeError):
            return None
        texts = (summary.run_id, summary.status, summary.top, summary.created)
        counted = type(summary.completed) is int and summary.completed >= 0
        return summary if counted and all(isinstance(text, str) for text in texts) else None

    @property
    def batches(self) -> str:
        return batches_text(self.completed, self.request)

    def age(self) -> tuple[str, str]:
        """The sort key of a listing, newest last."""
        return self.created, self.run_id

    def load(self) -> EstimateResult:
        """The whole run, as its record is now; AcetuiError naming the file when it is gone or broken."""
        return load_record(history_record(self.run_id))


def runs_table(runs: list[RunSummary]) -> str:
    """``acetui runs``: one aligned line per run with the app's History's facts (the top module last here,
    where a long name can run on)."""
    rows = [("run", "status", "variant", "dataset", "batches", "top module")]
    for run in runs:
        dataset = Path(run.request.dataset_dir).name
        rows.append((run.run_id, run.status, variant_label(run.request.variant), dataset, run.batches, run.top))
    return aligned_lines(rows)
