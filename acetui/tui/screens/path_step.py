"""The shared shape of the checkpoint and dataset steps: a folder picker on the left, what it holds on the right.

Both read the chosen folder in a thread; only the latest pick's result or error is shown, so a slow read of
an earlier folder can never replace what the picker now names.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import Worker, WorkerCancelled, WorkerState, get_current_worker

from acetui.errors import AcetuiError
from acetui.folders import cannot_read
from acetui.pace import Paced, Progress
from acetui.tui.widgets.path_picker import PathPicker
from acetui.tui.widgets.path_wrap import PathWrap
from acetui.units import progress_text

ResultT = TypeVar("ResultT")


def error_line(path: Path, error: BaseException) -> str:
    """One line naming the path and the problem; our own errors already read that way."""
    if isinstance(error, AcetuiError):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        return f"{path}: {cannot_read(error)}"
    reason = str(error).strip().splitlines()
    return f"{path}: unexpected {type(error).__name__}" + (f" ({reason[0]})" if reason else "")


class PathStepScreen(Screen, Generic[ResultT]):
    """Subclasses set ``DRAFT_KEY``, ``PLACEHOLDER``, ``BUSY``, ``STATUS`` (the selector of the Static that
    shows progress and errors) and ``HANDS_ON``, yield their pane in ``compose_pane``, implement ``forget``
    (a new pick clears the old result), ``read`` (runs in a thread), ``show`` and ``action_next`` (which
    moves on through ``hand_on``). Their ``CSS_PATH`` lists ``path_step.tcss`` first."""

    DRAFT_KEY = ""
    PLACEHOLDER = ""
    BUSY = "reading"
    STATUS = ""
    HANDS_ON: tuple[str, ...] = ()  # the draft settings this step's pick sets or depends on
    BINDINGS = [
        Binding("ctrl+l", "rescan", "Rescan", priority=True, tooltip="Read the folder again", id="rescan"),
        # not a priority: in the input, its own ctrl+u deletes left of the cursor; elsewhere this does the same
        Binding(
            "ctrl+u", "clear_path", "Clear path", show=False, tooltip="Delete the path to type another", id="clear-path"
        ),
    ]

    class Read(Message, Generic[ResultT]):
        """What a worker read from ``path``; ``worker`` tells whether it is still the latest pick's."""

        def __init__(self, worker: Worker[None], path: Path, result: ResultT) -> None:
            super().__init__()
            self.worker = worker
            self.path = path
            self.result = result

    def __init__(self) -> None:
        super().__init__()
        self.reader: Worker[None] | None = None
        self.reading = Path()
        self.handed: dict[str, object] | None = None  # HANDS_ON as this step left them for the next

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield PathPicker(str(self.app.draft.get(self.DRAFT_KEY, "")), placeholder=self.PLACEHOLDER, id="picker")
            with Vertical(id="pane"):
                yield from self.compose_pane()
        yield Footer(compact=True)

    def compose_pane(self) -> ComposeResult:
        raise NotImplementedError

    def forget(self) -> None:
        raise NotImplementedError

    def read(self, path: Path) -> ResultT:
        raise NotImplementedError

    def show(self, path: Path, result: ResultT) -> None:
        raise NotImplementedError

    def on_mount(self) -> None:
        self.action_rescan()

    def hand_on(self, **values: str) -> None:
        """Put this step's pick in the draft, for the steps after it, and remember it (``on_screen_resume``)."""
        self.app.draft.update(values)
        self.handed = {key: self.app.draft.get(key) for key in self.HANDS_ON}

    def on_screen_resume(self) -> None:
        """Back from a later step that changed this one's pick (a profile loaded on the parameters step): show
        and read what the run would now use, not the folder picked here before, which ``next`` would put back
        beside the profile's other folders."""
        if self.handed is None or all(self.app.draft.get(key) == value for key, value in self.handed.items()):
            return
        self.handed = None
        self.query_one(PathPicker).pick(str(self.app.draft.get(self.DRAFT_KEY, "")))

    def action_rescan(self) -> None:
        self.query_one(PathPicker).choose()

    def action_clear_path(self) -> None:
        self.query_one(PathPicker).clear_line()

    def status(self, text: Text | str) -> None:
        self.query_one(self.STATUS, Static).update(PathWrap(text))

    def on_key(self, event: events.Key) -> None:
        """Typing on the tree or the pane edits the path, as in GTK's file chooser: neither takes characters,
        and coming back to a step leaves focus where it was (often the table), so keys would go nowhere.
        The first key goes to the end of the path, or starts a new one if it is ``/`` or ``~``."""
        if event.character is None or not event.is_printable or event.key in self.active_bindings:
            return
        event.stop()
        self.query_one(PathPicker).type_in(event.character)

    def on_paste(self, event: events.Paste) -> None:
        """A path pasted on the tree or the pane goes into the path, as typed keys do (the input handles a
        paste into itself); its first line only, as the input keeps."""
        lines = event.text.strip().splitlines()
        if lines:
            event.stop()
            self.query_one(PathPicker).type_in(lines[0].strip())

    @on(PathPicker.Chosen)
    def chosen(self, event: PathPicker.Chosen) -> None:
        self.forget()
        self.status(f"{self.BUSY} {event.path} ...")
        self.reading = event.path
        self.reader = self.run_worker(
            partial(self.read_in_thread, event.path),
            thread=True,
            exclusive=True,
            group="path-step",
            exit_on_error=False,
            description=f"{self.BUSY} {event.path}",
        )

    def progress(self, path: Path, unit: str) -> Progress:
        """For ``read``: how far it has got, on the busy line a few times a second; and where it stops once
        another pick has replaced it (a scan of thousands of files would otherwise read on for nothing)."""
        worker = get_current_worker()
        shown = Paced(
            lambda done, total: self.app.call_from_thread(
                self.status, f"{self.BUSY} {path} ... {progress_text(done, total, unit)}"
            )
        )

        def told(done: int, total: int) -> None:
            if worker.is_cancelled:
                raise WorkerCancelled(f"{self.BUSY} {path}: another folder was picked")
            shown(done, total)

        return told

    def read_in_thread(self, path: Path) -> None:
        self.post_message(self.Read(get_current_worker(), path, self.read(path)))

    @on(Read)
    def done(self, message: Read[ResultT]) -> None:
        message.stop()
        if message.worker is self.reader:
            self.show(message.path, message.result)

    @on(Worker.StateChanged)
    def failed(self, event: Worker.StateChanged) -> None:
        """A worker error ends the busy line with what went wrong, instead of leaving it there for good."""
        if event.worker is self.reader and event.state is WorkerState.ERROR and event.worker.error is not None:
            self.status(Text(error_line(self.reading, event.worker.error), style="red"))
