"""A folder picker: a path input that completes folder names, over a directory tree to browse."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from rich.text import TextType
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.suggester import Suggester
from textual.widgets import DirectoryTree, Input
from textual.widgets.directory_tree import DirEntry
from textual.widgets.tree import TreeNode

NEW_PATH = ("/", "~")  # typed on the tree or a step's table, these start a path rather than extend one


def is_folder(path: Path) -> bool:
    """``Path.is_dir`` without its OSError for a name too long (Python < 3.12 raises it on the UI thread)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def nearest_folder(path: Path) -> Path:
    """``path`` if it is a folder, else its nearest ancestor that is: where a mistyped name would be, so the
    tree shows what exists there rather than whatever folder it showed before."""
    absolute = path.absolute()
    return next((folder for folder in (absolute, *absolute.parents) if is_folder(folder)), Path.cwd())


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
    """Folders only, hidden ones left out; the root is labelled with its folder's name. Two cells of indent per
    level (Textual's default is four) leave room for names like ``acestep-v15-turbo`` three levels down."""

    guide_depth = reactive(2, init=False)

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [path for path in paths if path.is_dir() and not path.name.startswith(".")]

    def reset_node(self, node: TreeNode[DirEntry], label: TextType, data: DirEntry | None = None) -> FolderTree:
        """DirectoryTree labels its root with ``path.name``, which is empty for ``.`` and ``/``."""
        if node is self.root and data is not None:
            folder = data.path.expanduser().absolute()
            label = folder.name or str(folder)
        return super().reset_node(node, label, data)


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
        yield Input(self.value, placeholder=self.placeholder, suggester=PathSuggester(), id="path")
        yield FolderTree(nearest_folder(Path(self.value).expanduser()), id="tree")

    def show_end(self) -> None:
        """Cursor and view at the end: the last folder is the part of a long path worth seeing."""
        field = self.query_one("#path", Input)
        field.action_end()
        # Moving the cursor does not scroll an input's first value into view, so scroll as well.
        field.scroll_to(x=field.max_scroll_x, animate=False, force=True)

    @property
    def path(self) -> Path:
        return Path(self.query_one("#path", Input).value.strip()).expanduser()

    def on_resize(self) -> None:
        """A narrower input keeps its old scroll, which showed the middle of the path: show the end again,
        unless the cursor is being moved about in the path."""
        field = self.query_one("#path", Input)
        if field.cursor_at_end or not field.has_focus:
            field.call_after_refresh(self.show_end)

    def edit_at_end(self, *edits: Callable[[], object]) -> None:
        """Focus the input and run ``edits`` with the cursor at the end (for keys typed on the tree or a
        step's table)."""
        field = self.query_one("#path", Input)
        self.screen.set_focus(field)  # queues the input's Focus, which selects all; the calls below come after
        for edit in (field.action_end, *edits):
            field.call_later(edit)

    def type_in(self, text: str) -> None:
        """Add ``text`` at the end of the path: a stray key never loses the path. A ``/`` or ``~`` typed
        first starts a new one instead, as an absolute path or one in the home folder is never the old
        path's continuation; keys that come in a burst (fast typing over SSH) reach the tree before the
        focus has moved, and later ones find the input focused already: they continue what the first began."""
        field = self.query_one("#path", Input)
        fresh = (field.clear,) if text.startswith(NEW_PATH) and self.screen.focused is not field else ()
        self.edit_at_end(*fresh, partial(field.insert_text_at_cursor, text))

    def clear_line(self) -> None:
        """What ctrl+u does in the input (delete left of the cursor), from the tree or a step's table too."""
        self.edit_at_end(self.query_one("#path", Input).action_delete_left_all)

    def choose(self) -> None:
        if self.query_one("#path", Input).value.strip():
            self.post_message(self.Chosen(self, self.path))

    @on(Input.Submitted, "#path")
    def submitted(self, event: Input.Submitted) -> None:
        """The tree browses from the typed folder, or from where a mistyped one would be, never from an
        earlier pick the input no longer names."""
        event.stop()
        self.browse_typed()

    def pick(self, value: str) -> None:
        """Choose ``value`` as if typed and submitted (the step's draft changed elsewhere)."""
        self.query_one("#path", Input).value = value
        self.show_end()
        self.browse_typed()

    def browse_typed(self) -> None:
        self.query_one(FolderTree).path = nearest_folder(self.path).resolve()
        self.choose()

    @on(DirectoryTree.DirectorySelected)
    def selected(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        self.query_one("#path", Input).value = str(event.path)
        self.show_end()
        self.choose()

    def action_parent(self) -> None:
        tree = self.query_one(FolderTree)
        tree.path = Path(tree.path).expanduser().resolve().parent
