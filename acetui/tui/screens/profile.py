"""A dialog naming a profile: type a new name (completed from the saved ones) or pick a saved one."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, OptionList

from acetui.profiles import ProfileError, profile_path


class ProfileScreen(ModalScreen[str | None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="cancel")]

    def __init__(self, title: str, names: list[str], *, existing_only: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.names = names
        self.existing_only = existing_only

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            if not self.existing_only:
                yield Input(placeholder="profile name", suggester=SuggestFromList(self.names), id="name")
            if self.names:
                yield OptionList(*self.names, id="names")
            yield Label("enter: choose · escape: cancel", classes="dialog-help")

    @on(Input.Submitted, "#name")
    def typed(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        try:
            profile_path(name)
        except ProfileError as error:
            self.notify(str(error), severity="error")
            return
        self.dismiss(name)

    @on(OptionList.OptionSelected, "#names")
    def picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(str(event.option.prompt))
