"""A layer x projection heat map of one ranking: each cell is the unit's share, shaded by intensity."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text
from textual.color import Color
from textual.widgets import Static

from acetui.estimate import RankedModule
from acetui.model.decoder import ATTENTION_PROJECTIONS, MLP_PROJECTIONS

KINDS = ("self_attn", "cross_attn", "mlp")

COLD = Color.parse("#1b2a4a")
HOT = Color.parse("#ff5f1f")


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

    def show(self, ranking: list[RankedModule]) -> None:
        columns = sorted({(m.kind, m.projection) for m in ranking}, key=column_order)
        layers = sorted({m.layer for m in ranking})
        shares = {(m.layer, m.kind, m.projection): m.share for m in ranking}
        hottest = max((s for s in shares.values() if math.isfinite(s)), default=0.0)
        table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
        table.add_column("layer", justify="right", style="bold")
        for kind, projection in columns:
            table.add_column(column_name(kind, projection), justify="right", min_width=5)
        for layer in layers:
            cells = [Text(str(layer))]
            for kind, projection in columns:
                share = shares.get((layer, kind, projection), math.nan)
                cells.append(self.cell(share, hottest))
            table.add_row(*cells)
        self.update(table)

    @staticmethod
    def cell(share: float, hottest: float) -> Text:
        if not math.isfinite(share):
            return Text("-", style="dim")
        heat = share / hottest if hottest > 0 else 0.0
        background = COLD.blend(HOT, heat)
        ink = "black" if background.brightness > 0.5 else "white"
        return Text(f"{share * 100:4.1f}", style=f"{ink} on {background.hex}")
