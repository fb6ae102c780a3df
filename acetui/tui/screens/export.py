"""The export dialog: a format and a path you type; dismisses with (format, path) and writes nothing itself."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select

from acetui.estimate.exports import EXPORT_FORMATS

SUFFIXES = {"json": ".json", "csv": ".csv", "targets": ".txt", "peft": "-peft.json", "peft-suffix": "-peft-suffix.json"}


def default_path(stem: str, fmt: str) -> str:
    return f"{stem}{SUFFIXES[fmt]}"


class ExportScreen(ModalScreen[tuple[str, Path] | None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="cancel")]

    def __init__(self, stem: str, fmt: str = "json") -> None:
        super().__init__()
        self.stem = stem
        self.fmt = fmt

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Export the ranking", classes="dialog-title")
            options = [(f"{name}: {title}", name) for name, (title, _) in EXPORT_FORMATS.items()]
            yield Select(options, value=self.fmt, allow_blank=False, id="format")
            yield Input(default_path(self.stem, self.fmt), placeholder="file to write", id="path")
            yield Label("enter: write · escape: cancel", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Select.Changed, "#format")
    def format_changed(self, event: Select.Changed) -> None:
        path = self.query_one("#path", Input)
        if path.value == default_path(self.stem, self.fmt):
            path.value = default_path(self.stem, str(event.value))
        self.fmt = str(event.value)

    @on(Input.Submitted, "#path")
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss((self.fmt, Path(event.value.strip()).expanduser()))
