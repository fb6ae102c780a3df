"""Horizontal bars at eighth-block resolution, for inline sensitivity bars and memory gauges."""

from __future__ import annotations

import math

from rich.text import Text

from acetui.units import block_bar


def bar(fraction: float, width: int, style: str = "") -> Text:
    """``fraction`` of ``width`` cells filled; ``N/A`` when the fraction is unknown."""
    if not math.isfinite(fraction):
        return Text("N/A".ljust(width), style="dim")
    return Text(block_bar(fraction, width), style=style)


def load_style(fraction: float) -> str:
    """Green when light, yellow when moderate, red above 80 % (nvitop's loading intensity)."""
    if not math.isfinite(fraction):
        return "dim"
    if fraction >= 0.8:
        return "red"
    return "yellow" if fraction >= 0.1 else "green"
