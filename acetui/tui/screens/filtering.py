"""Screens whose list an input narrows (Results, History), with the same keys on both: ``/`` types in the
filter, enter keeps it and hands the keys back to the list, escape empties it first and goes back only once
it is empty."""

from __future__ import annotations

from textual import events, on
from textual.screen import Screen
from textual.widgets import Input


class FilteringScreen(Screen):
    """Subclasses yield an Input with id ``filter``, set ``LIST`` (the selector of the widget the keys go back
    to), and bind ``/`` to ``filter``, escape to ``clear_filter`` and then to ``back``."""

    LIST = ""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.to_filter = False  # / pressed, the filter not focused yet (focus moves after the keys queued)

    @property
    def filtering(self) -> bool:
        """Whether escape belongs to the filter (being typed, or narrowing the list) rather than going back."""
        field = self.query_one("#filter", Input)
        return field.has_focus or bool(field.value)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":  # typing in it: / is a character of the pattern
            return not self.query_one("#filter", Input).has_focus
        if action == "clear_filter":
            return self.filtering
        if action == "back":
            return not self.filtering
        return True

    def on_key(self, event: events.Key) -> None:
        """Keys typed right after ``/`` (sent together, as over SSH) are the filter's text, not the list's
        commands: ``/day`` deleted a run in History (d asked, y answered) and copied the target modules in
        Results. They reach the list before the filter has the focus, and come up here before ``/``'s binding
        would have run: so ``/`` is taken here, and what follows it goes into the filter until it has the
        focus (it stops its own keys, so a character still coming up then came from the list)."""
        field = self.query_one("#filter", Input)
        typing = self.to_filter or field.has_focus
        if not (event.is_printable and event.character) or (event.key != "slash" and not typing):
            return
        event.stop()
        event.prevent_default()
        if typing:
            field.insert_text_at_cursor(event.character)
        else:
            self.action_filter()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if event.widget is self.query_one("#filter", Input):
            self.to_filter = False
        self.refresh_bindings()  # what / and enter do depends on it

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.query_one(self.LIST).focus()

    def action_filter(self) -> None:
        self.to_filter = True
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        """Escape empties the filter and hands the keys back to the list (enter keeps the filter)."""
        self.to_filter = False
        self.query_one("#filter", Input).value = ""
        self.query_one(self.LIST).focus()
        self.refresh_bindings()

    def action_back(self) -> None:
        self.app.pop_screen()
