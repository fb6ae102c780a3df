"""A DataTable that shows each scrolling column whole or not at all. Textual scrolls a table by cells, so next
to the fixed columns, and at the right edge, a column shows in part: the tail of 1.472 reads as a value, 72.
Here scrolling left and right (the keys, when no cell or column cursor takes them) moves by whole columns, and
whatever still shows in part (at the far right, or after a mouse scroll) is blanked, keeping the row's colours.
Written for tables without row labels."""

from __future__ import annotations

from itertools import accumulate
from typing import Any

from rich.segment import Segment
from textual.geometry import Size
from textual.strip import Strip
from textual.widgets import DataTable


def blank(strip: Strip, start: int, end: int) -> Strip:
    """``strip`` with cells ``start`` to ``end`` turned to spaces in their own styles."""
    before, middle, after = strip.divide([start, end, strip.cell_length])
    spaces = Strip([Segment(" " * segment.cell_length, segment.style) for segment in middle])
    return Strip.join([before, spaces, after])


class WholeColumnTable(DataTable):
    """``fixed_columns`` stay in view; the others scroll one column per ``left``/``right``."""

    def validate_virtual_size(self, size: Size) -> Size:
        """Room to scroll the last step by a whole column too: it stopped where the view ends with the last
        column, and the column the fixed ones cut left a blank gap beside them (History at 80 columns read
        "run  [blank]  variant dataset batches"). Only as much as that step needs, none when all fits."""
        edges = self.column_edges()
        view = self.view_width
        if not edges or edges[-1][1] <= view or view <= 0:
            return size
        offsets = self.column_offsets()
        final = min([offset for offset in offsets if edges[-1][1] - offset <= view] or offsets[-1:])
        return Size(max(size.width, final + view), size.height)

    def on_resize(self) -> None:
        """The room depends on the view's width: asked again from the columns' own width."""
        edges = self.column_edges()
        self.virtual_size = Size(edges[-1][1] if edges else self.fixed_width, self.virtual_size.height)

    def column_edges(self) -> list[tuple[int, int]]:
        """Each scrolling column's start and end, in cells from the table's left edge."""
        widths = [column.get_render_width(self) for column in self.ordered_columns]
        starts = [0, *accumulate(widths)]
        return [(starts[index], starts[index + 1]) for index in range(self.fixed_columns, len(widths))]

    @property
    def fixed_width(self) -> int:
        return sum(column.get_render_width(self) for column in self.ordered_columns[: self.fixed_columns])

    @property
    def view_width(self) -> int:
        """Cells the columns show in: the vertical scrollbar covers the last ones of ``size``."""
        return self.scrollable_content_region.width

    def column_offsets(self) -> list[int]:
        """The scroll offsets that put a scrolling column right after the fixed ones."""
        return [start - self.fixed_width for start, _ in self.column_edges()]

    def scroll_right(self, *, animate: bool = False, **options: Any) -> None:
        """One column on, until the last one is in view. DataTable's own ``right`` calls this when it has no
        cell or column cursor to move, after hiding the hover cursor."""
        edges = self.column_edges()
        if not edges or edges[-1][1] - self.scroll_x <= self.view_width:
            return
        later = [offset for offset in self.column_offsets() if offset > self.scroll_x]
        self.scroll_to(x=min([*later[:1], self.max_scroll_x]), animate=animate, **options)

    def scroll_left(self, *, animate: bool = False, **options: Any) -> None:
        """One column back, to the start of the column the fixed ones cover."""
        earlier = [offset for offset in self.column_offsets() if offset < self.scroll_x]
        self.scroll_to(x=max([0, *earlier[-1:]]), animate=animate, **options)

    def cut_columns(self) -> list[tuple[int, int]]:
        """Where on screen a scrolling column shows only in part: (first cell, end)."""
        fixed, width, scrolled = self.fixed_width, self.view_width, self.scroll_offset.x
        cuts = []
        for start, end in self.column_edges():
            left, right = start - scrolled, end - scrolled
            shown = (max(left, fixed), min(right, width))
            if shown[0] < shown[1] and shown != (left, right):
                cuts.append(shown)
        return cuts

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        for start, end in self.cut_columns():
            strip = blank(strip, start, end)
        return strip
