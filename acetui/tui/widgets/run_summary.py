"""The shape of a ranking in a few lines: the run's warnings, self vs cross attention, dominant projections,
hottest layers."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from acetui.estimate import RankedModule
from acetui.estimate.exports import target_modules_string
from acetui.tui.widgets.bar import bar
from acetui.tui.widgets.heat_map import column_name

BAR_WIDTH = 24
SHOWN = 3


def shares_by(ranking: list[RankedModule], key) -> list[tuple[str, float]]:
    """Summed share per ``key(module)``, largest first."""
    totals: dict[str, float] = defaultdict(float)
    for module in ranking:
        if math.isfinite(module.share):
            totals[key(module)] += module.share
    return sorted(totals.items(), key=lambda item: -item[1])


class RunSummary(Static):
    def show(self, ranking: list[RankedModule], top_k: int, warnings: Sequence[str] = ()) -> None:
        """``warnings``: what the engine warned about while the run went (they qualify the ranking)."""
        text = Text()
        if warnings:
            text.append("Warnings\n", style="bold yellow")
            for warning in warnings:
                text.append(f"  {warning}\n", style="yellow")
        sections = (
            ("Attention type", shares_by(ranking, lambda m: m.kind), None),
            ("Dominant projections", shares_by(ranking, lambda m: column_name(m.kind, m.projection)), SHOWN + 1),
            ("Hottest layers", shares_by(ranking, lambda m: f"layer {m.layer}"), SHOWN),
        )
        for title, rows, limit in sections:
            text.append(f"{title}\n", style="bold")
            for name, share in rows[:limit]:
                text.append(f"  {name:<14}")
                text.append_text(bar(share, BAR_WIDTH, "green"))
                text.append(f" {share:6.1%}\n")
        text.append("Target modules (top-k) ", style="bold")
        text.append(target_modules_string(ranking, top_k) or "-", style="bold green")
        self.update(text)
