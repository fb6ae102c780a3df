"""Terminal output of the headless commands: a progress line on stderr, the ranked table on stdout."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from acetui.atomic import write_text_atomic
from acetui.errors import AcetuiError, OutputExistsError
from acetui.estimate import (
    BatchDone,
    EngineEvent,
    EstimateRequest,
    EstimateResult,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    RunWarning,
    StageChanged,
    StageProgress,
    rank_modules,
)
from acetui.estimate.exports import FORMATS_WITH_STATS, export, target_modules_string
from acetui.estimate.memory import MemoryStats
from acetui.estimate.rank_budget import check_budget_floor, peft_rank_json
from acetui.estimate.sidestep import (
    DEFAULT_BASE_RANK,
    DEFAULT_RANK_MAX,
    DEFAULT_RANK_MIN,
    check_rank_budget,
    export_fisher_map,
    fisher_map_path,
)
from acetui.estimate.stats import RankingStats, result_stats
from acetui.folders import nearest_existing
from acetui.pace import Pace, Paced, Progress
from acetui.units import (
    block_bar,
    figure,
    format_bytes,
    format_duration,
    progress_text,
    replays_text,
    session_timing,
)

PROGRESS_WIDTH = 20
TERMINAL_INTERVAL = 0.1  # seconds between two batch lines on a terminal
LOG_INTERVAL = 10.0  # and in a log (stderr not a terminal)
# what a batch line leaves out, in this order, on a terminal too narrow for all of it: a line that wraps
# cannot be rewritten in place (the terminal scrolls instead), and the full line is ~115 columns
NARROW_TERMINAL_DROPS = ("speed", "bar", "stability", "memory", "loss")  # "batch 3/200" and the ETA stay


def memory_text(memory: MemoryStats) -> str:
    if memory.is_cuda:
        return (
            f"VRAM {format_bytes(memory.allocated)} (peak {format_bytes(memory.peak)} / {format_bytes(memory.total)})"
        )
    return f"RSS {format_bytes(memory.allocated)}"


@contextmanager
def counted_on_terminal(what: str, unit: str, stream: TextIO | None = None) -> Iterator[Progress | None]:
    """A slow step's count (``scanning X ... 1,200 of 5,000 files``) on one line of a terminal, a few times
    a second, wiped when the step ends; None on a pipe or log, which would keep every update."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield None
        return

    def show(done: int, total: int) -> None:
        stream.write(f"\r\033[K{what} ... {progress_text(done, total, unit)}")
        stream.flush()

    try:
        yield Paced(show)
    finally:
        stream.write("\r\033[K")
        stream.flush()


def tell(stream: TextIO, text: str) -> bool:
    """Write ``text`` at once; False when the stream fails (a terminal gone with its SSH connection), which
    loses the text, never the run or the files that follow it."""
    try:
        stream.write(text)
        stream.flush()
    except OSError:
        return False
    return True


def batch_parts(event: BatchDone) -> dict[str, str]:
    """The parts of a batch's progress line, by name (``NARROW_TERMINAL_DROPS``), in the order shown."""
    loss = "" if event.excluded else f"loss {event.loss:.4f} (mean {event.mean_loss:.4f})"
    parts = {
        "bar": f"|{block_bar((event.index + 1) / event.total, PROGRESS_WIDTH)}|",
        "batch": f"batch {event.index + 1}/{event.total}",
        "loss": loss,
        "excluded": event.excluded,  # why the batch does not count: never left out
        "stability": "" if event.stability is None else f"stability {event.stability:.2f}",
        "memory": memory_text(event.memory),
        "speed": f"{event.seconds_per_batch:.2f} s/batch",
        "eta": f"ETA {format_duration(event.eta_seconds)}",
    }
    return {name: text for name, text in parts.items() if text}


def fitted(parts: dict[str, str], columns: int) -> str:
    """``parts`` on one line narrower than ``columns``: without the ``NARROW_TERMINAL_DROPS``, in order, until
    it fits, and cut at the edge as a last resort."""
    shown = dict(parts)
    line = "  ".join(shown.values())
    for name in NARROW_TERMINAL_DROPS:
        if len(line) < columns:
            return line
        shown.pop(name, None)
        line = "  ".join(shown.values())
    return line if len(line) < columns else line[: columns - 1]


class ConsoleReporter:
    """Engine event callback for the CLI: a progress line for batches (``batch_pace``), notes for stops and
    failures."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.last_batch: BatchDone | None = None
        # a batch's line: on a terminal at most ten a second (fast GPU batches rewrote the line a hundred times a
        # second over SSH), in a log every ten seconds (a 3,000-batch run under nohup wrote 3,000 lines); the
        # first batch, the last and an excluded one always
        self.batch_pace = Pace(TERMINAL_INTERVAL if self.interactive else LOG_INTERVAL)
        self.resumed_at = 0
        self.gone = False  # the stream failed (a terminal gone with its SSH connection): nothing more is written

    def note(self, text: str) -> None:
        self._write(("\n" if self.interactive else "") + f"acetui: {text}\n")

    def _line(self, text: str, final: bool = False) -> None:
        if self.quiet:
            return
        if self.interactive:
            self._write(f"\r\033[K{text}" + ("\n" if final else ""))
        else:
            self._write(text + "\n")

    def _write(self, text: str) -> None:
        """Once the stream failed, nothing more is tried (the engine calls this, and would take an error for
        the run's own)."""
        self.gone = self.gone or not tell(self.stream, text)

    def __call__(self, event: EngineEvent) -> None:
        if isinstance(event, StageChanged):
            self._line(event.message + " ...", final=True)
        elif isinstance(event, StageProgress):
            if self.interactive:  # a log gets the stages, not a line every fifth of a second
                self._line("  " + progress_text(event.done, event.total, event.unit))
        elif isinstance(event, RunStarted):
            self.resumed_at = event.first_batch
            model = event.model
            self._line(
                f"run {event.run_id}: {model.variant} ({model.parameters / 1e6:.1f} M params, {model.dtype} on "
                f"{model.device}, loaded in {model.load_seconds:.1f} s); {event.dataset.summary()}",
                final=True,
            )
        elif isinstance(event, BatchDone):
            self.last_batch = event
            if event.index + 1 < event.total and not event.excluded and not self.batch_pace.due():
                return
            parts = batch_parts(event)
            line = fitted(parts, self._columns()) if self.interactive else "  ".join(parts.values())
            self._line(line, final=event.index + 1 == event.total or not self.interactive)
        elif isinstance(event, RunFinished):
            done, replays = event.result.completed_batches, event.result.graph_replays
            self._line(f"done: {done} batches{self._timing(done)}{replays_text(replays)}", final=True)
        elif isinstance(event, RunStopped):
            self.note(event.message if event.result is None else f"{event.message}; partial result saved")
        elif isinstance(event, RunFailed):
            self.note(event.message)
        elif isinstance(event, RunWarning):
            self.note(f"warning: {event.message}")

    def _columns(self) -> int:
        """The terminal's width; unbounded when it is not known (a pseudo-terminal given no size)."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or sys.maxsize
        except (OSError, ValueError, AttributeError):
            return sys.maxsize

    def _timing(self, done: int) -> str:
        """How long this session's batches took and the peak memory, for the closing line."""
        last = self.last_batch
        if last is None:
            return ""
        memory = last.memory
        peak = f"peak {'VRAM' if memory.is_cuda else 'RSS'} {format_bytes(memory.peak)}"
        took = session_timing(done - self.resumed_at, self.resumed_at, last.elapsed)
        return f"{took} ({last.seconds_per_batch:.2f} s/batch), {peak}"


def print_ranking(result: EstimateResult, score: str, stream: TextIO) -> None:
    """The top-k as an aligned table plus the suggested target modules."""
    request = result.request
    ranking = rank_modules(result, score, request.granularity)
    stats = result_stats(result, score)
    figures = stats.by_name()
    width = max(len(item.module) for item in ranking[: request.top_k])
    stream.write(
        f"{'rank':>4}  {'module':<{width}}  {score:>12}  {'share':>6}  {'std err':>9}  {'95% interval':>21}  "
        f"{'P(top-' + str(stats.top_k) + ')':>9}\n"
    )
    for item in ranking[: request.top_k]:
        unit = figures[item.module]
        interval = f"{figure(unit.ci_low)} .. {figure(unit.ci_high)}"
        chance = f"{unit.p_top_k:.0%}" if math.isfinite(unit.p_top_k) else "n/a"
        stream.write(
            f"{item.rank:>4}  {item.module:<{width}}  {item.sensitivity:>12.6g}  {item.share:>6.1%}  "
            f"{figure(unit.stderr):>9}  {interval:>21}  {chance:>9}\n"
        )
    stream.write(stability_line(result, stats) + "\n")
    excluded = len(result.excluded_batches)
    skipped = len(result.metadata.get("dataset", {}).get("skipped_samples", []))
    stream.write(
        f"\n{len(result.included_batches)} batches"
        + (f", {excluded} excluded" if excluded else "")
        + (f", {skipped} bad sample files skipped" if skipped else "")
        + f'; --target-modules "{target_modules_string(ranking, request.top_k)}"\n'
    )


def stability_line(result: EstimateResult, stats: RankingStats) -> str:
    """How stable the top-k set is, and why an auto run stopped."""
    if not math.isfinite(stats.stability):
        text = f"top-{stats.top_k} stability: n/a (needs at least 2 batches)"
    else:
        text = (
            f"top-{stats.top_k} stability {stats.stability:.2f} (share of the top-{stats.top_k} kept across "
            f"{stats.resamples} bootstrap resamples of {stats.batches} batches)"
        )
    reason = result.metadata.get("stop_reason")
    if result.request.auto_batches and reason == "stable":
        text += f"; auto stopped: target {result.request.stability_target:g} reached"
    elif result.request.auto_batches and reason == "max_batches":
        text += (
            f"; auto stopped at --max-batches {result.request.max_batches} before reaching "
            f"{result.request.stability_target:g}"
        )
    return text


def write_outputs(result: EstimateResult, args: argparse.Namespace) -> list[Path]:
    """The files the user asked for, each written atomically; returned for the caller to name. One that
    cannot be written once the run is over (a full disk) says how to write them again from the record."""
    try:
        return _write_outputs(result, args)
    except AcetuiError as error:
        again = f"the run is kept: acetui show {result.run_id} with the same output options writes them again"
        raise AcetuiError(f"{error} ({again})") from None


def _write_outputs(result: EstimateResult, args: argparse.Namespace) -> list[Path]:
    written: list[Path] = []
    score = args.score or result.request.score
    ranking = rank_modules(result, score, result.request.granularity)
    top_k = result.request.top_k
    budget = getattr(args, "rank_budget", None)
    peft_plain = args.peft_output if budget is None else None
    suffixes = args.peft_suffix_output
    for path, fmt in ((args.output, "json"), (args.csv, "csv"), (peft_plain, "peft"), (suffixes, "peft-suffix")):
        if path is not None:
            stats = result_stats(result, score) if fmt in FORMATS_WITH_STATS else None
            written.append(export(path, fmt, ranking, top_k, stats, scored_by=score))
    if args.peft_output is not None and budget is not None:
        text = peft_rank_json(
            result,
            ranking,
            top_k,
            base_rank=args.base_rank,
            min_rank=args.rank_min,
            max_rank=args.rank_max,
            budget_params=budget or None,
        )
        peft_path = Path(args.peft_output).expanduser()
        write_text_atomic(peft_path, text)
        written.append(peft_path)
    target = fisher_map_target(result.request, args)
    if target is not None:
        fisher_map = export_fisher_map(
            result,
            target,
            force=args.force,
            score=score,
            base_rank=args.base_rank,
            rank_min=args.rank_min,
            rank_max=args.rank_max,
            progress=None if args.quiet else effective_rank_progress(sys.stderr),
            warn=lambda text: tell(sys.stderr, f"acetui: warning: {text}\n"),
        )
        written.append(fisher_map)
    return written


def effective_rank_progress(stream: TextIO):
    """A ``progress(done, todo)`` line for the one-off SVDs of the pretrained weights (minutes on a CPU)."""
    interactive = stream.isatty()

    def report(done: int, todo: int) -> None:
        if interactive or done in (1, todo):
            bar = block_bar(done / todo, PROGRESS_WIDTH)
            text = f"|{bar}| effective rank of the pretrained weights {done}/{todo} (cached for this checkpoint)"
            tell(stream, ("\r\033[K" if interactive else "") + text + ("\n" if done == todo or not interactive else ""))

    return report


def check_outputs(request: EstimateRequest, args: argparse.Namespace) -> None:
    """Refuse, before the run, output options that would only fail once it is over: an existing fisher
    map without ``--force``, rank limits or a ``--rank-budget`` that no ranking can satisfy (the module
    shapes come from the variant's config.json, no weights are read), and a file that cannot be
    written where it is asked for."""
    fisher_map = fisher_map_target(request, args)
    budget = getattr(args, "rank_budget", None)
    if budget is not None and args.peft_output is None:
        raise AcetuiError("--rank-budget sets the rank_pattern of the --peft-output file: give --peft-output too")
    if budget is not None:
        if budget < 0:
            raise AcetuiError(f"--rank-budget must be at least 0 (0: what --base-rank costs), got {budget}")
        check_rank_budget(args.base_rank, args.rank_min, args.rank_max)
        check_budget_floor(request, budget, args.base_rank, args.rank_min)
    named: dict[Path, str] = {}
    for option, path in (
        ("--estimate-output", args.output),
        ("--csv", args.csv),
        ("--peft-output", args.peft_output),
        ("--peft-suffix-output", args.peft_suffix_output),
        ("--fisher-map", fisher_map),
    ):
        if path is None:
            continue
        path = Path(path).expanduser()
        check_writable(option, path)
        same = named.setdefault(path.resolve(), option)
        if same != option:  # the second file would replace the first
            raise AcetuiError(f"{same} and {option} both name {path}: give each output a file of its own")


RANK_DEFAULTS = {"base_rank": DEFAULT_BASE_RANK, "rank_min": DEFAULT_RANK_MIN, "rank_max": DEFAULT_RANK_MAX}


def ignored_options(request: EstimateRequest, args: argparse.Namespace) -> list[str]:
    """Options given that change nothing with the others given: said rather than dropped without a word."""
    notes = []
    ranked = getattr(args, "fisher_map", None) is not None or getattr(args, "rank_budget", None) is not None
    changed = [name for name, default in RANK_DEFAULTS.items() if getattr(args, name, default) != default]
    if changed and not ranked:
        given = ", ".join("--" + name.replace("_", "-") for name in changed)
        notes.append(f"{given}: used by --fisher-map or --rank-budget only, neither is given; ignored")
    if getattr(args, "force", False) and getattr(args, "fisher_map", None) is None:
        notes.append("--force: lets --fisher-map replace a map, and --fisher-map is not given; ignored")
    auto_only = [
        f"--{name.replace('_', '-')}"
        for name in ("max_batches", "stability_target")
        if getattr(args, name, None) is not None
    ]
    if auto_only and not request.auto_batches:
        notes.append(f"{', '.join(auto_only)}: used by --estimate-batches auto only; ignored")
    return notes


def wants_outputs(args: argparse.Namespace) -> bool:
    """Whether any file output was asked for (a complete run's ``resume`` then only writes them)."""
    paths = (args.output, args.csv, args.peft_output, args.peft_suffix_output, getattr(args, "fisher_map", None))
    return any(path is not None for path in paths)


def check_writable(option: str, path: Path) -> None:
    """AcetuiError naming ``option`` and ``path`` unless a file can be created there: not a folder, and
    its nearest existing parent is a folder this user may write in (missing folders are created)."""
    if path.is_dir():
        raise AcetuiError(f"{option} {path}: is a folder, not a file")
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        raise AcetuiError(f"{option} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AcetuiError(f"{option} {path}: no permission to write in {parent}")


def fisher_map_target(request: EstimateRequest, args: argparse.Namespace) -> Path | None:
    """Where ``--fisher-map`` writes (bare flag: the dataset folder); refuses an existing file without
    ``--force`` and a bad rank budget (see ``check_outputs``, which runs it before the run)."""
    value = getattr(args, "fisher_map", None)
    if value is None:
        return None
    check_rank_budget(args.base_rank, args.rank_min, args.rank_max)
    target = fisher_map_path(request.dataset_dir, value or None)
    if target.exists() and not args.force:
        raise OutputExistsError(target)
    return target
