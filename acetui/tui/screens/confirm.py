"""A yes/no question; dismisses with the answer."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label


class ConfirmScreen(ModalScreen[bool]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [
        Binding("y", "dismiss(True)", "Yes", id="yes"),
        Binding("n,escape", "dismiss(False)", "No", id="no"),
    ]

    def __init__(self, question: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title", id="question")
            yield Label("y: yes · n or escape: no", classes="dialog-help")

    def ask(self, question: str) -> None:
        """The question anew, while open: what it is about has changed (a run's setup ended)."""
        self.question = question
        self.query_one("#question", Label).update(question)
