"""Screens whose list an input narrows (Results, History), with the same keys on both: ``/`` types in the
filter, enter keeps it and hands the keys back to the list, escape empties it first and goes back only once
it is empty."""

from __future__ import annotations

from textual import on
from textual.screen import Screen
from textual.widgets import Input


class FilteringScreen(Screen):
    """Subclasses yield an Input with id ``filter``, set ``LIST`` (the selector of the widget the keys go back
    to), and bind ``/`` to ``filter``, escape to ``clear_filter`` and then to ``back``."""

    LIST = ""

    @property
    def filtering(self) -> bool:
        """Whether escape belongs to the filter (being typed, or narrowing the list) rather than going back."""
        field = self.query_one("#filter", Input)
        return field.has_focus or bool(field.value)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return self.filtering
        if action == "back":
            return not self.filtering
        return True

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.query_one(self.LIST).focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        """Escape empties the filter and hands the keys back to the list (enter keeps the filter)."""
        self.query_one("#filter", Input).value = ""
        self.query_one(self.LIST).focus()
        self.refresh_bindings()

    def action_back(self) -> None:
        self.app.pop_screen()
