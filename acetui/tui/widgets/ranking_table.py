"""The ranking as a DataTable: filtered by substring or regex, sorted by any column, top-k marked."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable

from acetui.estimate import RankedModule
from acetui.tui.widgets.bar import bar

BAR_WIDTH = 10


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    sort_key: Callable[[RankedModule], Any]
    descending: bool = False


def _share(module: RankedModule) -> float:
    return module.share if math.isfinite(module.share) else -1.0


# The columns that matter most come first so they fit in 80 columns; the rest scroll horizontally.
COLUMNS = (
    Column("rank", "rank", lambda m: m.rank),
    Column("module", "module", lambda m: m.module),
    Column("sensitivity", "sensitivity", lambda m: m.sensitivity, descending=True),
    Column("share", "share", _share, descending=True),
    Column("bar", "", _share, descending=True),
    Column("layer", "layer", lambda m: (m.layer, m.kind, m.projection)),
    Column("attention", "attention", lambda m: (m.kind, m.layer, m.projection)),
    Column("projection", "proj", lambda m: (m.projection, m.layer, m.kind)),
)


def module_filter(pattern: str) -> Callable[[str], bool]:
    """A case-insensitive regex search; a pattern that is not a valid regex matches as plain text."""
    if not pattern:
        return lambda name: True
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error:
        lowered = pattern.lower()
        return lambda name: lowered in name.lower()
    return lambda name: compiled.search(name) is not None


def short_module(name: str) -> str:
    return name.removeprefix("decoder.")


class RankingTable(DataTable):
    """Call ``show`` with a ranking; ``pattern``, ``sort_column`` and ``reverse`` re-render the rows."""

    BINDINGS = [
        Binding("o", "sort_next", "Sort", tooltip="Sort by the next column", id="sort-next"),
        Binding(
            "O",
            "sort_reverse",
            "Reverse",
            key_display="O",
            show=False,
            tooltip="Reverse the sort order",
            id="sort-reverse",
        ),
        *(
            Binding(str(number), f"sort_by({number - 1})", f"Sort by {column.key}", show=False, id=f"sort-{column.key}")
            for number, column in enumerate(COLUMNS, start=1)
        ),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    pattern = reactive("", init=False)
    sort_column = reactive(0, init=False)
    reverse = reactive(False, init=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self.ranking: list[RankedModule] = []
        self.top_k = 0
        for column in COLUMNS:
            self.add_column(column.label, key=column.key)

    def show(self, ranking: list[RankedModule], top_k: int) -> None:
        self.ranking, self.top_k = ranking, top_k
        self.render_rows()

    @property
    def visible(self) -> list[RankedModule]:
        """The rows shown, in the order shown."""
        matches = module_filter(self.pattern)
        column = COLUMNS[self.sort_column]
        rows = [module for module in self.ranking if matches(module.module)]
        return sorted(rows, key=column.sort_key, reverse=column.descending != self.reverse)

    def render_rows(self) -> None:
        self.clear()
        self.label_sorted_column()
        top_share = max((m.share for m in self.ranking if math.isfinite(m.share)), default=0.0)
        for module in self.visible:
            top = module.rank <= self.top_k
            style = "bold" if top else ""
            self.add_row(
                Text(f"{'●' if top else ' '}{module.rank:>3}", style="bold green" if top else "dim"),
                Text(short_module(module.module), style=style),
                Text(f"{module.sensitivity:#.4g}", justify="right", style=style),
                Text(f"{module.share:.1%}" if math.isfinite(module.share) else "N/A", justify="right"),
                bar(module.share / top_share if top_share else math.nan, BAR_WIDTH, "green" if top else "blue"),
                Text(str(module.layer), justify="right"),
                Text(module.kind),
                Text(module.projection or "-"),
                key=module.module,
            )

    def label_sorted_column(self) -> None:
        for index, column in enumerate(COLUMNS):
            arrow = ""
            if index == self.sort_column:
                arrow = " ▼" if column.descending != self.reverse else " ▲"
            shown = self.columns[column.key]
            shown.label = Text(column.label + arrow)
            shown.content_width = max(shown.content_width, len(column.label) + 2)

    def watch_pattern(self) -> None:
        self.render_rows()

    def watch_sort_column(self) -> None:
        self.render_rows()

    def watch_reverse(self) -> None:
        self.render_rows()

    def action_sort_next(self) -> None:
        self.sort_by(self.sort_column + 1)

    def action_sort_reverse(self) -> None:
        self.reverse = not self.reverse

    def action_sort_by(self, index: int) -> None:
        self.sort_by(index)

    def sort_by(self, index: int) -> None:
        index %= len(COLUMNS)
        if index == self.sort_column:
            self.reverse = not self.reverse
        else:
            self.reverse = False
            self.sort_column = index
