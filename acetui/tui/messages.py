"""Messages that cross widget boundaries."""

from __future__ import annotations

from textual.message import Message

from acetui.estimate import EngineEvent


class EngineMessage(Message):
    """One engine event, posted from the estimator's worker thread to the screen that started it."""

    def __init__(self, event: EngineEvent) -> None:
        super().__init__()
        self.event = event


class RunRecordChanged(Message):
    """A run of this app saved its record (a batch done, or the run ended); it bubbles from the Run screen
    to the app, which tells the History and Results screens, so that neither stays at a stale batch count."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
