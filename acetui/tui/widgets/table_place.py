"""Keeping the user's place in a table whose rows are shown anew: clearing and re-adding rows puts the cursor
and the scroll back at the top, so a refresh would move the user off the row they were on (and a key
pressed next would act on another row)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from textual.widgets import DataTable


@contextmanager
def kept_place(table: DataTable) -> Iterator[None]:
    """Around a refill of ``table``: afterwards the row with the same key is highlighted again, if it is still
    there, and the scroll is where it was."""
    key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key if table.row_count else None
    x, y = table.scroll_x, table.scroll_y
    yield
    table.scroll_to(x, y, animate=False, immediate=True)
    if key is not None and key in table.rows:
        table.move_cursor(row=table.get_row_index(key))
