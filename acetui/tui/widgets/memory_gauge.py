"""A live memory gauge: this process's CUDA allocator figures (or RSS on the CPU), sampled twice a second."""

from __future__ import annotations

import torch
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from acetui.estimate.memory import MemoryStats, memory_stats
from acetui.tui.widgets.bar import bar, load_style
from acetui.units import format_bytes

BAR_WIDTH = 20


class MemoryGauge(Widget):
    """Polls ``memory_stats`` without querying the driver, so it never competes with the worker for CUDA.

    On CUDA the total comes from the worker's own per-batch readings (``set_total``)."""

    DEFAULT_CSS = """
    MemoryGauge { height: 1; }
    """

    stats: reactive[MemoryStats | None] = reactive(None)
    total = reactive(0)

    def __init__(self, device: torch.device, *, interval: float = 0.5, id: str | None = None) -> None:
        super().__init__(id=id)
        self.device = device
        self.interval = interval

    def on_mount(self) -> None:
        self.sample()
        self.set_interval(self.interval, self.sample)

    def sample(self) -> None:
        self.stats = memory_stats(self.device, query_driver=False)

    def set_total(self, total: int) -> None:
        if total:
            self.total = total

    def render(self) -> Text:
        stats = self.stats
        if stats is None:
            return Text("memory: N/A", style="dim")
        total = self.total or stats.total
        fraction = stats.allocated / total if total else float("nan")
        label = "VRAM" if stats.is_cuda else "RSS "
        text = Text(f"{label} ")
        text.append_text(bar(fraction, BAR_WIDTH, load_style(fraction)))
        used = f" {format_bytes(stats.allocated)} used / {format_bytes(stats.peak)} peak"
        text.append(used + (f" / {format_bytes(total)}" if total else " / total N/A"))
        if stats.is_cuda:
            text.append(f"  reserved {format_bytes(stats.reserved)}", style="dim")
        return text
