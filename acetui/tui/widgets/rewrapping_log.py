"""A log whose lines wrap to its width whenever that changes."""

from __future__ import annotations

from textual.events import Resize
from textual.widgets import RichLog


class RewrappingLog(RichLog):
    """RichLog wraps a line once, when it is written, and never narrower than its ``min_width`` of 78 cells:
    at 80 columns (76 cells of log) and after the terminal narrowed (SSH windows are resized often) the Run
    screen's log showed its lines cut. This one wraps at any width, and keeps its texts to write them again
    at the new width."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(wrap=True, markup=False, min_width=1, id=id)
        self.texts: list[str] = []
        self.wrapped_at = 0  # the width the lines shown were wrapped at

    def add(self, text: str) -> None:
        self.texts.append(text)
        self.write(text)

    def on_resize(self, event: Resize) -> None:
        width = self.scrollable_content_region.width
        if not width or width == self.wrapped_at:
            return
        first = not self.wrapped_at
        self.wrapped_at = width
        if first:  # RichLog writes what came before its size was known itself
            return
        self.clear()
        for text in self.texts:
            self.write(text)
