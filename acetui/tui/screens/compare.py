"""Two runs, or a run and an imported Side-Step file, side by side (``acetui.estimate.compare``): each
module's rank in both, the rank change, the sensitivity difference and ratio, the Spearman rank correlation
and the top-k overlap. ``o`` sorts by rank A, by rank change or by ratio, so the modules that differ most can
come first (as ``o`` cycles the columns of the results table); ``g`` ranks the runs by layer or by module,
which lines up a layer ranking with a module one."""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from acetui.estimate import SCORES
from acetui.estimate.compare import (
    Comparison,
    ModuleChange,
    compare_sensitivities,
    difference,
    log_distance,
    no_shared_modules,
)
from acetui.tui.commands import PaletteCommand
from acetui.tui.ranking_source import RankingSource, RunRanking, Shown, ranking_source
from acetui.tui.widgets.ranking_table import short_module
from acetui.tui.widgets.sorting import SortColumn, SortOrder
from acetui.tui.widgets.whole_columns import WholeColumnTable


def ratio_distance(change: ModuleChange) -> float:
    return log_distance(change.ratio)


SORTS: tuple[SortColumn[ModuleChange], ...] = (
    SortColumn("rank A", "rank A", "rank A", lambda change: change.rank_a),
    # as ``Comparison.most_different``: ties go to the larger change of share
    SortColumn("change", "change", "rank change", difference, True, ("largest move first", "smallest move first")),
    SortColumn("B / A", "B / A", "ratio", ratio_distance, True, ("most different first", "least different first")),
)
GRANULARITIES = (None, "layer", "module")  # None: each run by its own
# What tells the runs apart comes first, so that it shows at 80 columns; the sensitivities scroll in after it.
LABELS = ("module", "rank A", "rank B", "change", "B / A", "sens. A", "sens. B", "B - A")


def change_text(change: int) -> Text:
    if change > 0:
        return Text(f"▲{change}", style="green", justify="right")
    if change < 0:
        return Text(f"▼{-change}", style="red", justify="right")
    return Text("=", style="dim", justify="right")


class CompareScreen(Screen):
    CSS_PATH = "compare.tcss"
    TITLE = "Compare runs"
    BINDINGS = [
        Binding("s", "next_score", "Score", tooltip="Switch between grad-norm, fisher and relative", id="score"),
        Binding(
            "o", "sort_next", "Sort", tooltip="Sort by rank A, rank change (largest first) or ratio", id="sort-next"
        ),
        Binding(
            "O", "sort_reverse", "Reverse", key_display="O", show=False, tooltip="Reverse the sort", id="sort-reverse"
        ),
        Binding(
            "g",
            "next_granularity",
            "Units",
            tooltip="Rank the runs by their own units, by layer or by module",
            id="granularity",
        ),  # fmt: skip
        Binding("escape", "app.pop_screen", "Back", id="back"),
    ]

    score = reactive("grad-norm", init=False)
    granularity: reactive[str | None] = reactive(None, init=False)
    order: reactive[SortOrder[ModuleChange]] = reactive(SortOrder(SORTS), init=False)

    def __init__(self, first: Shown, second: Shown, score: str = "grad-norm") -> None:
        """A run's side follows the score switch; an imported file has its one fixed score, which the
        comparison starts at when the file names one of ours (an acetui export says which it is)."""
        super().__init__()
        self.first, self.second = ranking_source(first), ranking_source(second)
        self.scores = max(self.first.scores, self.second.scores, key=len)
        named = [fixed for fixed in (self.fixed_score(self.first), self.fixed_score(self.second)) if fixed]
        score = named[0] if named else score
        self.set_reactive(CompareScreen.score, score if score in self.scores else self.scores[0])
        self.comparison: Comparison | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="heading")
        yield WholeColumnTable(cursor_type="row", zebra_stripes=True, fixed_columns=1, id="pairs")  # module in view
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#pairs", DataTable)
        for label in LABELS:
            table.add_column(label, key=label)
        self.show()
        table.focus()

    def watch_score(self) -> None:
        self.show()

    def watch_order(self) -> None:
        self.show()

    def watch_granularity(self) -> None:
        self.show()

    @property
    def runs(self) -> bool:
        """Whether a side is a run, which ranks by layer or by module as asked."""
        return any(isinstance(side, RunRanking) for side in (self.first, self.second))

    @staticmethod
    def fixed_score(side: RankingSource) -> str | None:
        """The one score of an imported file's values, when it is one a run can be ranked by."""
        return side.scores[0] if len(side.scores) == 1 and side.scores[0] in SCORES else None

    def mixed_scores(self) -> str:
        """A warning when a side's values are another score than the one the comparison shows."""
        for letter, side in (("A", self.first), ("B", self.second)):
            fixed = self.fixed_score(side)
            if fixed is not None and fixed != self.score:
                return f"\n{letter} is ranked by {fixed}, not {self.score}: the ratios mix two scores"
        return ""

    def show(self) -> None:
        self.comparison = comparison = compare_sensitivities(
            self.first.sensitivities(self.score, self.granularity),
            self.second.sensitivities(self.score, self.granularity),
            top_k=self.first.top_k, label_a=self.first.label, label_b=self.second.label,
        )  # fmt: skip
        rho = f"{comparison.spearman:+.3f}" if math.isfinite(comparison.spearman) else "n/a"
        heading = Text()
        heading.append("A ", style="bold")
        heading.append(self.first.label + "\n")
        heading.append("B ", style="bold")
        heading.append(self.second.label + "\n")
        if comparison.modules:
            overlap = f"Spearman {rho}  top-{comparison.top_k} overlap {comparison.top_k_overlap:.0%}"
            heading.append(overlap, style="bold")
            units = f", runs by {self.granularity}" if self.granularity else ""
            heading.append(f"  {len(comparison.modules)} shared modules, {self.score}{units}", style="dim")
        else:
            regrouping = "g ranks the runs by layer or by module" if self.runs else None
            heading.append(no_shared_modules(comparison, regrouping), style="bold red")
        heading.append(self.mixed_scores(), style="yellow")
        heading.append(f"\nsorted by {self.order.describe()}", style="dim")
        self.query_one("#heading", Static).update(heading)
        table = self.query_one("#pairs", DataTable)
        table.clear()
        self.order.label(table, ((column.key, column.label) for column in SORTS))
        for change in self.order.sorted(comparison.modules):
            table.add_row(
                short_module(change.module),
                Text(str(change.rank_a), justify="right"),
                Text(str(change.rank_b), justify="right"),
                change_text(change.rank_change),
                Text(f"{change.ratio:.2f}×" if math.isfinite(change.ratio) else "n/a", justify="right"),
                Text(f"{change.sensitivity_a:#.4g}", justify="right"),
                Text(f"{change.sensitivity_b:#.4g}", justify="right"),
                Text(f"{change.sensitivity_b - change.sensitivity_a:+#.3g}", justify="right"),
                key=change.module,
            )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_score":
            return len(self.scores) > 1 or None
        if action == "next_granularity":
            return self.runs or None
        return True

    def action_next_score(self) -> None:
        self.score = self.scores[(self.scores.index(self.score) + 1) % len(self.scores)]

    def action_next_granularity(self) -> None:
        self.granularity = GRANULARITIES[(GRANULARITIES.index(self.granularity) + 1) % len(GRANULARITIES)]

    def action_sort_next(self) -> None:
        self.sort_by(self.order.index + 1)

    def action_sort_reverse(self) -> None:
        self.order = self.order.reversed()

    def sort_by(self, index: int) -> None:
        """Sort by ``SORTS[index]``; the sorted one again reverses the order."""
        self.order = self.order.by(index)

    def palette_commands(self) -> Iterator[PaletteCommand]:
        for index, column in enumerate(SORTS):
            title = f"view: sort by {column.title}"
            yield title, "Sort the comparison (again to reverse)", partial(self.sort_by, index)
