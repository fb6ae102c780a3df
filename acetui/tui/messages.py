"""Messages that cross widget boundaries."""

from __future__ import annotations

from textual.message import Message

from acetui.estimate import EngineEvent


class EngineMessage(Message):
    """One engine event, posted from the estimator's worker thread to the screen that started it."""

    def __init__(self, event: EngineEvent) -> None:
        super().__init__()
        self.event = event
