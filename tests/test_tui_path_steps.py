"""The checkpoint and dataset steps: stale reads dropped, worker errors shown, wording, where the tree browses
and where typing goes, the picker's layout."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from textual import events
from textual.message import Message
from textual.widgets import DataTable, Input
from textual.worker import WorkerCancelled

from acetui.data import write_dataset
from acetui.model.synthetic import TINY
from acetui.profiles import save_last
from acetui.tui.app import make_app
from acetui.tui.screens.checkpoint import CheckpointScreen
from acetui.tui.screens.dataset import DatasetScreen
from acetui.tui.screens.path_step import PathStepScreen
from acetui.tui.widgets.path_picker import FolderTree, PathPicker
from tests.tui_support import SIZE, focused_tree, settle, submit, to_dataset_step

LONG_NAME = "x" * 300  # longer than any file system allows: stat() fails with "File name too long"


def text_of(pilot, ident: str) -> str:
    return str(pilot.app.screen.query_one(f"#{ident}").render())


def visible_width(field: Input) -> int:
    """Cells of text the input shows; its rendered line has one more, for the cursor."""
    return field.scrollable_content_region.width


async def pick(pilot, path: Path | str) -> None:
    """Submit ``path`` in the picker without waiting for the read it starts."""
    field = pilot.app.screen.query_one("#path", Input)
    field.focus()
    field.value = str(path)
    await pilot.press("enter")


async def until(pilot, condition, what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def read_messages() -> tuple[list[PathStepScreen.Read], Callable[[Message], None]]:
    """The step screens' read results as they arrive, and the message hook that collects them."""
    results: list[PathStepScreen.Read] = []

    def keep(message: Message) -> None:
        if isinstance(message, PathStepScreen.Read):
            results.append(message)

    return results, keep


def deliver_again(app, read: PathStepScreen.Read) -> None:
    """Post an earlier read's own result once more, as if its worker finished late."""
    app.screen.post_message(PathStepScreen.Read(read.worker, read.path, read.result))


async def test_dataset_scan_of_an_earlier_pick_arriving_late_is_dropped(checkpoint_root, dataset_dir, tmp_path):
    """The earlier scan's own result message is delivered again after the later pick's (no dataset input
    can block a scan: a FIFO named like a sample is refused unopened)."""
    other = tmp_path / "other"
    write_dataset(other, count=2, condition_width=TINY.condition_width, seed=3, frames=(9, 30))
    results, keep = read_messages()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=keep) as pilot:
        await to_dataset_step(pilot, checkpoint_root)
        await pick(pilot, other)
        await until(pilot, lambda: any(r.path == other for r in results), "the first scan")
        await pick(pilot, dataset_dir)
        await until(pilot, lambda: "6 valid samples" in text_of(pilot, "summary"), "the second scan")
        deliver_again(app, next(r for r in results if r.path == other))
        await settle(pilot)
        assert "6 valid samples" in text_of(pilot, "summary")
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert app.draft["dataset_dir"] == str(dataset_dir)


async def test_a_scan_counts_its_files_on_the_busy_line_and_stops_once_another_pick_replaced_it(
    checkpoint_root, dataset_dir
):
    """The callback the dataset step's scan gets (``progress``), called from a read worker as the scan does:
    a dataset of thousands of files shows how far it is, and one abandoned reads no further."""
    told, go_on, stopped = threading.Event(), threading.Event(), []
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_dataset_step(pilot, checkpoint_root)
        await settle(pilot)
        step = app.screen

        def scanning() -> None:
            progress = step.progress(dataset_dir, "files")
            progress(1200, 5000)
            told.set()
            go_on.wait(30)
            try:
                progress(1201, 5000)
            except WorkerCancelled as error:
                stopped.append(str(error))

        worker = step.run_worker(scanning, thread=True, exit_on_error=False)
        await until(pilot, told.is_set, "the first file")
        await until(pilot, lambda: "1,200 of 5,000 files" in text_of(pilot, "summary"), "the count")
        assert text_of(pilot, "summary") == f"scanning {dataset_dir} ... 1,200 of 5,000 files"
        worker.cancel()  # what picking another folder does to the read under way (exclusive workers)
        go_on.set()
        await until(pilot, lambda: bool(stopped), "the stop")
        assert stopped == [f"scanning {dataset_dir}: another folder was picked"]


async def test_variant_listing_of_an_earlier_pick_arriving_late_is_dropped(checkpoint_root, tmp_path):
    """Checkpoint reads cannot be blocked on a FIFO (weights must be regular files), so the earlier read's
    own result message is delivered again after the later pick's."""
    other = tmp_path / "other"
    shutil.copytree(checkpoint_root / "acestep-v15-turbo", other / "acestep-v15-turbo")
    results, keep = read_messages()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=keep) as pilot:
        await submit(pilot, "path", str(other))
        await submit(pilot, "path", str(checkpoint_root))
        deliver_again(app, results[0])
        await settle(pilot)
        assert app.screen.query_one("#variants", DataTable).row_count == 3
        await pilot.press("enter")
        assert app.draft["checkpoint_dir"] == str(checkpoint_root)


async def lines_on_both_steps(checkpoint_root: Path, path: Path) -> tuple[str, str]:
    """What the checkpoint step, then the dataset step, says when ``path`` is picked there."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "path", str(path))
        checkpoint_line = text_of(pilot, "detail")
        await to_dataset_step(pilot, checkpoint_root)
        await submit(pilot, "path", str(path))
        return checkpoint_line, text_of(pilot, "summary")


async def test_a_failing_read_shows_its_error_on_both_steps(checkpoint_root, tmp_path):
    too_long = tmp_path / LONG_NAME
    expected = f"{too_long}: cannot read ({os.strerror(errno.ENAMETOOLONG)})"
    assert await lines_on_both_steps(checkpoint_root, too_long) == (expected, expected)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
async def test_an_unreadable_folder_is_reported_on_both_steps(checkpoint_root, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        expected = f"{locked}: cannot read (permission denied)"
        assert await lines_on_both_steps(checkpoint_root, locked) == (expected, expected)
    finally:
        locked.chmod(0o700)


async def test_a_missing_folder_reads_the_same_on_both_steps(checkpoint_root, tmp_path):
    missing = tmp_path / "doesnotexist"
    expected = f"{missing}: folder not found"
    assert await lines_on_both_steps(checkpoint_root, missing) == (expected, expected)


async def test_a_variant_folder_lists_its_root_with_that_variant_highlighted(checkpoint_root):
    variant = checkpoint_root / "acestep-v15-base"
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "path", str(variant))
        assert text_of(pilot, "heading") == f"{variant} is a variant folder; its parent is the checkpoints root"
        table = app.screen.query_one("#variants", DataTable)
        assert table.row_count == 3 and table.cursor_row == 1
        await pilot.press("enter")
        assert isinstance(app.screen, DatasetScreen)
        assert (app.draft["checkpoint_dir"], app.draft["variant"]) == (str(checkpoint_root), "base")


async def test_counts_of_one_are_singular(checkpoint_root, tmp_path):
    folder = tmp_path / "one"
    write_dataset(folder, count=1, condition_width=TINY.condition_width, seed=7, frames=(9, 12))
    (folder / "notes.txt").write_text("made by hand")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_dataset_step(pilot, checkpoint_root)
        await submit(pilot, "path", str(folder))
        assert text_of(pilot, "summary").splitlines()[0] == "1 valid sample, 1 other file"


async def test_first_start_explains_the_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, CheckpointScreen)
        field = app.screen.query_one("#path", Input)
        assert len(field.placeholder) <= visible_width(field)
        assert str(app.screen.query_one(FolderTree).root.label) == tmp_path.name
        help_text = text_of(pilot, "detail")
        assert "ACE-Step-1.5/checkpoints" in help_text and "acetui demo" in help_text


async def test_picker_widens_with_the_terminal_and_shows_the_end_of_a_chosen_path(tmp_path, monkeypatch):
    deep = tmp_path / "a-rather-long-folder-name" / "with-another-long-name-below-it"
    (deep / "the-chosen-folder").mkdir(parents=True)
    monkeypatch.chdir(deep)  # the tree starts in the working folder when nothing was typed
    app = make_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        assert app.screen.query_one(PathPicker).size.width == 48  # 30 % of 160
        app.screen.query_one(FolderTree).focus()
        await pilot.press("down", "enter")
        await settle(pilot)
        field = app.screen.query_one("#path", Input)
        assert field.value == str(deep / "the-chosen-folder")
        assert field.render_line(0).text[: visible_width(field)].rstrip().endswith("/the-chosen-folder")


async def test_a_missing_folder_shows_its_nearest_existing_parent_in_the_tree(checkpoint_root, tmp_path):
    """Not the earlier pick: the tree shows where the mistyped name would be, and what is really there."""
    (tmp_path / "real").mkdir()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "path", str(checkpoint_root))
        tree = app.screen.query_one(FolderTree)
        assert tree.path == checkpoint_root.resolve()
        missing = tmp_path / "typo" / "checkpoints"
        await submit(pilot, "path", str(missing))
        assert text_of(pilot, "detail") == f"{missing}: folder not found"
        assert tree.path == tmp_path.resolve()


async def test_a_remembered_folder_that_is_gone_opens_the_tree_at_its_nearest_parent(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    save_last({"checkpoint_dir": str(tmp_path / "moved" / "checkpoints")})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "folder not found" in text_of(pilot, "detail")
        assert app.screen.query_one(FolderTree).path == tmp_path


async def test_typing_after_coming_back_to_the_checkpoint_step_edits_the_path(checkpoint_root):
    """Focus comes back to the variants table (arrows still choose a variant); characters go to the path."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_dataset_step(pilot, checkpoint_root)
        await pilot.press("escape")
        table = app.screen.query_one("#variants", DataTable)
        assert isinstance(app.screen, CheckpointScreen) and app.screen.focused is table
        await pilot.press("down")
        assert table.cursor_row == 1
        await pilot.press("2", "x")
        field = app.screen.query_one("#path", Input)
        assert field.value == f"{checkpoint_root}2x" and app.screen.focused is field


async def test_a_path_typed_on_the_table_or_the_tree_replaces_the_old_one(checkpoint_root, tmp_path):
    """A first ``/`` or ``~`` starts a new path: appended, ``/tmp/x`` read as ``<root>/tmp/x``. ctrl+u there
    deletes the path as it does in the input."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "path", str(checkpoint_root))
        field = app.screen.query_one("#path", Input)
        assert app.screen.focused is app.screen.query_one("#variants", DataTable)
        missing = tmp_path / "brokenck"
        await pilot.press(*str(missing), "enter")
        await settle(pilot)
        assert field.value == str(missing) and text_of(pilot, "detail") == f"{missing}: folder not found"
        (await focused_tree(pilot)).focus()
        await pilot.press("~")
        assert field.value == "~" and app.screen.focused is field
        app.screen.query_one("#variants", DataTable).focus()
        await pilot.press("ctrl+u")
        assert field.value == "" and app.screen.focused is field


async def test_a_burst_of_keys_or_a_paste_on_the_tree_arrives_whole(checkpoint_root, dataset_dir):
    """Over SSH typed keys arrive together: those the tree got before the focus moved each started a new path
    at their ``/`` (``/tmp/x/checkpoints`` became ``/checkpoints``); a path pasted on the tree went nowhere."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tree = await focused_tree(pilot)
        field = app.screen.query_one("#path", Input)
        for character in str(checkpoint_root):  # all queued on the tree before the first is handled
            tree.post_message(events.Key(character, character))
        await settle(pilot)
        assert field.value == str(checkpoint_root) and app.screen.focused is field
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.query_one("#variants", DataTable).row_count == 3  # the root's variants
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DatasetScreen)
        (await focused_tree(pilot)).post_message(events.Paste(f"{dataset_dir}\nsecond line"))
        await settle(pilot)
        field = app.screen.query_one("#path", Input)
        assert field.value == str(dataset_dir) and app.screen.focused is field


async def test_the_path_shows_its_end_after_the_terminal_narrows(checkpoint_root, tmp_path):
    """The input kept its scroll from the wider picker, showing the middle of the path."""
    deep = tmp_path / "a-rather-long-folder-name" / "and-another-below-it"
    deep.mkdir(parents=True)
    (deep / "checkpoints").symlink_to(checkpoint_root)
    app = make_app()
    async with app.run_test(size=(120, 35)) as pilot:
        await submit(pilot, "path", str(deep / "checkpoints"))
        assert app.screen.focused is app.screen.query_one("#variants", DataTable)
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        field = app.screen.query_one("#path", Input)
        assert field.render_line(0).text[: visible_width(field)].rstrip().endswith("/checkpoints")


async def test_keys_the_tree_is_bound_to_still_work_there(tmp_path, monkeypatch):
    """Typing on the tree edits the path, but space still opens a folder and backspace goes up."""
    (tmp_path / "top" / "inner").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tree = await focused_tree(pilot)
        await pilot.press("down", "space")
        await until(pilot, lambda: tree.cursor_node is not None and tree.cursor_node.is_expanded, "the folder to open")
        await pilot.press("backspace")
        assert tree.path == tmp_path.parent
        await pilot.press("a")
        assert app.screen.query_one("#path", Input).value == "a"


async def test_a_path_typed_after_the_dataset_scan_replaces_the_one_read(checkpoint_root, dataset_dir, tmp_path):
    """The dataset step kept its path focused with the cursor at the end: a new path typed on coming back to
    it was appended to the one remembered (as the checkpoint step focuses its table, it focuses its pane)."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_dataset_step(pilot, checkpoint_root)
        await submit(pilot, "path", str(dataset_dir))
        assert "6 valid samples" in text_of(pilot, "summary")
        assert app.screen.focused is app.screen.query_one("#problems")
        await pilot.press(*str(tmp_path / "elsewhere"))
        assert app.screen.query_one("#path", Input).value == str(tmp_path / "elsewhere")
