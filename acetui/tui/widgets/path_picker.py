"""A folder picker: a path input that completes folder names, over a directory tree to browse."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import DirectoryTree, Input


class PathSuggester(Suggester):
    """Completes the last part of a typed path with the first matching sub-folder (accept with right/end),
    or, given ``suffix``, also with a file name ending in it."""

    def __init__(self, suffix: str = "") -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffix = suffix

    def wanted(self, child: Path) -> bool:
        return child.is_dir() or bool(self.suffix) and child.name.endswith(self.suffix)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        typed = Path(value).expanduser()
        parent, stem = (typed, "") if value.endswith("/") else (typed.parent, typed.name)
        try:
            names = sorted(
                child.name + ("/" if child.is_dir() else "")
                for child in parent.iterdir()
                if self.wanted(child) and child.name.startswith(stem) and (stem or not child.name.startswith("."))
            )
        except OSError:
            return None
        if not names:
            return None
        return value + names[0][len(stem) :]


class FolderTree(DirectoryTree):
    """Folders only, hidden ones left out."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [path for path in paths if path.is_dir() and not path.name.startswith(".")]


class PathPicker(Vertical):
    """Posts ``Chosen`` when a path is submitted in the input or a folder is selected in the tree."""

    DEFAULT_CSS = """
    PathPicker { height: auto; }
    PathPicker > Input { margin-bottom: 0; }
    PathPicker > FolderTree { height: 1fr; min-height: 4; }
    """

    BINDINGS = [
        Binding(
            "backspace", "parent", "Up a folder", tooltip="Browse the parent of the tree's folder", id="tree-parent"
        ),
    ]

    class Chosen(Message):
        def __init__(self, picker: PathPicker, path: Path) -> None:
            super().__init__()
            self.picker = picker
            self.path = path

    def __init__(self, value: str = "", *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(id=id)
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        start = Path(self.value).expanduser()
        yield Input(self.value, placeholder=self.placeholder, suggester=PathSuggester(), id="path")
        yield FolderTree(start if self.value and start.is_dir() else Path("."), id="tree")

    @property
    def path(self) -> Path:
        return Path(self.query_one("#path", Input).value.strip()).expanduser()

    def choose(self) -> None:
        if self.query_one("#path", Input).value.strip():
            self.post_message(self.Chosen(self, self.path))

    @on(Input.Submitted, "#path")
    def submitted(self, event: Input.Submitted) -> None:
        """A typed folder is also where the tree browses from, so the two never disagree."""
        event.stop()
        if self.path.is_dir():
            self.query_one(FolderTree).path = self.path.resolve()
        self.choose()

    @on(DirectoryTree.DirectorySelected)
    def selected(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        self.query_one("#path", Input).value = str(event.path)
        self.choose()

    def action_parent(self) -> None:
        tree = self.query_one(FolderTree)
        tree.path = Path(tree.path).expanduser().resolve().parent
