"""Screens that show recorded runs and follow their records while this app's runs save them (the app routes
every save here through ``reload_run``), so a row or a ranking does not stay at an old batch count."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from acetui.estimate import EstimateResult
from acetui.history import history_record, load_record

READ_GROUP = "run-records"


def read_records(run_ids: list[str]) -> list[EstimateResult]:
    return [load_record(history_record(run_id)) for run_id in run_ids]


class RecordFollowingScreen(Screen):
    """Re-reads changed records off the UI thread, one read at a time (a tiny run saves ~20 batches a second,
    faster than reads), at once while the screen is in front and otherwise when it is back."""

    def __init__(self) -> None:
        super().__init__()
        self.changed: set[str] = set()  # followed runs whose record was saved since this screen read it
        self.reading = False

    def follows(self, run_id: str) -> bool:
        """Whether this screen shows ``run_id``."""
        raise NotImplementedError

    def read(self, run_ids: list[str]) -> list[Any]:
        """Off the UI thread: the records of ``run_ids``, or what the screen shows of them."""
        return read_records(run_ids)

    def show_records(self, runs: list[Any]) -> None:
        """Show what ``read`` returned."""
        raise NotImplementedError

    def reload_run(self, run_id: str) -> None:
        if self.follows(run_id):
            self.changed.add(run_id)
            self.read_changed()

    def on_screen_resume(self) -> None:
        """Catch up with the saves made while another screen was in front."""
        self.read_changed()

    def read_changed(self) -> None:
        if self.reading or not self.changed or not self.is_active:
            return
        run_ids = sorted(self.changed)
        self.reading = True
        self.changed.clear()
        self.run_worker(
            lambda: self.read(run_ids),
            thread=True,
            group=READ_GROUP,
            exit_on_error=False,
            description="reading changed run records",
        )

    @on(Worker.StateChanged)
    def records_read(self, event: Worker.StateChanged) -> None:
        """Show what was read (an unreadable record leaves the last shown), then any change since."""
        if event.worker.group != READ_GROUP or not event.worker.is_finished:
            return
        self.reading = False
        if event.state == WorkerState.SUCCESS:
            self.show_records(event.worker.result)
        self.read_changed()
