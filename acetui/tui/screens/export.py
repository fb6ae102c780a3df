"""The export dialog: a format and a path you type; dismisses with (format, path) and writes nothing itself."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select

from acetui.tui.ranking_source import ExportFormats


class ExportScreen(ModalScreen[tuple[str, Path] | None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="cancel")]

    def __init__(self, formats: ExportFormats, fmt: str = "json") -> None:
        super().__init__()
        self.formats = formats
        self.fmt = fmt

    def default_path(self, fmt: str) -> str:
        return self.formats[fmt][1]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Export the ranking", classes="dialog-title")
            options = [(f"{name}: {title}", name) for name, (title, _) in self.formats.items()]
            yield Select(options, value=self.fmt, allow_blank=False, id="format")
            yield Input(self.default_path(self.fmt), placeholder="file to write", id="path")
            yield Label("enter: write · escape: cancel", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Select.Changed, "#format")
    def format_changed(self, event: Select.Changed) -> None:
        path = self.query_one("#path", Input)
        if path.value == self.default_path(self.fmt):
            path.value = self.default_path(str(event.value))
        self.fmt = str(event.value)

    @on(Input.Submitted, "#path")
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss((self.fmt, Path(event.value.strip()).expanduser()))
