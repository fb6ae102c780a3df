"""Step 5: the ranking of one run (table, heat map, summary) with score switching, export and copy."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane, Tabs

from acetui.errors import AcetuiError
from acetui.estimate import SCORES, EstimateResult, RankedModule, rank_modules
from acetui.estimate.exports import EXPORT_FORMATS, export, target_modules_string
from acetui.tui.commands import PaletteCommand
from acetui.tui.screens.export import ExportScreen
from acetui.tui.widgets.heat_map import HeatMap
from acetui.tui.widgets.ranking_table import COLUMNS, RankingTable
from acetui.tui.widgets.run_summary import RunSummary

VIEWS = ("ranking", "heat-map", "summary")


def result_heading(result: EstimateResult, score: str) -> Text:
    request = result.request
    text = Text()
    text.append(f"{result.run_id} ", style="bold")
    text.append(f"{request.variant} on {Path(request.dataset_dir).name}  ")
    done = len(result.included_batches)
    text.append(f"{done} batches", style="yellow" if result.partial else "")
    if result.partial:
        text.append(f" ({result.status})", style="yellow")
    text.append(f"  score {score}  {request.granularity}s  top-{request.top_k}", style="dim")
    return text


class ResultsScreen(Screen):
    CSS_PATH = "results.tcss"
    TITLE = "5 · Results"
    BINDINGS = [
        Binding("s", "next_score", "Score", tooltip="Switch between grad-norm, fisher and relative", id="score"),
        Binding("v", "next_view", "View", tooltip="Ranking, heat map or summary", id="view"),
        Binding(
            "slash", "filter", "Filter", key_display="/", tooltip="Filter modules by substring or regex", id="filter"
        ),
        Binding("e", "export", "Export", tooltip="Write JSON, CSV, targets or PEFT to a file", id="export"),
        Binding("y", "copy_targets", "Copy", tooltip="Copy the --target-modules string (OSC 52)", id="copy"),
        Binding("escape", "back", "Back", id="back"),
    ]

    score = reactive("grad-norm", init=False)

    def __init__(self, result: EstimateResult, score: str = "grad-norm") -> None:
        super().__init__()
        self.result = result
        self.set_reactive(ResultsScreen.score, score)
        self.ranking: list[RankedModule] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="heading")
        with TabbedContent(id="views"):
            with TabPane("Ranking", id="ranking"):
                yield Input(
                    placeholder=r"filter: substring or regex, e.g. cross_attn or layers\.(1[89]|2\d)",
                    compact=True,
                    id="filter",
                )
                yield RankingTable(id="table")
            with TabPane("Heat map", id="heat-map"):
                with VerticalScroll():
                    yield HeatMap()
            with TabPane("Summary", id="summary"):
                with VerticalScroll():
                    yield RunSummary()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show()
        self.query_one(RankingTable).focus()

    def show(self) -> None:
        top_k = self.result.request.top_k
        self.ranking = rank_modules(self.result, self.score, self.result.request.granularity)
        self.query_one("#heading", Static).update(result_heading(self.result, self.score))
        self.query_one(RankingTable).show(self.ranking, top_k)
        self.query_one(HeatMap).show(self.ranking)
        self.query_one(RunSummary).show(self.ranking, top_k)

    def watch_score(self) -> None:
        self.show()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.query_one(RankingTable).pattern = event.value

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.query_one(RankingTable).focus()

    def action_next_score(self) -> None:
        self.score = SCORES[(SCORES.index(self.score) + 1) % len(SCORES)]
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
        for fmt, (title, _) in EXPORT_FORMATS.items():
            yield f"export: {fmt}", f"Write the ranking as {title}", partial(self.action_export, fmt)
        yield "export: copy target modules", "Copy the --target-modules string (OSC 52)", self.action_copy_targets
        for score in SCORES:
            yield f"view: score {score}", "Rank by this score", partial(setattr, self, "score", score)
        for view in VIEWS:
            yield f"view: {view}", "Show this view of the ranking", partial(self.show_view, view)
        table = self.query_one(RankingTable)
        for index, column in enumerate(COLUMNS):
            yield f"view: sort by {column.key}", "Sort the ranking (again to reverse)", partial(table.sort_by, index)

    def action_filter(self) -> None:
        self.query_one(TabbedContent).active = "ranking"
        self.query_one("#filter", Input).focus()

    def action_back(self) -> None:
        if self.query_one("#filter", Input).has_focus:
            self.query_one(RankingTable).focus()
        else:
            self.app.pop_screen()

    def action_export(self, fmt: str = "json") -> None:
        self.app.push_screen(ExportScreen(f"acetui-{self.result.run_id}", fmt), self.write_export)

    def write_export(self, choice: tuple[str, Path] | None) -> None:
        if choice is None:
            return
        fmt, path = choice
        try:
            written = export(path, fmt, self.ranking, self.result.request.top_k)
        except AcetuiError as error:
            self.notify(str(error), title="Export failed", severity="error", timeout=10)
            return
        self.notify(f"{fmt} written to {written}", title="Exported")

    @property
    def targets(self) -> str:
        return target_modules_string(self.ranking, self.result.request.top_k)

    def action_copy_targets(self) -> None:
        self.app.copy_to_clipboard(self.targets)
        self.notify(f"copied: {self.targets}", title="Target modules")
