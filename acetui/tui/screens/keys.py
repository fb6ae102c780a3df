"""Every key of the screen it is opened on (f1), with what it does: the footer has room for a few, and
Textual's keys panel listed the focused field's editing keys first, which at 80x24 left the screen's own
below its end."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

KeyRow = tuple[str, str, str]  # the key as shown, its name, what it does


def ours(node: object, binding: Binding) -> bool:
    """Whether one of acetui's widget classes binds ``binding`` (a ranking table's sort keys), not Textual's
    own (a field's editing keys, a table's cursor keys)."""
    return any(
        binding in vars(cls).get("BINDINGS", ()) for cls in type(node).__mro__ if cls.__module__.startswith("acetui.")
    )


def screen_keys(screen: Screen) -> list[KeyRow]:
    """The keys ``screen``, the app and the focused widget of ours answer to now (enabled), those the footer
    leaves out too; not a Textual widget's own (a field's editing keys)."""
    app = screen.app
    rows: list[tuple[int, KeyRow]] = []  # the screen's first, then its widget's, then the app's and Textual's
    seen: set[str] = set()
    for active in screen.active_bindings.values():
        binding, node = active.binding, active.node
        group = 2 if node in (screen, app) else -1  # the app's (history, quit) and Textual's own (tab)
        if ours(node, binding) and node is not app:
            group = 0 if node is screen else 1
        if group < 0 or not active.enabled or binding.action in seen:
            continue
        seen.add(binding.action)
        name = binding.description or binding.action.replace("_", " ")
        rows.append((group, (app.get_key_display(binding), name, active.tooltip or binding.tooltip or "")))
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


class KeysScreen(ModalScreen[None]):
    CSS_PATH = "dialog.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Close", id="close")]  # and f1, the app's

    def __init__(self, title: str, rows: list[KeyRow]) -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, header_style="bold")
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("does", no_wrap=True)
        table.add_column("", ratio=1, style="dim")  # wraps: at 80 columns it was cut
        for row in self.rows:
            table.add_row(*row)
        with Vertical(classes="dialog"):
            yield Label(f"Keys of {self.title_text}", classes="dialog-title")
            with VerticalScroll(id="keys"):
                yield Static(table)
            yield Label("up/down scroll · escape or f1: close", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one("#keys").focus()
