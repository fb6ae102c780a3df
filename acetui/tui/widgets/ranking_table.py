"""The ranking as a DataTable: filtered by substring or regex, sorted by any column, top-k marked. After each
render it posts ``RankingTable.Rendered`` with a one-line status (matches, sort) for its screen to show: the
sorted column may be scrolled off to the right."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive

from acetui.estimate import RankedModule
from acetui.estimate.stats import RankingStats, UnitStats
from acetui.tui.widgets.bar import bar
from acetui.tui.widgets.sorting import SortColumn, SortOrder
from acetui.tui.widgets.whole_columns import WholeColumnTable

BAR_WIDTH = 8
UNKNOWN = "–"


@dataclass(frozen=True)
class Row:
    """One ranked unit with what is known about it: statistics (None for imported rankings) and its
    effective rank (None while it is being computed, -1 when there is none)."""

    item: RankedModule
    stats: UnitStats | None
    effective_rank: int | None


def known(value: float | None) -> float:
    """Sort key: unknown figures (None, NaN, -1 ranks) after every known one in descending order."""
    return value if value is not None and math.isfinite(value) and value >= 0 else -math.inf


def _stat(name: str) -> Callable[[Row], float]:
    return lambda row: known(getattr(row.stats, name) if row.stats is not None else None)


# The columns that matter most come first so they fit in 80 columns; the rest scroll horizontally under the
# first FIXED, which name the row and stay in view.
Column = SortColumn[Row]
COLUMNS: tuple[Column, ...] = (
    Column("rank", "rank", "rank", lambda r: r.item.rank),
    Column("module", "module", "module name", lambda r: r.item.module),
    Column("sensitivity", "score", "score", lambda r: r.item.sensitivity, descending=True),
    Column("p_top_k", "P(top-k)", "P(top-k)", _stat("p_top_k"), descending=True),
    Column("share", "share", "share", lambda r: known(r.item.share), descending=True),
    Column("bar", "", "score bar", lambda r: r.item.sensitivity, descending=True),
    Column("stderr", "std err", "std err", _stat("stderr"), descending=True),
    Column("ci", "95% CI", "95 % CI (low end)", _stat("ci_low"), descending=True),
    Column("effective_rank", "eff. rank", "effective rank", lambda r: known(r.effective_rank), descending=True),
    Column("layer", "layer", "layer", lambda r: (r.item.layer, r.item.kind, r.item.projection)),
    Column("attention", "attention", "attention type", lambda r: (r.item.kind, r.item.layer, r.item.projection)),
    Column("projection", "proj", "projection", lambda r: (r.item.projection, r.item.layer, r.item.kind)),
)
FIXED = 2
SORT_KEYS = 9  # number keys 1-9 sort by the first nine columns; the palette offers them all


def filter_regex(pattern: str) -> re.Pattern[str] | None:
    """``pattern`` as a case-insensitive regex, or None when it is not one (it then matches as plain text)."""
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error:
        return None


def module_filter(pattern: str) -> Callable[[str], bool]:
    """A case-insensitive regex search; a pattern that is not a valid regex matches as plain text."""
    if not pattern:
        return lambda name: True
    compiled = filter_regex(pattern)
    if compiled is None:
        lowered = pattern.lower()
        return lambda name: lowered in name.lower()
    return lambda name: compiled.search(name) is not None


def short_module(name: str) -> str:
    return name.removeprefix("decoder.")


def significant(value: float, spec: str) -> str:
    """``format`` with ``#`` specs (trailing zeros kept for alignment) but no bare trailing point: 119, not 119."""
    return format(value, spec).rstrip(".")


def figure(value: float, spec: str, style: str = "") -> Text:
    return Text(significant(value, spec) if math.isfinite(value) else UNKNOWN, justify="right", style=style)


def probability_style(p: float) -> str:
    """Green when the unit is (almost) surely in the top-k, yellow when uncertain either way."""
    if not math.isfinite(p):
        return "dim"
    return "green" if p >= 0.9 else "yellow" if p >= 0.1 else "dim"


def effective_rank_text(rank: int | None) -> Text:
    if rank is None:
        return Text("…", justify="right", style="dim")
    return Text(str(rank) if rank >= 0 else UNKNOWN, justify="right")


def row_cells(row: Row, top_k: int, top_sensitivity: float) -> tuple[Text, ...]:
    """``top_sensitivity`` scales the bar: the most sensitive unit fills it."""
    item, stats = row.item, row.stats
    top = item.rank <= top_k
    style = "bold" if top else ""
    nan = math.nan
    p_top_k, stderr = (stats.p_top_k, stats.stderr) if stats is not None else (nan, nan)
    interval = UNKNOWN
    if stats is not None and math.isfinite(stats.ci_low):
        interval = f"[{significant(stats.ci_low, '#.3g')}, {significant(stats.ci_high, '#.3g')}]"
    fraction = item.sensitivity / top_sensitivity if top_sensitivity > 0 else nan
    return (
        Text(f"{'●' if top else ' '}{item.rank:>3}", style="bold green" if top else "dim"),
        Text(short_module(item.module), style=style),
        figure(item.sensitivity, "#.4g", style),
        figure(p_top_k, ".2f", probability_style(p_top_k)),
        figure(item.share, ".1%"),
        bar(fraction, BAR_WIDTH, "green" if top else "blue"),
        figure(stderr, "#.2g"),
        Text(interval, justify="right"),
        effective_rank_text(row.effective_rank),
        Text(str(item.layer), justify="right"),
        Text(item.kind),
        Text(item.projection or "-"),
    )


class RankingTable(WholeColumnTable):
    """Call ``show`` with a ranking; ``pattern`` and ``order`` re-render the rows."""

    class Rendered(Message):
        """The rows shown changed; ``status`` says how many match the filter and how they are sorted."""

        def __init__(self, status: Text) -> None:
            super().__init__()
            self.status = status

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
            Binding(
                str(number), f"sort_by({number - 1})", f"Sort by {column.title}", show=False, id=f"sort-{column.key}"
            )
            for number, column in enumerate(COLUMNS[:SORT_KEYS], start=1)
        ),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    pattern = reactive("", init=False)
    order: reactive[SortOrder[Row]] = reactive(SortOrder(COLUMNS), init=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, fixed_columns=FIXED, id=id)
        self.ranking: list[RankedModule] = []
        self.top_k = 0
        self.stats: dict[str, UnitStats] | None = None
        self.effective: dict[str, int] | None = None
        for column in COLUMNS:
            self.add_column(column.label, key=column.key)

    def show(self, ranking: list[RankedModule], top_k: int, stats: RankingStats | None) -> None:
        """``stats`` None: no per-batch data (an imported ranking), shown as "–"."""
        self.ranking, self.top_k = ranking, top_k
        self.stats = stats.by_name() if stats is not None else None
        for column in self.columns.values():  # DataTable only ever widens a column: fit this ranking's figures
            column.content_width = column.label.cell_len
        self.render_rows()

    def set_effective(self, effective: dict[str, int]) -> None:
        """Effective ranks by module name, once computed (units not in it show "–")."""
        self.effective = effective
        if self.order.column.key == "effective_rank":
            self.render_rows()
            return
        for row in self.rows_shown():
            self.update_cell(row.item.module, "effective_rank", effective_rank_text(row.effective_rank))

    def row(self, item: RankedModule) -> Row:
        stats = self.stats.get(item.module) if self.stats is not None else None
        effective = self.effective.get(item.module, -1) if self.effective is not None else None
        return Row(item, stats, effective)

    def rows_shown(self) -> list[Row]:
        """The rows shown, in the order shown."""
        matches = module_filter(self.pattern)
        return self.order.sorted(self.row(item) for item in self.ranking if matches(item.module))

    def render_rows(self) -> None:
        self.clear()
        self.order.label(self, ((column.key, column.label) for column in COLUMNS))
        top = max((item.sensitivity for item in self.ranking), default=0.0)
        for row in self.rows_shown():
            self.add_row(*row_cells(row, self.top_k, top), key=row.item.module)
        self.post_message(self.Rendered(self.status()))

    def status(self) -> Text:
        """E.g. ``12 of 32 modules · sorted by P(top-k) ▼``, led by a notice when the filter is no regex."""
        text = Text()
        if self.pattern and filter_regex(self.pattern) is None:
            text.append("invalid regex, matching as text · ", style="yellow")
        text.append(f"{self.row_count} of {len(self.ranking)} modules" if self.pattern else f"{self.row_count} modules")
        text.append(f" · sorted by {self.order.describe()}", style="dim")
        return text

    def watch_pattern(self) -> None:
        self.render_rows()

    def watch_order(self) -> None:
        self.render_rows()

    def action_sort_next(self) -> None:
        self.sort_by(self.order.index + 1)

    def action_sort_reverse(self) -> None:
        self.order = self.order.reversed()

    def action_sort_by(self, index: int) -> None:
        self.sort_by(index)

    def sort_by(self, index: int) -> None:
        """Sort by ``COLUMNS[index]``; the sorted column again reverses the order."""
        self.order = self.order.by(index)
