"""Helpers shared by the TUI tests (no tests here): waiting for the app's own workers, filling fields."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from textual.screen import Screen
from textual.widgets import DataTable, Input, ProgressBar

from acetui import paths
from acetui.estimate import BatchDone, EstimateRequest, EstimateResult, Estimator
from acetui.tui.screens.checkpoint import CheckpointScreen
from acetui.tui.screens.dataset import DatasetScreen
from acetui.tui.screens.parameters import ParametersScreen
from acetui.tui.screens.run import RunScreen
from acetui.tui.widgets.path_picker import FolderTree

SIZE = (80, 24)
TREE_LOADER = "_loader"  # DirectoryTree's long-lived loading worker never completes


async def settle(pilot, rounds: int = 50) -> None:
    """Wait until no worker of ours is running and the messages they posted are handled."""
    for _ in range(rounds):
        await pilot.pause()
        busy = [w for w in pilot.app.workers if w.group != TREE_LOADER and not w.is_finished]
        if not busy:
            await pilot.pause()
            return
        await asyncio.gather(*(worker.wait() for worker in busy), return_exceptions=True)
    raise AssertionError("workers still running")


async def open_screen(pilot, screen) -> None:
    """Push ``screen`` and wait for its workers (usable as snap_compare's ``run_before`` via partial)."""
    pilot.app.push_screen(screen)
    await settle(pilot)


async def submit(pilot, ident: str, value: str) -> None:
    field = pilot.app.screen.query_one(f"#{ident}", Input)
    field.focus()
    field.value = value
    await pilot.press("enter")
    await settle(pilot)


def fill(pilot, **values: str) -> None:
    for ident, value in values.items():
        pilot.app.screen.query_one(f"#{ident.replace('_', '-')}", Input).value = value


async def to_dataset_step(pilot, checkpoint_root) -> None:
    """From the checkpoint step, with ``checkpoint_root`` typed and its first variant taken, to the dataset step."""
    await submit(pilot, "path", str(checkpoint_root))
    await pilot.press("enter")
    assert isinstance(pilot.app.screen, DatasetScreen)


async def pick_to_parameters(pilot, checkpoint_root, dataset_dir) -> None:
    assert isinstance(pilot.app.screen, CheckpointScreen)
    await submit(pilot, "path", str(checkpoint_root))
    assert pilot.app.screen.query_one("#variants", DataTable).row_count == 3
    assert pilot.app.screen.query_one(FolderTree).path == checkpoint_root.resolve()
    await pilot.press("enter")
    assert isinstance(pilot.app.screen, DatasetScreen)
    await submit(pilot, "path", str(dataset_dir))
    assert "6 valid samples" in str(pilot.app.screen.query_one("#summary").render())
    await pilot.press("ctrl+n")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ParametersScreen)


def record_run(checkpoint_root, dataset_dir, *, stop_after: int | None = None, **settings) -> EstimateResult:
    """A real run recorded in the (test's) history; ``stop_after`` cancels it after that many batches."""
    request = EstimateRequest(checkpoint_dir=checkpoint_root, variant="turbo", dataset_dir=dataset_dir, **settings)
    estimator: Estimator

    def on_event(event) -> None:
        if stop_after is not None and isinstance(event, BatchDone) and event.index + 1 >= stop_after:
            estimator.cancel()

    estimator = Estimator(request, on_event=on_event, record_dir=paths.app_dirs().runs)
    result = estimator.run()
    assert result is not None
    return result


def two_runs(checkpoint_root, dataset_dir) -> tuple[EstimateResult, EstimateResult]:
    """Two recorded 2-batch runs that differ only in their seed: what Compare screens are tried on."""
    return (
        record_run(checkpoint_root, dataset_dir, batches=2, seed=1),
        record_run(checkpoint_root, dataset_dir, batches=2, seed=2),
    )


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` while the app runs (a long run never lets ``settle`` return)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


async def start_long_run(pilot, checkpoint_root, dataset_dir) -> RunScreen:
    """A run far longer than any test, pushed and past its first batch (stop it, or leave to cancel it)."""
    run = RunScreen(EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=5000, top_k=4))
    pilot.app.push_screen(run)
    await pilot.pause()
    await wait_for(pilot, lambda: bool(run.query_one(ProgressBar).progress))
    return run


async def focused_tree(pilot) -> FolderTree:
    """The path step's folder tree, focused once the step has settled."""
    await settle(pilot)
    tree = pilot.app.screen.query_one(FolderTree)
    tree.focus()
    return tree


async def open_history(pilot) -> tuple[Screen, DataTable]:
    """History, opened with ctrl+g and read, and its table of runs."""
    await pilot.press("ctrl+g")
    await settle(pilot)
    history = pilot.app.screen
    return history, history.query_one("#runs", DataTable)


def shown_modules(table) -> list:
    """The modules a ranking table shows, in its order (what its filter and sort leave)."""
    return [row.item for row in table.rows_shown()]
