"""Sorting a table by one of its columns, shared by the ranking table and the Compare screen: each column has
a natural direction (scores largest first, ranks smallest first), choosing the sorted column again reverses
it, and the sorted column's label carries the direction's arrow."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from rich.text import Text
from textual.widgets import DataTable

Row = TypeVar("Row")


@dataclass(frozen=True)
class SortColumn(Generic[Row]):
    """``key``/``label``: the table column it marks; ``title`` names it in words (status line, keys, palette).
    ``orders`` says in words what comes first, in the natural order and reversed, for a column not sorted by
    the value it shows (a ratio sorted by its distance from 1: 0.89 before 1.05)."""

    key: str
    label: str
    title: str
    sort_key: Callable[[Row], Any]
    descending: bool = False
    orders: tuple[str, str] | None = None


@dataclass(frozen=True)
class SortOrder(Generic[Row]):
    """Which of ``columns`` orders the rows, and whether its natural direction is reversed."""

    columns: tuple[SortColumn[Row], ...]
    index: int = 0
    reverse: bool = False

    @property
    def column(self) -> SortColumn[Row]:
        return self.columns[self.index]

    @property
    def arrow(self) -> str:
        """The direction: ▼ largest first, ▲ smallest first."""
        return "▼" if self.column.descending != self.reverse else "▲"

    def describe(self) -> str:
        """E.g. ``rank ▲`` or ``ratio ▼ (most different first)``."""
        column = self.column
        words = f" ({column.orders[self.reverse]})" if column.orders else ""
        return f"{column.title} {self.arrow}{words}"

    def by(self, index: int) -> SortOrder[Row]:
        """Another column starts in its natural direction; the same one again reverses it."""
        index %= len(self.columns)
        if index == self.index:
            return self.reversed()
        return replace(self, index=index, reverse=False)

    def reversed(self) -> SortOrder[Row]:
        return replace(self, reverse=not self.reverse)

    def sorted(self, rows: Iterable[Row]) -> list[Row]:
        return sorted(rows, key=self.column.sort_key, reverse=self.column.descending != self.reverse)

    def label(self, table: DataTable, labels: Iterable[tuple[str, str]]) -> None:
        """Give each ``(key, label)`` column of ``table`` its label, the sorted one with the arrow; every
        column keeps room for an arrow, so the columns do not shift as the sort moves."""
        for key, label in labels:
            column = table.columns[key]
            column.label = Text(f"{label} {self.arrow}" if key == self.column.key else label)
            column.content_width = max(column.content_width, len(label) + 2)
