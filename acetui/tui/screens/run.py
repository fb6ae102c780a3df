"""Step 4: the estimator in a thread worker, reporting by messages: progress, loss, speed, memory, log."""

from __future__ import annotations

import math
import time

import torch
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, ProgressBar, Sparkline, Static
from textual.worker import Worker, WorkerState

from acetui import paths
from acetui.errors import AcetuiError
from acetui.estimate import (
    BatchDone,
    EstimateRequest,
    EstimateResult,
    Estimator,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    RunWarning,
    StageChanged,
    StageProgress,
)
from acetui.estimate.request import resolve_device
from acetui.estimate.stats import MIN_BATCHES
from acetui.tui.messages import EngineMessage, RunRecordChanged
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.widgets.bar import bar
from acetui.tui.widgets.memory_gauge import MemoryGauge
from acetui.tui.widgets.rewrapping_log import RewrappingLog
from acetui.units import format_duration, progress_text, replays_text, session_timing

STABILITY_BAR = 20
# Seconds between two showings of a run's progress: a fast run's batches come faster than anyone reads, and
# showing each took the UI thread as long as a tiny model's batch, which the engine thread then waited for.
SHOW_INTERVAL = 0.1


def gauge_device(request: EstimateRequest) -> torch.device:
    try:
        return resolve_device(request.device)
    except AcetuiError:
        return torch.device("cpu")


def batch_text(event: BatchDone) -> Text:
    text = Text(f"batch {event.index + 1}/{event.total}  ", style="bold")
    if event.excluded:
        text.append(f"excluded: {event.excluded}", style="yellow")
    else:
        text.append(f"loss {event.loss:.4f}  mean {event.mean_loss:.4f}")
    text.append(
        f"\n{event.samples_per_second:.2f} samples/s  {event.seconds_per_batch:.2f} s/batch  "
        f"elapsed {format_duration(event.elapsed)}  ETA {format_duration(event.eta_seconds)}"
    )
    return text


def stability_text(stability: float | None, request: EstimateRequest) -> Text:
    """Where an auto run stands: the top-k stability so far against the target that stops it."""
    target = request.stability_target
    if stability is None:
        return Text(f"top-{request.top_k} stability: from batch {MIN_BATCHES} on; stops at {target:g}", style="dim")
    text = Text(f"top-{request.top_k} stability ", style="bold")
    # as many decimals as the target has (at least 2): 0.995 against 0.999 must not read 1.00
    decimals = max(2, len(f"{target:g}".partition(".")[2]))
    text.append(f"{stability:.{decimals}f}", style="bold green" if stability >= target else "bold yellow")
    text.append(f" / target {target:g}  ")
    text.append_text(bar(stability, STABILITY_BAR, "green" if stability >= target else "yellow"))
    return text


def outcome_text(result: EstimateResult, planned: int | None, elapsed: float | None, resumed_at: int = 0) -> Text:
    """What the run did, in place of the last batch's line: an ended run has no ETA left. The time is this
    session's, so a resumed run says how many of its batches it took for."""
    request, done = result.request, result.completed_batches
    took = session_timing(done - resumed_at, resumed_at, elapsed) + replays_text(result.graph_replays)
    if result.status == "complete":
        reason = result.metadata.get("stop_reason")
        if reason == "stable":
            line = f"stopped: stable after {done} batches{took}"
        elif request.auto_batches:
            line = f"stopped: max {done} batches{took}; stability target {request.stability_target:g} not reached"
        else:
            line = f"done: {done} batches{took}"
        text = Text(line, style="bold green")
    else:
        of = f" of {planned}" if planned else ""
        style = "bold red" if result.status == "failed" else "bold yellow"
        text = Text(f"{result.status} after {done}{of} batches{took}", style=style)
    if math.isfinite(result.mean_loss):
        text.append(f"\nmean loss {result.mean_loss:.4f}")
    return text


def loss_label(losses: list[float]) -> Text:
    text = Text("loss\n", style="bold")
    if losses:
        text.append(f"max {max(losses):.4g}\nmin {min(losses):.4g}", style="dim")
    return text


class RunScreen(Screen):
    """Results open by themselves only when the run ends while this screen is in front; otherwise the user is
    told, and ``enter`` opens them on return. Keys mean what they mean on the other screens: ``enter`` opens
    (as in History), ``escape`` leaves (here it stops a running run, asking first); no letters, which History
    gives other meanings (``c`` compare, ``r`` resume)."""

    CSS_PATH = "run.tcss"
    TITLE = "4 · Run"
    BINDINGS = [
        Binding("enter", "results", "Results", tooltip="Open the (partial) ranking", id="results"),
        Binding("escape", "cancel", "Stop…", tooltip="Stop the run (asks; the partial result is kept)", id="stop"),
        Binding("escape", "back", "Back", tooltip="Back to the parameters", id="back"),
    ]

    running = reactive(True, bindings=True)
    result: reactive[EstimateResult | None] = reactive(None, bindings=True)

    def __init__(self, request: EstimateRequest, resume: EstimateResult | None = None) -> None:
        super().__init__()
        self.request = request
        self.estimator = Estimator(request, on_event=self.forward, record_dir=paths.app_dirs().runs, resume=resume)
        self.run_id: str | None = resume.run_id if resume is not None else None  # known once the run starts
        self.losses: list[float] = []
        self.planned: int | None = None
        self.resumed_at = 0
        self.elapsed: float | None = None
        self.unshown: BatchDone | None = None  # the latest batch, until its progress is shown
        self.shown_at = -math.inf
        self.show_timer: Timer | None = None
        self.stage = ""  # the setup step under way, which its progress is shown after
        self.resuming = resume
        self.stop_question: ConfirmScreen | None = None  # open while "Stop ...?" is asked

    @property
    def label(self) -> str:
        """The run as notices name it: by its id, once the engine has given it one."""
        return f"run {self.run_id}" if self.run_id is not None else f"a run of {self.request.variant} (starting)"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"starting {self.request.variant} on {self.request.dataset_dir} ...", id="stage")
        yield ProgressBar(show_eta=False, id="progress")
        yield Static(id="stats")
        yield Static(stability_text(None, self.request), id="stability")
        with Horizontal(id="loss-row"):
            yield Static(loss_label([]), id="loss-label")
            yield Sparkline([], id="loss")
        yield MemoryGauge(gauge_device(self.request), id="memory")
        yield RewrappingLog(id="log")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#stability").display = self.request.auto_batches
        self.estimate()

    def on_unmount(self) -> None:
        self.estimator.cancel("interrupted")

    def forward(self, event) -> None:
        """Engine callback, called on the worker thread: hand the event to the UI thread."""
        self.post_message(EngineMessage(event))

    @work(thread=True, exclusive=True, exit_on_error=False, group="estimate", description="estimating")
    def estimate(self) -> EstimateResult | None:
        return self.estimator.run()

    def log_line(self, text: str) -> None:
        self.query_one("#log", RewrappingLog).add(text)

    @on(EngineMessage)
    def engine_event(self, message: EngineMessage) -> None:
        event = message.event
        if isinstance(event, StageChanged):
            self.stage = event.message
            self.query_one("#stage", Static).update(event.message + " ...")
            self.log_line(event.message)
        elif isinstance(event, StageProgress):
            if self.estimator.stopping:  # a progress sent before the cancel must not hide "stopping ..."
                return
            progress = progress_text(event.done, event.total, event.unit)
            self.query_one("#stage", Static).update(f"{self.stage} ... {progress}")
        elif isinstance(event, RunWarning):
            self.log_line(f"warning: {event.message}")
            self.notify(event.message, title="Warning", severity="warning", markup=False)
        elif isinstance(event, RunStarted):
            self.started(event)
        elif isinstance(event, BatchDone):
            self.batch_done(event)
        elif isinstance(event, RunFinished):
            self.ended(event.result, "finished")
        elif isinstance(event, RunStopped) and event.result is None:
            self.stopped_setting_up(event.message)
        elif isinstance(event, RunStopped):
            self.ended(event.result, event.message)
        elif isinstance(event, RunFailed):
            self.failed(event.message, event.result)

    def record_changed(self) -> None:
        """Tell the app (and through it History) that the run's record was saved."""
        if self.run_id is not None:
            self.post_message(RunRecordChanged(self.run_id))

    def started(self, event: RunStarted) -> None:
        model = event.model
        self.run_id, self.planned, self.resumed_at = event.run_id, event.total_batches, event.first_batch
        stage = (
            f"run {event.run_id}: {model.variant} {model.parameters / 1e6:.1f} M params, {model.dtype} on "
            f"{model.device} ({model.device_name})"
        )
        self.query_one("#stage", Static).update(stage)
        self.query_one("#progress", ProgressBar).update(total=event.total_batches, progress=event.first_batch)
        self.log_line(f"{stage}; loaded in {model.load_seconds:.1f} s")
        if self.stop_question is not None:  # asked while setting up: stopping now keeps the batches done
            self.stop_question.ask(self.stop_question_text())
        self.log_line(f"dataset: {event.dataset.summary()}")
        if event.first_batch:
            self.log_line(f"resuming after batch {event.first_batch}")

    def batch_done(self, event: BatchDone) -> None:
        """Every batch is counted at once; the progress is shown at most every SHOW_INTERVAL, the latest."""
        self.elapsed = event.elapsed
        if math.isfinite(event.loss):
            self.losses.append(event.loss)
        if event.excluded:
            self.log_line(f"batch {event.index + 1} excluded: {event.excluded}")
        if event.saved:
            self.record_changed()
        self.unshown = event
        if self.show_timer is None:
            wait = self.shown_at + SHOW_INTERVAL - time.monotonic()
            if wait > 0:
                self.show_timer = self.set_timer(wait, self.show_progress)
            else:
                self.show_progress()

    def show_progress(self) -> None:
        """The latest batch's progress, throughput, memory, stability and the loss so far."""
        self.show_timer, event, self.unshown = None, self.unshown, None
        if event is None:
            return
        self.shown_at = time.monotonic()
        self.query_one("#progress", ProgressBar).update(total=event.total, progress=event.index + 1)
        self.query_one("#stats", Static).update(batch_text(event))
        self.query_one("#memory", MemoryGauge).set_total(event.memory.total)
        if self.request.auto_batches:
            self.query_one("#stability", Static).update(stability_text(event.stability, self.request))
        self.query_one("#loss", Sparkline).data = list(self.losses)
        self.query_one("#loss-label", Static).update(loss_label(self.losses))

    def flush_progress(self) -> None:
        """Before the outcome is shown: the last batch, not a later timer showing it over the outcome."""
        if self.show_timer is not None:
            self.show_timer.stop()
        self.show_progress()

    def show_outcome(self, result: EstimateResult | None) -> None:
        """An ended run: a complete one fills the bar (auto runs stop early), none is left animating."""
        self.flush_progress()
        progress = self.query_one("#progress", ProgressBar)
        if result is not None and result.status == "complete":
            progress.update(total=max(result.completed_batches, 1), progress=result.completed_batches)
        elif progress.total is None:
            progress.display = False  # ended before its first batch: an indeterminate bar would spin on
        if result is not None:
            self.query_one("#stats", Static).update(outcome_text(result, self.planned, self.elapsed, self.resumed_at))

    def ended(self, result: EstimateResult, message: str) -> None:
        in_front = self.close_stop_question() or self.is_active
        self.running = False
        self.result = result
        self.show_outcome(result)
        ranked = bool(result.included_batches)
        stage = Text(f"run {result.run_id} {result.status}")  # the line below says how it ended
        if ranked:
            stage.append("  enter opens the results", style="bold")
        self.query_one("#stage", Static).update(stage)
        self.log_line(f"{result.status}: {message}; {result.completed_batches} batches recorded")
        self.record_changed()
        if not ranked:
            self.notify("No batch completed, so there is no ranking", severity="warning")
        elif in_front:
            self.app.push_screen(ResultsScreen(result, self.app.score))
        else:
            self.notify(f"run {result.run_id} {result.status}: open it from History or the Run screen", timeout=10)

    def stopped_setting_up(self, message: str) -> None:
        """Cancelled before the first batch: no record was started (a resumed one is as it was)."""
        self.close_stop_question()
        self.running = False
        self.show_outcome(None)
        self.query_one("#stage", Static).update(Text(message, style="bold"))
        self.log_line(message)

    def failed(self, message: str, result: EstimateResult | None) -> None:
        self.close_stop_question()
        self.running = False
        self.result = result
        self.show_outcome(result)
        self.query_one("#stage", Static).update(Text(f"failed: {message}", style="bold red"))
        self.log_line(f"failed: {message}")
        self.notify(message, title="Run failed", severity="error", timeout=10)
        self.record_changed()

    @on(Worker.StateChanged)
    def worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "estimate" and event.state == WorkerState.ERROR:
            self.failed(f"unexpected error: {event.worker.error!r}", self.result)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.running
        if action == "back":
            return not self.running
        if action == "results":
            return self.result is not None and bool(self.result.included_batches)
        return True

    def stop_question_text(self) -> str:
        """What stopping does now: while setting up nothing has run (a resumed run's batches stay as they are)."""
        if self.planned is not None:
            return "Stop the run after the current batch? The partial result is kept and can be resumed."
        if self.resuming is not None:
            kept = self.resuming.completed_batches
            return f"Stop setting up run {self.resuming.run_id}? Its {kept} batches stay as they are."
        return "Stop setting up the run? No batch has run yet."

    def action_cancel(self) -> None:
        self.stop_question = ConfirmScreen(self.stop_question_text())
        self.app.push_screen(self.stop_question, self.confirm_cancel)

    def close_stop_question(self) -> bool:
        """The run ended while asked whether to stop it: nothing left to stop, so the question goes. Whether it
        was open (the screen was in front but for it)."""
        question, self.stop_question = self.stop_question, None
        if question is None or question is not self.app.screen:  # answered, or replaced by the quit question
            return False
        question.dismiss(None)
        return True

    def confirm_cancel(self, stop: bool | None) -> None:
        self.stop_question = None
        if stop and self.running:
            self.estimator.cancel()
            when = "the setup" if self.planned is None else "after the current batch"
            self.query_one("#stage", Static).update(f"stopping {when} ...")
            self.log_line("cancel requested")

    def action_results(self) -> None:
        if self.result is not None:
            self.app.push_screen(ResultsScreen(self.result, self.app.score))

    def action_back(self) -> None:
        self.app.pop_screen()
