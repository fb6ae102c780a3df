"""The export dialog: a format and a path you type; dismisses with (format, absolute path) and writes nothing
itself. The path's extension and the format never disagree: typing ``out.csv`` picks CSV, and picking a format
gives a typed path that format's extension, so a CSV is never written into ``out.json``."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select

from acetui.tui.ranking_source import ExportFormats


def absolute(path: str | Path) -> Path:
    """``path`` against the folder acetui was started in, so the dialog shows where the file really goes."""
    return Path(path).expanduser().absolute()


class ExportScreen(ModalScreen[tuple[str, Path] | None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="cancel")]

    def __init__(self, formats: ExportFormats, fmt: str = "json", path: Path | None = None, scope: str = "") -> None:
        """``path`` prefills the field, e.g. to correct it after a failed export; ``scope`` says what the files
        will hold (the whole ranking, whatever a filter shows)."""
        super().__init__()
        self.formats = formats
        self.fmt = fmt
        self.path = path
        self.scope = scope

    def default_path(self, fmt: str) -> str:
        return str(absolute(self.formats[fmt][1]))

    def extension(self, fmt: str) -> str:
        return Path(self.formats[fmt][1]).suffix

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Export the ranking", classes="dialog-title")
            if self.scope:
                yield Label(self.scope, id="scope")
            options = [(f"{name}: {title}", name) for name, (title, _) in self.formats.items()]
            yield Select(options, value=self.fmt, allow_blank=False, id="format")
            path = str(self.path) if self.path is not None else self.default_path(self.fmt)
            yield Input(path, placeholder="file to write", id="path")
            yield Label("enter: write · escape: cancel · a .csv/.txt/.json name sets the format", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Input.Changed, "#path")
    def path_changed(self, event: Input.Changed) -> None:
        """A known extension the chosen format lacks picks the first format that has it."""
        suffix = Path(event.value.strip()).suffix
        if suffix == self.extension(self.fmt):
            return
        matching = [fmt for fmt in self.formats if self.extension(fmt) == suffix]
        if matching:
            self.query_one("#format", Select).value = matching[0]

    @on(Select.Changed, "#format")
    def format_changed(self, event: Select.Changed) -> None:
        """The default path follows the format; a typed path keeps its name and gets the format's extension."""
        path = self.query_one("#path", Input)
        fmt = str(event.value)
        typed = Path(path.value.strip())
        if path.value == self.default_path(self.fmt):
            path.value = self.default_path(fmt)
        elif typed.suffix in {self.extension(known) for known in self.formats} and typed.suffix != self.extension(fmt):
            path.value = str(typed.with_suffix(self.extension(fmt)))
        self.fmt = fmt

    @on(Input.Submitted, "#path")
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss((str(self.query_one("#format", Select).value), absolute(event.value.strip())))
