"""Step 5: the ranking of one run or imported file (table, heat map, summary) with score switching,
statistics, effective ranks, export, copy, and opening a Side-Step or acetui export. The run's warnings
stay in view: a ranking from one sample must not look as sound as one from fifty. A run of this app is
shown as its record last saved (the app routes its record changes here), so a running or resumed run's
results, and their export, do not stay at an old batch count."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane, Tabs
from textual.worker import Worker, WorkerState

from acetui.errors import AcetuiError, OutputExistsError
from acetui.estimate import EstimateResult, RankedModule
from acetui.estimate.exports import target_modules_string
from acetui.estimate.imported import ImportedRanking
from acetui.estimate.sidestep import cached_effective_ranks
from acetui.history import shown_status
from acetui.tui.commands import PaletteCommand
from acetui.tui.ranking_source import Shown, ranking_source
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.export import ExportScreen
from acetui.tui.screens.filtering import FilteringScreen
from acetui.tui.screens.following import RecordFollowingScreen
from acetui.tui.screens.open_ranking import OpenRankingScreen
from acetui.tui.widgets.heat_map import HeatMap
from acetui.tui.widgets.phrases import Phrases
from acetui.tui.widgets.ranking_table import COLUMNS, RankingTable, module_filter
from acetui.tui.widgets.run_summary import RunSummary
from acetui.tui.widgets.table_place import kept_place

VIEWS = ("ranking", "heat-map", "summary")
IMPORT_TITLE = "Open a Side-Step or acetui JSON export, or a fisher_map.json"  # fits the 64-cell dialog


class ResultsScreen(RecordFollowingScreen, FilteringScreen):
    CSS_PATH = "results.tcss"
    TITLE = "5 · Results"
    LIST = "#table"
    BINDINGS = [
        Binding("s", "next_score", "Score", tooltip="Switch between grad-norm, fisher and relative", id="score"),
        Binding("v", "next_view", "View", tooltip="Ranking, heat map or summary", id="view"),
        Binding(
            "slash", "filter", "Filter", key_display="/", tooltip="Filter modules by substring or regex", id="filter"
        ),
        Binding("e", "export", "Export", tooltip="Write JSON, CSV, targets, PEFT or fisher_map.json", id="export"),
        Binding("r", "resume", "Resume", tooltip="Continue this stopped run from its last batch", id="resume"),
        # y and i are off the footer, so that it keeps ^g History at 80 columns (the palette and README name them)
        Binding(
            "y", "copy_targets", "Copy", show=False, tooltip="Copy the --target-modules string (OSC 52)", id="copy"
        ),
        Binding("i", "import_file", "Open file", show=False, tooltip=IMPORT_TITLE, id="import"),
        Binding("escape", "clear_filter", "Clear filter", tooltip="Show every module again", id="clear-filter"),
        Binding("escape", "back", "Back", id="back"),
    ]

    score = reactive("grad-norm", init=False)

    def __init__(self, shown: Shown, score: str = "grad-norm") -> None:
        super().__init__()
        self.source = ranking_source(shown)
        self.set_reactive(ResultsScreen.score, score if score in self.source.scores else self.source.scores[0])
        self.ranking: list[RankedModule] = []
        self.effective: dict[str, int] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Phrases(id="heading")
        yield Static(id="warnings")
        with TabbedContent(id="views"):
            with TabPane("Ranking", id="ranking"):
                yield Input(
                    placeholder=r"filter: substring or regex, e.g. cross_attn or layers\.(1[89]|2\d)",
                    compact=True,
                    id="filter",
                )
                yield Static(id="table-status")
                yield RankingTable(id="table")
            with TabPane("Heat map", id="heat-map"):
                with VerticalScroll():
                    yield HeatMap()
            with TabPane("Summary", id="summary"):
                with VerticalScroll():
                    yield RunSummary()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show_warnings()
        self.show()
        table = self.query_one(RankingTable)
        table.focus()
        if self.source.result is None:
            table.set_effective({})
        else:
            self.find_effective_ranks(self.source.result)

    def show(self) -> None:
        top_k = self.source.top_k
        self.ranking = self.source.ranking(self.score)
        stats = self.source.stats(self.score)
        self.query_one("#heading", Phrases).phrases = tuple(self.source.heading(self.score, stats))
        self.query_one(RankingTable).show(self.ranking, top_k, stats)
        self.show_heat_map()
        self.query_one(RunSummary).show(self.ranking, top_k, self.source.warnings)

    def show_heat_map(self) -> None:
        """The heat map shades what the filter matches, as the table lists it."""
        pattern = self.query_one("#filter", Input).value
        matches = module_filter(pattern)
        shown = {item.module for item in self.ranking if matches(item.module)} if pattern else None
        self.query_one(HeatMap).show(self.ranking, shown)

    def show_warnings(self) -> None:
        """The first warning under the heading, where it cannot be missed; every one in the summary view."""
        warnings = self.source.warnings
        banner = self.query_one("#warnings", Static)
        banner.display = bool(warnings)
        if warnings:
            more = f"  (+{len(warnings) - 1} more in the summary view)" if len(warnings) > 1 else ""
            banner.update(Text(f"⚠ {warnings[0]}{more}"))

    def watch_score(self) -> None:
        self.show()

    def follows(self, run_id: str) -> bool:
        return self.source.result is not None and self.source.result.run_id == run_id

    def show_records(self, runs: list[EstimateResult]) -> None:
        self.show_record(runs[-1])

    def show_record(self, result: EstimateResult) -> None:
        """The run as re-read, where the user was: score, view, filter and sort stay, and so do the table's
        highlighted module and scroll (the table's rows, shown anew, would put both back at the top)."""
        with kept_place(self.query_one(RankingTable)):
            self.source = ranking_source(result)
            self.show_warnings()
            self.show()
        self.refresh_bindings()

    @work(thread=True, exclusive=True, group="effective-rank", exit_on_error=False, description="effective ranks")
    def find_effective_ranks(self, result: EstimateResult) -> dict[str, int]:
        """Without them (checkpoint gone or unreadable) the column and a fisher map say -1: warn why."""
        return cached_effective_ranks(result, warn=self.warn_from_worker)

    def warn_from_worker(self, text: str) -> None:
        self.app.call_from_thread(self.notify, text, severity="warning", markup=False)

    @on(Worker.StateChanged)
    def effective_ranks_found(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "effective-rank":
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self.effective = event.worker.result if event.state == WorkerState.SUCCESS else {}
            self.query_one(RankingTable).set_effective(self.effective)

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.query_one(RankingTable).pattern = event.value
        self.show_heat_map()
        self.refresh_bindings()

    @on(RankingTable.Rendered)
    def table_rendered(self, event: RankingTable.Rendered) -> None:
        self.query_one("#table-status", Static).update(event.status)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_score":
            return len(self.source.scores) > 1 or None
        if action == "resume":  # only a stopped run's results offer it, not while this app is running it
            result = self.source.result
            return result is not None and result.partial and result.run_id not in self.app.running_runs()
        return super().check_action(action, parameters)

    def action_next_score(self) -> None:
        scores = self.source.scores
        self.score = scores[(scores.index(self.score) + 1) % len(scores)]
        self.notify(f"score: {self.score}", timeout=2)

    def action_next_view(self) -> None:
        views = self.query_one(TabbedContent)
        self.show_view(VIEWS[(VIEWS.index(views.active) + 1) % len(VIEWS)])

    def show_view(self, view: str) -> None:
        views = self.query_one(TabbedContent)
        views.active = view
        if view == "ranking":
            self.query_one(RankingTable).focus()
        else:
            views.query_one(Tabs).focus()

    def palette_commands(self) -> Iterator[PaletteCommand]:
        for fmt, (title, _) in self.source.export_formats().items():
            yield f"export: {fmt}", f"Write {title}", partial(self.action_export, fmt)
        yield "export: copy target modules", "Copy the --target-modules string (OSC 52)", self.action_copy_targets
        yield "view: open Side-Step or acetui export", IMPORT_TITLE, self.action_import_file
        if len(self.source.scores) > 1:
            for score in self.source.scores:
                yield f"view: score {score}", "Rank by this score", partial(setattr, self, "score", score)
        for view in VIEWS:
            yield f"view: {view}", "Show this view of the ranking", partial(self.show_view, view)
        table = self.query_one(RankingTable)
        for index, column in enumerate(COLUMNS):
            yield f"view: sort by {column.title}", "Sort the ranking (again to reverse)", partial(table.sort_by, index)

    def action_filter(self) -> None:
        self.query_one(TabbedContent).active = "ranking"
        super().action_filter()

    def action_resume(self) -> None:
        if self.source.result is not None:
            self.app.resume_run(self.source.result)

    def action_export(self, fmt: str = "json", path: Path | None = None) -> None:
        dialog = ExportScreen(self.source.export_formats(), fmt, path, self.export_scope())
        self.app.push_screen(dialog, self.write_export)

    def export_scope(self) -> str:
        """Exports always hold the whole ranking: a filtered file would keep ranks, shares and top-k flags of a
        ranking it no longer lists. Said in the dialog, so a filtered view is not mistaken for what is written."""
        table = self.query_one(RankingTable)
        total = len(self.ranking)
        scope = f"Writes the whole ranking, all {total} modules"
        scope += f", not only the {table.row_count} the filter shows." if table.pattern else "."
        result = self.source.result
        if result is not None and result.partial:  # an export JSON cannot say so itself: the dialog does
            done = result.completed_batches
            scope += f" The run is {shown_status(result)}: the ranking of its {done} batches so far."
        return scope

    def write_export(self, choice: tuple[str, Path] | None, force: bool = False) -> None:
        """Replace an existing file only once confirmed; after a failure the dialog reopens with the path."""
        if choice is None:
            return
        fmt, path = choice
        if fmt == "fisher-map" and self.effective is None:
            self.notify("Effective ranks are still being computed; try again in a moment", severity="warning")
            return
        try:
            written = self.source.write(fmt, path, self.score, self.effective, force=force)
        except OutputExistsError as error:
            question = f"{error.path} exists. Replace it?"
            self.app.push_screen(ConfirmScreen(question), partial(self.confirm_replace, choice))
            return
        except AcetuiError as error:
            self.notify(str(error), title="Export failed", severity="error", timeout=10)
            self.action_export(*choice)
            return
        self.notify(f"{fmt} written to {written}", title="Exported")

    def confirm_replace(self, choice: tuple[str, Path], replace: bool | None) -> None:
        """Yes writes; no goes back to the dialog to pick another name."""
        if replace:
            self.write_export(choice, force=True)
        else:
            self.action_export(*choice)

    @property
    def targets(self) -> str:
        return target_modules_string(self.ranking, self.source.top_k)

    def action_copy_targets(self) -> None:
        self.app.copy_to_clipboard(self.targets)
        self.notify(f"copied: {self.targets}", title="Target modules")

    def action_import_file(self) -> None:
        self.app.push_screen(OpenRankingScreen(IMPORT_TITLE), self.show_imported)

    def show_imported(self, imported: ImportedRanking | None) -> None:
        if imported is not None:
            self.app.push_screen(ResultsScreen(imported))
