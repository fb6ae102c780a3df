"""Every recorded run: open its results, resume a partial one, or mark two and compare them. A run of this
app updates its row as it goes (the app routes its record changes here)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from acetui.estimate import EstimateResult
from acetui.estimate.imported import ImportedRanking
from acetui.history import HistoryProblem, batches_done, list_runs, shown_status, top_module
from acetui.tui.screens.compare import CompareScreen
from acetui.tui.screens.following import RecordFollowingScreen
from acetui.tui.screens.open_ranking import OpenRankingScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.widgets.table_place import kept_place
from acetui.tui.widgets.whole_columns import WholeColumnTable

STATUS_STYLES = {
    "complete": "green",
    "cancelled": "yellow",
    "interrupted": "yellow",
    "failed": "red",
    "running": "cyan",
}
# The mark and run id stay in view (FIXED) and the rest scroll by whole columns; the top module comes next to
# the status, so that at 80 columns it reads in full (after them it was cut to "lay").
COLUMNS = (
    ("", "mark"),
    ("run", "run"),
    ("status", "status"),
    ("top module", "top"),
    ("variant", "variant"),
    ("dataset", "dataset"),
    ("batches", "batches"),
)
FIXED = 2


class HistoryScreen(RecordFollowingScreen):
    CSS_PATH = "history.tcss"
    TITLE = "History"
    BINDINGS = [
        # priority: the table's own (hidden) enter binding would otherwise keep "Open" out of the footer
        Binding("enter", "open", "Open", priority=True, tooltip="Open the run's results", id="open"),
        Binding("space", "mark", "Mark", tooltip="Mark up to two runs to compare", id="mark"),
        Binding("c", "compare", "Compare", tooltip="Compare the two marked runs", id="compare"),
        Binding(
            "f",
            "compare_file",
            "Vs file",
            tooltip="Compare the run with a Side-Step or acetui export",
            id="compare-file",
        ),
        Binding("r", "resume", "Resume", tooltip="Continue a partial run", id="resume"),
        Binding("ctrl+l", "reload", "Reload", id="reload"),
        Binding("escape", "app.pop_screen", "Back", id="back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[EstimateResult] = []
        self.tops: dict[str, str] = {}
        self.marked: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="problems")
        yield WholeColumnTable(cursor_type="row", zebra_stripes=True, fixed_columns=FIXED, id="runs")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)

    def on_screen_resume(self) -> None:  # also when first shown: records change while other screens run
        self.action_reload()

    def action_reload(self) -> None:
        self.changed.clear()
        self.read_history()

    @work(thread=True, exclusive=True, group="history", exit_on_error=False, description="reading run history")
    def read_history(self) -> tuple[list[EstimateResult], list[HistoryProblem], dict[str, str]]:
        """Off the UI thread: hundreds of records with 50 batches each take about a second to read and rank."""
        runs, problems = list_runs()
        return runs, problems, {run.run_id: top_module(run) for run in runs}

    def follows(self, run_id: str) -> bool:
        """Every run: one not listed yet (its first batch) makes the whole history be read again."""
        return True

    def show_records(self, runs: list[EstimateResult]) -> None:
        for run in runs:
            self.show_run(run, top_module(run))

    @on(Worker.StateChanged)
    def history_read(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "history":
            return
        if event.state == WorkerState.SUCCESS:
            self.show_runs(*event.worker.result)
        elif event.state == WorkerState.ERROR:
            self.notify(f"cannot read the run history: {event.worker.error}", severity="error")

    def show_runs(self, runs: list[EstimateResult], problems: list[HistoryProblem], tops: dict[str, str]) -> None:
        self.runs, self.tops = runs, tops
        for problem in problems:
            self.notify(f"{problem.reason} ({problem.fate})", title="Broken run record", severity="warning", timeout=10)
        notice = self.query_one("#problems", Static)
        notice.update(Text("\n".join(f"skipped {p.path.name}: {p.reason}" for p in problems), style="yellow"))
        notice.display = bool(problems)
        ids = {run.run_id for run in self.runs}
        self.marked = [run_id for run_id in self.marked if run_id in ids]
        table = self.query_one("#runs", DataTable)
        with kept_place(table):  # back from a run's results, the cursor stays on that run
            table.clear()
            for run in self.runs:
                table.add_row(*self.cells(run), key=run.run_id)
        if not self.runs:
            notice.update(Text("No runs recorded yet.", style="dim"))
            notice.display = True

    def show_run(self, run: EstimateResult, top: str) -> None:
        """Update one run's row in place; a run not listed yet (its first batch) needs the whole list."""
        index = next((i for i, shown in enumerate(self.runs) if shown.run_id == run.run_id), None)
        if index is None:
            self.read_history()
            return
        self.runs[index], self.tops[run.run_id] = run, top
        table = self.query_one("#runs", DataTable)
        for (_, key), value in zip(COLUMNS, self.cells(run)):
            table.update_cell(run.run_id, key, value)

    def cells(self, run: EstimateResult) -> tuple[Text, ...]:
        request, status = run.request, shown_status(run)
        return (
            Text("✔" if run.run_id in self.marked else " ", style="bold green"),
            Text(run.run_id),
            Text(status, style=STATUS_STYLES.get(status, "")),
            Text(self.tops.get(run.run_id, "-"), style="dim"),
            Text(request.variant),
            Text(Path(request.dataset_dir).name),
            Text(batches_done(run), justify="right"),
        )

    def current(self) -> EstimateResult | None:
        table = self.query_one("#runs", DataTable)
        if not self.runs or not 0 <= table.cursor_row < len(self.runs):
            return None
        return self.runs[table.cursor_row]

    @on(DataTable.RowSelected, "#runs")
    def row_selected(self) -> None:
        self.action_open()

    def ranked(self, run: EstimateResult | None, purpose: str) -> bool:
        """Whether ``run`` exists and has a completed batch to ``purpose`` (else the user is told)."""
        if run is None:
            return False
        if not run.included_batches:
            self.notify(f"run {run.run_id} has no completed batch to {purpose}", severity="warning")
            return False
        return True

    def action_open(self) -> None:
        run = self.current()
        if self.ranked(run, "rank"):
            self.app.push_screen(ResultsScreen(run, self.app.score))

    def action_mark(self) -> None:
        run = self.current()
        if run is None:
            return
        if run.run_id in self.marked:
            self.marked.remove(run.run_id)
        else:
            self.marked = [*self.marked, run.run_id][-2:]
        table = self.query_one("#runs", DataTable)
        for row in self.runs:
            table.update_cell(row.run_id, "mark", Text("✔" if row.run_id in self.marked else " ", style="bold green"))

    def action_compare(self) -> None:
        if len(self.marked) != 2:
            self.notify("Mark two runs with space first", severity="warning")
            return
        first, second = (next(run for run in self.runs if run.run_id == run_id) for run_id in self.marked)
        if self.ranked(first, "compare") and self.ranked(second, "compare"):
            self.app.push_screen(CompareScreen(first, second, self.app.score))

    def action_compare_file(self) -> None:
        run = self.current()
        if self.ranked(run, "compare"):
            title = f"Compare {run.run_id} with a Side-Step or acetui export, or a fisher_map.json"
            self.app.push_screen(OpenRankingScreen(title), partial(self.compare_file, run))

    def compare_file(self, run: EstimateResult, imported: ImportedRanking | None) -> None:
        if imported is not None:
            self.app.push_screen(CompareScreen(run, imported, self.app.score))

    def action_resume(self) -> None:
        run = self.current()
        if run is not None:
            self.app.resume_run(run)
