"""A layer x projection heat map of one ranking: each cell is the unit's share in %, shaded from cold (0 %) to
hot (the largest share), under a one-line legend of that scale. Under a filter only the matching units are
shaded (the others show a dim dot) and a second legend line says how many match: the map shows what the
table shows."""

from __future__ import annotations

import math
from collections.abc import Collection

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.color import Color
from textual.widgets import Static

from acetui.estimate import RankedModule
from acetui.model.decoder import ATTENTION_PROJECTIONS, MLP_PROJECTIONS

KINDS = ("self_attn", "cross_attn", "mlp")

COLD = Color.parse("#1b2a4a")
HOT = Color.parse("#ff5f1f")
LEGEND_STEPS = 12
NO_SCORE = "-"
FILTERED_OUT = "·"


def column_name(kind: str, projection: str) -> str:
    """``self_attn``/``q_proj`` -> ``self.q``; a layer-granularity group is just ``self``."""
    head = kind.removesuffix("_attn")
    return f"{head}.{projection.removesuffix('_proj')}" if projection else head


def column_order(column: tuple[str, str]) -> tuple[int, int]:
    """self, cross, then mlp; projections in the decoder's order (q, k, v, o / gate, up, down)."""
    kind, projection = column
    projections = ("", *ATTENTION_PROJECTIONS, *MLP_PROJECTIONS)
    return (
        KINDS.index(kind) if kind in KINDS else len(KINDS),
        projections.index(projection) if projection in projections else len(projections),
    )


class HeatMap(Static):
    """Rows are layers, columns the (attention type, projection) pairs present in the ranking."""

    DEFAULT_CSS = """
    HeatMap { width: auto; height: auto; }
    """

    def show(self, ranking: list[RankedModule], shown: Collection[str] | None = None) -> None:
        """``shown``: the module names the filter matches (None: no filter, every unit is shaded)."""
        columns = sorted({(m.kind, m.projection) for m in ranking}, key=column_order)
        layers = sorted({m.layer for m in ranking})
        units = {(m.layer, m.kind, m.projection): m for m in ranking}
        hottest = max((m.share for m in ranking if math.isfinite(m.share)), default=0.0)
        table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
        table.add_column("layer", justify="right", style="bold")
        for kind, projection in columns:
            table.add_column(column_name(kind, projection), justify="right", min_width=5)
        blanks = False
        for layer in layers:
            row = [units.get((layer, kind, projection)) for kind, projection in columns]
            blanks = blanks or not all(unit is not None and math.isfinite(unit.share) for unit in row)
            table.add_row(Text(str(layer)), *(cell(unit, hottest, shown) for unit in row))
        lines = [legend(hottest, blanks)]
        if shown is not None:
            lines.append(filter_legend(len(shown), len(ranking)))
        self.update(Group(*lines, table))


def cell(unit: RankedModule | None, hottest: float, shown: Collection[str] | None) -> Text:
    if unit is None or not math.isfinite(unit.share):
        return Text(NO_SCORE, style="dim")
    if shown is not None and unit.module not in shown:
        return Text(FILTERED_OUT, style="dim")
    share = unit.share
    background = COLD.blend(HOT, share / hottest if hottest > 0 else 0.0)
    ink = "black" if background.brightness > 0.5 else "white"
    return Text(f"{share * 100:4.1f}", style=f"{ink} on {background.hex}")


def legend(hottest: float, blanks: bool) -> Text:
    """E.g. ``share of the total in %: 0.0 ░░░ 9.7  - no score``: the colour scale and the values at its
    ends; the ``-`` entry only when the map has such a cell (a unit missing from the ranking, or no total)."""
    text = Text("share of the total in %: 0.0 ", style="dim")
    for step in range(LEGEND_STEPS):
        text.append(" ", style=f"on {COLD.blend(HOT, step / (LEGEND_STEPS - 1)).hex}")
    text.append(f" {hottest * 100:.1f}", style="dim")
    if blanks:
        text.append(f"   {NO_SCORE} no score", style="dim")
    return text


def filter_legend(shown: int, total: int) -> Text:
    """E.g. ``filtered: 8 of 64 modules   · filtered out``."""
    return Text(f"filtered: {shown} of {total} modules   {FILTERED_OUT} filtered out", style="dim")
