"""Two runs side by side: each module's rank in both, the rank change, sensitivity difference and ratio,
and the Spearman rank correlation of the two rankings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from acetui.estimate import SCORES, EstimateResult, RankedModule, rank_modules
from acetui.tui.widgets.ranking_table import short_module


@dataclass(frozen=True)
class Pair:
    module: str
    first: RankedModule
    second: RankedModule

    @property
    def rank_change(self) -> int:
        """Positive when the module ranks higher (a smaller rank number) in the second run."""
        return self.first.rank - self.second.rank

    @property
    def difference(self) -> float:
        return self.second.sensitivity - self.first.sensitivity

    @property
    def ratio(self) -> float:
        return self.second.sensitivity / self.first.sensitivity if self.first.sensitivity else math.nan


def pair_rankings(first: list[RankedModule], second: list[RankedModule]) -> list[Pair]:
    """Modules ranked in both runs, in the first run's order."""
    others = {module.module: module for module in second}
    return [Pair(m.module, m, others[m.module]) for m in first if m.module in others]


def spearman(pairs: list[Pair]) -> float:
    """Rank correlation over the shared modules (re-ranked among themselves; rankings have no ties)."""
    n = len(pairs)
    if n < 2:
        return math.nan
    second_order = {p.module: rank for rank, p in enumerate(sorted(pairs, key=lambda p: p.second.rank))}
    squared = sum((rank - second_order[p.module]) ** 2 for rank, p in enumerate(pairs))
    return 1 - 6 * squared / (n * (n * n - 1))


def change_text(change: int) -> Text:
    if change > 0:
        return Text(f"▲{change}", style="green", justify="right")
    if change < 0:
        return Text(f"▼{-change}", style="red", justify="right")
    return Text("=", style="dim", justify="right")


def run_label(run: EstimateResult) -> str:
    return f"{run.run_id} ({run.request.variant}, {Path(run.request.dataset_dir).name})"


class CompareScreen(Screen):
    CSS_PATH = "compare.tcss"
    TITLE = "Compare runs"
    BINDINGS = [
        Binding("s", "next_score", "Score", tooltip="Switch between grad-norm, fisher and relative", id="score"),
        Binding("escape", "app.pop_screen", "Back", id="back"),
    ]

    score = reactive("grad-norm", init=False)

    def __init__(self, first: EstimateResult, second: EstimateResult, score: str = "grad-norm") -> None:
        super().__init__()
        self.first, self.second = first, second
        self.set_reactive(CompareScreen.score, score)
        self.pairs: list[Pair] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="heading")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="pairs")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#pairs", DataTable)
        for label in ("module", "rank A", "rank B", "change", "sens. A", "sens. B", "B - A", "B / A"):
            table.add_column(label, key=label)
        self.show()
        table.focus()

    def watch_score(self) -> None:
        self.show()

    def show(self) -> None:
        granularity = self.first.request.granularity
        self.pairs = pair_rankings(
            rank_modules(self.first, self.score, granularity), rank_modules(self.second, self.score, granularity)
        )
        rho = spearman(self.pairs)
        heading = Text()
        heading.append("A ", style="bold")
        heading.append(run_label(self.first) + "\n")
        heading.append("B ", style="bold")
        heading.append(run_label(self.second) + "\n")
        heading.append(f"Spearman rank correlation {rho:.3f}", style="bold")
        heading.append(f" over {len(self.pairs)} shared modules, score {self.score}", style="dim")
        self.query_one("#heading", Static).update(heading)
        table = self.query_one("#pairs", DataTable)
        table.clear()
        for pair in self.pairs:
            table.add_row(
                short_module(pair.module),
                Text(str(pair.first.rank), justify="right"),
                Text(str(pair.second.rank), justify="right"),
                change_text(pair.rank_change),
                Text(f"{pair.first.sensitivity:.4g}", justify="right"),
                Text(f"{pair.second.sensitivity:.4g}", justify="right"),
                Text(f"{pair.difference:+.3g}", justify="right"),
                Text(f"{pair.ratio:.2f}×", justify="right"),
                key=pair.module,
            )

    def action_next_score(self) -> None:
        self.score = SCORES[(SCORES.index(self.score) + 1) % len(SCORES)]
