"""A dialog naming a profile: type a new name (completed from the saved ones) or pick a saved one; when
picking, ``delete`` removes the highlighted profile after asking."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, OptionList

from acetui.profiles import ProfileError, delete_profile, profile_path
from acetui.tui.screens.confirm import ConfirmScreen


class ProfileScreen(ModalScreen[str | None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel", id="cancel"),
        Binding("delete", "delete", "Delete profile", tooltip="Delete the highlighted profile", id="profile-delete"),
    ]

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
            yield Label(self.keys_help(), classes="dialog-help")

    def keys_help(self) -> str:
        """What the keys do here: enter loads a picked profile, or saves under the typed or picked name."""
        if self.existing_only:
            return "enter: load · delete: delete · escape: cancel"
        return "enter: save (asks before replacing one) · escape: cancel"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Deleting is offered when picking a saved profile, not while naming one to save."""
        return action != "delete" or self.existing_only

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

    def action_delete(self) -> None:
        """Ask before deleting the highlighted profile: a deleted profile cannot be restored."""
        options = self.query_one("#names", OptionList)
        index = options.highlighted
        if index is None:
            return
        name = str(options.get_option_at_index(index).prompt)
        self.app.push_screen(ConfirmScreen(f"Delete profile {name}?"), lambda yes: self.delete(index, name, yes))

    def delete(self, index: int, name: str, confirmed: bool | None) -> None:
        """Remove the profile file and its row; the dialog closes when no profile is left."""
        if not confirmed:
            return
        try:
            path = delete_profile(name)
        except ProfileError as error:
            self.notify(str(error), title="Profile not deleted", severity="error")
            return
        self.notify(f"deleted {path}", title=f"Profile {name}")
        options = self.query_one("#names", OptionList)
        options.remove_option_at_index(index)
        if options.option_count == 0:
            self.dismiss(None)
