"""The shared shape of the checkpoint and dataset steps: a folder picker on the left, what it holds on the right."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from acetui.tui.widgets.path_picker import PathPicker


class PathStepScreen(Screen):
    """Subclasses set ``DRAFT_KEY`` and ``PLACEHOLDER``, yield their pane in ``compose_pane``, handle
    ``PathPicker.Chosen`` and implement ``action_next``; their ``CSS_PATH`` lists ``path_step.tcss`` first."""

    DRAFT_KEY = ""
    PLACEHOLDER = ""
    BINDINGS = [
        Binding("ctrl+l", "rescan", "Rescan", priority=True, tooltip="Read the folder again", id="rescan"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield PathPicker(str(self.app.draft.get(self.DRAFT_KEY, "")), placeholder=self.PLACEHOLDER, id="picker")
            with Vertical(id="pane"):
                yield from self.compose_pane()
        yield Footer(compact=True)

    def compose_pane(self) -> ComposeResult:
        raise NotImplementedError

    def on_mount(self) -> None:
        self.action_rescan()

    def action_rescan(self) -> None:
        self.query_one(PathPicker).choose()
