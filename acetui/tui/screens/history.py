"""Every recorded run: open its results, resume a partial one, mark two and compare them, or delete one; ``/``
filters the runs by any of their cells. A run of this app updates its row as it goes (the app routes its
record changes here)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from acetui.errors import AcetuiError
from acetui.estimate import EstimateResult
from acetui.estimate.imported import ImportedRanking
from acetui.history import HistoryProblem, RunSummary, delete_run, history_record, list_runs
from acetui.model.variants import variant_label
from acetui.tui.commands import PaletteCommand
from acetui.tui.screens.compare import CompareScreen
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.filtering import FilteringScreen
from acetui.tui.screens.following import RecordFollowingScreen, read_records
from acetui.tui.screens.open_ranking import OpenRankingScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.widgets.ranking_table import filter_regex, module_filter
from acetui.tui.widgets.table_place import kept_place
from acetui.tui.widgets.whole_columns import WholeColumnTable
from acetui.units import plural

STATUS_STYLES = {
    "complete": "green",
    "cancelled": "yellow",
    "interrupted": "yellow",
    "failed": "red",
    "running": "cyan",
    "resuming": "cyan",
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


class HistoryScreen(RecordFollowingScreen, FilteringScreen):
    CSS_PATH = "history.tcss"
    TITLE = "History"
    LIST = "#runs"
    BINDINGS = [
        # priority: the table's own (hidden) enter binding would otherwise keep "Open" out of the footer
        Binding("enter", "open", "Open", priority=True, tooltip="Open the run's results", id="open"),
        Binding("space", "mark", "Mark", tooltip="Mark up to two runs to compare", id="mark"),
        Binding("c", "compare", "Compare", tooltip="Compare the two marked runs", id="compare"),
        # off the footer, which has room for the filter then; f1 and the palette offer it
        Binding(
            "f",
            "compare_file",
            "Vs file",
            show=False,
            tooltip="Compare the run with a Side-Step or acetui export",
            id="compare-file",
        ),
        Binding("r", "resume", "Resume", tooltip="Continue a partial run", id="resume"),
        Binding("d", "delete", "Delete…", tooltip="Remove the run from the history for good (asks)", id="delete"),
        # off the footer (at 80 columns it hid "Back"): rows follow this app's runs; the palette offers it
        Binding("ctrl+l", "reload", "Reload", show=False, id="reload"),
        Binding(
            "slash",
            "filter",
            "Filter",
            key_display="/",
            tooltip="Show the runs whose cells match (substring or regex)",
            id="filter",
        ),  # fmt: skip
        Binding("escape", "clear_filter", "Clear", tooltip="Clear the filter: every run again", id="clear-filter"),
        Binding("escape", "back", "Back", id="back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunSummary] = []
        self.shown: list[RunSummary] = []  # the runs the filter lets through, as the table lists them
        self.marked: list[str] = []
        self.skipped = Text()  # the records the last reading could not list
        self.reading_all = False
        self.reader: Worker | None = None  # the latest reading of the whole history (a reload cancels the last)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="problems")
        yield Input(placeholder="filter: dataset, variant, status, top module or id (substring or regex)",
                    compact=True, id="filter")  # fmt: skip
        yield WholeColumnTable(cursor_type="row", zebra_stripes=True, fixed_columns=FIXED, id="runs")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        table.focus()  # the keys are the runs' (d, c, r), not the filter's until / is pressed

    def palette_commands(self) -> Iterator[PaletteCommand]:
        yield "compare with a file", "Compare the run with a Side-Step or acetui export (f)", self.action_compare_file
        yield (
            "view: reload the history",
            "Read every run record again, for runs of other processes (ctrl+l)",
            self.action_reload,
        )

    def on_screen_resume(self) -> None:  # also when first shown: records change while other screens run
        self.action_reload()

    def action_reload(self) -> None:
        self.changed.clear()
        self.reading_all = True
        self.show_notice()
        self.reader = self.read_history()

    @work(thread=True, exclusive=True, group="history", exit_on_error=False, description="reading run history")
    def read_history(self) -> tuple[list[RunSummary], list[HistoryProblem]]:
        """Off the UI thread: hundreds of records with 50 batches each take about a second to read and rank."""
        return list_runs()

    def follows(self, run_id: str) -> bool:
        """Every run: one not listed yet (its first batch) is added to the list."""
        return True

    def read(self, run_ids: list[str]) -> list[RunSummary]:
        """Summarised in the worker too: a long run's top module ranks every batch it has."""
        return [RunSummary.of(run) for run in read_records(run_ids)]

    def show_records(self, runs: list[RunSummary]) -> None:
        for run in runs:
            self.show_run(run)

    @on(Worker.StateChanged)
    def history_read(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.reader or not event.worker.is_finished:
            return
        self.reading_all = False
        self.show_notice()
        if event.state == WorkerState.SUCCESS:
            self.show_runs(*event.worker.result)
        elif event.state == WorkerState.ERROR:
            self.notify(f"cannot read the run history: {event.worker.error}", severity="error")

    def show_notice(self) -> None:
        """Above the table: that the history is being read while nothing is listed yet (hundreds of long runs
        take seconds), that it is empty, the records it could not list, and how many runs the filter shows."""
        if self.reading_all and not self.runs:
            text = Text("reading the run history ...", style="dim")
        else:
            text = self.skipped if self.runs or self.reading_all else Text("No runs recorded yet.", style="dim")
        pattern = self.query_one("#filter", Input).value
        if pattern and self.runs:
            count = f"{len(self.shown)} of {len(self.runs)} runs match"
            if filter_regex(pattern) is None:
                count += " (invalid regex, matching as text)"
            hidden = len(set(self.marked) - {run.run_id for run in self.shown})
            if hidden:
                count += f"; {plural(hidden, 'marked run')} hidden by the filter (c compares them)"
            text = Text.assemble(text, "\n" if text.plain else "", (count, "dim"))
        notice = self.query_one("#problems", Static)
        notice.update(text)
        notice.display = bool(text.plain)

    def show_runs(self, runs: list[RunSummary], problems: list[HistoryProblem]) -> None:
        for problem in problems:
            self.notify(f"{problem.reason} ({problem.fate})", title="Broken run record", severity="warning", timeout=10)
        self.skipped = Text("\n".join(f"skipped {p.path.name}: {p.reason}" for p in problems), style="yellow")
        self.runs = runs
        self.fill()

    def fill(self) -> None:
        """The table anew from ``runs`` through the filter, the cursor kept on its run (back from its results,
        or as a run is added)."""
        ids = {run.run_id for run in self.runs}
        self.marked = [run_id for run_id in self.marked if run_id in ids]
        matches = module_filter(self.query_one("#filter", Input).value)
        self.shown = [run for run in self.runs if matches(" ".join(cell.plain for cell in self.cells(run)[1:]))]
        table = self.query_one("#runs", DataTable)
        with kept_place(table):
            table.clear()
            for run in self.shown:
                table.add_row(*self.cells(run), key=run.run_id)
        self.show_notice()

    def show_run(self, run: RunSummary) -> None:
        """Update one run's row in place; a run not listed yet (its first batch) is added alone: reading the
        whole history again restarted at every save of a new run and took seconds with many long runs."""
        index = next((i for i, shown in enumerate(self.runs) if shown.run_id == run.run_id), None)
        if index is None:
            self.runs = sorted([*self.runs, run], key=RunSummary.age, reverse=True)
            self.fill()
            return
        self.runs[index] = run
        if self.query_one("#filter", Input).value:  # it may match now, or no longer ("running" once done)
            self.fill()
            return
        self.shown = [run if shown.run_id == run.run_id else shown for shown in self.shown]
        table = self.query_one("#runs", DataTable)
        for (_, key), value in zip(COLUMNS, self.cells(run)):
            table.update_cell(run.run_id, key, value)

    def cells(self, run: RunSummary) -> tuple[Text, ...]:
        return (
            Text("✔" if run.run_id in self.marked else " ", style="bold green"),
            Text(run.run_id),
            Text(run.status, style=STATUS_STYLES.get(run.status, "")),
            Text(run.top, style="dim"),
            Text(variant_label(run.request.variant)),
            Text(Path(run.request.dataset_dir).name),
            Text(run.batches, justify="right"),
        )

    def current(self) -> RunSummary | None:
        table = self.query_one("#runs", DataTable)
        if not self.shown or not 0 <= table.cursor_row < len(self.shown):
            return None
        return self.shown[table.cursor_row]

    @on(DataTable.RowSelected, "#runs")
    def row_selected(self) -> None:
        self.action_open()

    def whole(self, run: RunSummary | None, purpose: str | None = None) -> EstimateResult | None:
        """The run's record read again (the list holds summaries); None, the user told why, when it cannot be
        read or, with a ``purpose``, has no completed batch to ``purpose``."""
        if run is None:
            return None
        try:
            whole = run.load()
        except AcetuiError as error:
            self.notify(str(error), title="Cannot read the run", severity="error", markup=False)
            return None
        if purpose is not None and not whole.included_batches:
            self.notify(f"run {run.run_id} has no completed batch to {purpose}", severity="warning")
            return None
        return whole

    def action_open(self) -> None:
        run = self.whole(self.current(), "rank")
        if run is not None:
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
        for row in self.shown:
            table.update_cell(row.run_id, "mark", Text("✔" if row.run_id in self.marked else " ", style="bold green"))
        self.show_notice()  # how many marked runs the filter hides

    def action_compare(self) -> None:
        if len(self.marked) != 2:
            self.notify("Mark two runs with space first", severity="warning")
            return
        summaries = {run.run_id: run for run in self.runs}
        first, second = (self.whole(summaries[run_id], "compare") for run_id in self.marked)
        if first is not None and second is not None:
            self.app.push_screen(CompareScreen(first, second, self.app.score))

    def action_compare_file(self) -> None:
        run = self.whole(self.current(), "compare")
        if run is not None:
            title = f"Compare {run.run_id} with a Side-Step or acetui export, or a fisher_map.json"
            self.app.push_screen(OpenRankingScreen(title), partial(self.compare_file, run))

    def compare_file(self, run: EstimateResult, imported: ImportedRanking | None) -> None:
        if imported is not None:
            self.app.push_screen(CompareScreen(run, imported, self.app.score))

    def action_resume(self) -> None:
        run = self.whole(self.current())
        if run is not None:
            self.app.resume_run(run)

    def action_delete(self) -> None:
        run = self.current()
        if run is None:
            return
        dataset = Path(run.request.dataset_dir).name
        question = (
            f"Delete run {run.run_id} ({run.status}, {run.batches} batches, {dataset})? Its record is gone for good."
        )
        self.app.push_screen(ConfirmScreen(question), partial(self.confirm_delete, run))

    def confirm_delete(self, run: RunSummary, delete: bool | None) -> None:
        if not delete:
            return
        try:
            delete_run(history_record(run.run_id))
        except AcetuiError as error:
            self.notify(str(error), title="Not deleted", severity="error", markup=False)
            return
        self.runs = [shown for shown in self.runs if shown.run_id != run.run_id]
        self.fill()
        self.notify(f"deleted run {run.run_id}")

    @on(Input.Changed, "#filter")
    def filter_changed(self) -> None:
        self.fill()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open":  # enter in the filter keeps it and goes to the runs, as the results' filter does
            return not self.query_one("#filter", Input).has_focus
        return super().check_action(action, parameters)
