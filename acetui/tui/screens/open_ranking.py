"""A dialog opening a ranking file (a Side-Step or acetui estimate JSON, or a fisher_map.json): a path you type,
completed from folders and ``.json`` files. A file that cannot be read is reported here; the dialog
dismisses with the ranking."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from acetui.errors import AcetuiError
from acetui.estimate.imported import ImportedRanking, load_ranking
from acetui.tui.widgets.path_picker import PathSuggester


class OpenRankingScreen(ModalScreen[ImportedRanking | None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="cancel")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(placeholder="path/to/estimate.json or fisher_map.json", suggester=PathSuggester(".json"),
                        id="path")  # fmt: skip
            yield Label("right: complete · enter: open · escape: cancel", classes="dialog-help")

    @on(Input.Submitted, "#path")
    def submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            return
        try:
            self.dismiss(load_ranking(event.value.strip()))
        except AcetuiError as error:
            self.notify(str(error), title="Cannot open", severity="error", timeout=10)
