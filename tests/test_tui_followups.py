"""What a tmux review found after the UX fixes (80x24): Results of a running or resumed run that stayed at an old
batch count (and offered to resume a run being run), a profile save refused as "Cannot run", a profile name
refused by a rule its message did not state, and a palette Screenshot that failed without ~/Downloads."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import DataTable, Input, Static, TabbedContent

from acetui import paths
from acetui.estimate import EstimateRequest
from acetui.estimate.ownership import process_owner
from acetui.estimate.result import record_file
from acetui.history import RunSummary, load_record
from acetui.tui.app import make_app
from acetui.tui.ranking_source import ranking_source
from acetui.tui.screens.history import HistoryScreen
from acetui.tui.screens.profile import ProfileScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.screens.run import RunScreen
from acetui.tui.widgets.ranking_table import RankingTable
from tests.test_tui_run_flow import heading, key_label, notified, palette
from tests.tui_support import SIZE, open_screen, record_run, settle, start_long_run, wait_for


def last_notice(app):
    return list(app._notifications)[-1]


def highlighted(table: RankingTable) -> str:
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


async def test_results_of_a_running_run_follow_it_keep_the_view_and_offer_resume_once_it_stopped(
    checkpoint_root, dataset_dir
):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run = await start_long_run(pilot, checkpoint_root, dataset_dir)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and bool(app.screen.runs))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
        results, run_id = app.screen, run.run_id
        assert results.source.result.run_id == run_id and "(running)" in heading(app)
        assert "r" not in results.active_bindings  # the app is running it: resuming it is no choice
        table = results.query_one(RankingTable)
        results.query_one("#filter", Input).value = "cross_attn"
        await pilot.press("o", "down", "down", "right")
        # a batch shown resets both without the screen keeping them, often before the keys are handled
        await wait_for(pilot, lambda: table.cursor_row == 2 and table.scroll_x > 0)
        order, module, scrolled, shown = table.order, highlighted(table), table.scroll_x, heading(app)
        await wait_for(pilot, lambda: heading(app) != shown)  # a later batch, with no key pressed
        assert "(running)" in heading(app) and table.row_count == 16
        assert table.order == order and highlighted(table) == module
        results.show_view("summary")
        run.estimator.cancel()
        await wait_for(pilot, lambda: "(cancelled)" in heading(app))
        await settle(pilot)
        stopped = results.source.result
        assert f"{len(stopped.included_batches)} of 5000 batches (cancelled)" in heading(app)
        assert results.query_one(TabbedContent).active == "summary" and table.row_count == 16
        assert highlighted(table) == module and table.scroll_x == scrolled
        assert key_label(app, "r") == "Resume"


async def test_results_left_for_a_resumed_run_show_it_as_it_stopped(checkpoint_root, dataset_dir):
    """Going back to the Results that resumed the run: the batches the resumed run added, not the old ranking
    that `e` would otherwise export."""
    stopped = record_run(checkpoint_root, dataset_dir, batches=5000, top_k=4, stop_after=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        old = ResultsScreen(stopped, "grad-norm")
        await open_screen(pilot, old)
        assert "1 of 5000 batches (cancelled)" in heading(app)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.result is None)
        run = app.screen
        await wait_for(pilot, lambda: len(run.losses) >= 3)
        await pilot.press("escape")
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen) and app.screen is not old)
        resumed = app.screen.source.result
        assert resumed.run_id == stopped.run_id and len(resumed.included_batches) > 1
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert app.screen is old
        assert f"{len(resumed.included_batches)} of 5000 batches (cancelled)" in heading(app)
        assert [item.module for item in old.ranking] == [
            item.module for item in ranking_source(resumed).ranking("grad-norm")
        ]
        assert key_label(app, "r") == "Resume"


async def test_results_of_a_record_left_running_by_a_gone_process_say_interrupted(checkpoint_root, dataset_dir):
    """History already said "interrupted" for such a record; its Results heading said "(running)"."""
    stopped = record_run(checkpoint_root, dataset_dir, batches=5000, top_k=4, stop_after=1)
    path = record_file(paths.app_dirs().runs, stopped.run_id)
    data = json.loads(path.read_text())
    data["status"], data["metadata"]["owner"] = "running", process_owner()  # this process, which does not run it
    path.write_text(json.dumps(data))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(load_record(path), "grad-norm"))
        assert "1 of 5000 batches (interrupted)" in heading(app)
        assert key_label(app, "r") == "Resume"


async def test_history_keeps_the_cursor_on_the_run_the_user_opened(checkpoint_root, dataset_dir):
    """Back from a run's Results the history is read again: the table was refilled with the cursor on the
    first row, so the next enter opened another run than the one the user had moved to."""
    for seed in range(3):
        record_run(checkpoint_root, dataset_dir, batches=1, seed=seed)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, HistoryScreen())
        history = app.screen
        await pilot.press("down", "down")
        chosen = history.current().run_id
        assert chosen != history.runs[0].run_id
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is history and history.current().run_id == chosen
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
        assert app.screen.source.result.run_id == chosen


async def test_history_lists_summaries_and_opens_each_run_as_its_record_is_now(checkpoint_root, dataset_dir):
    """History held every run whole (a long run's norms are tens of MB once read, hundreds of runs took GBs):
    it lists summaries and reads a run's record when it is opened, so a record gone since says so."""
    kept, gone = (record_run(checkpoint_root, dataset_dir, batches=1, seed=seed) for seed in range(2))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, HistoryScreen())
        history = app.screen
        assert all(isinstance(run, RunSummary) for run in history.runs)
        record_file(paths.app_dirs().runs, gone.run_id).unlink()
        history.query_one(DataTable).move_cursor(row=[run.run_id for run in history.runs].index(gone.run_id))
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is history and last_notice(app).title == "Cannot read the run"
        assert gone.run_id in last_notice(app).message
        history.query_one(DataTable).move_cursor(row=[run.run_id for run in history.runs].index(kept.run_id))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
        assert app.screen.source.result.batches == kept.batches


async def test_a_run_new_to_history_is_added_alone_and_an_empty_one_says_so(checkpoint_root, dataset_dir):
    """Each save of a run not listed yet read the whole history again (seconds with many long runs, and
    restarted at every save); while nothing is listed the screen said nothing at all."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, HistoryScreen())
        history = app.screen
        assert str(history.query_one("#problems", Static).render()) == "No runs recorded yet."
        older = record_run(checkpoint_root, dataset_dir, batches=1, seed=1)
        history.action_reload()
        assert str(history.query_one("#problems", Static).render()) == "reading the run history ..."
        await settle(pilot)
        reading = history.reader
        newer = record_run(checkpoint_root, dataset_dir, batches=1, seed=2)
        history.reload_run(newer.run_id)
        await settle(pilot)
        assert history.reader is reading  # no second reading of the whole history
        assert [run.run_id for run in history.runs] == [newer.run_id, older.run_id]
        table = history.query_one(DataTable)
        assert [row.value for row in table.rows] == [newer.run_id, older.run_id]
        assert not history.query_one("#problems", Static).display


async def test_a_refused_profile_name_is_told_the_rule_it_broke(checkpoint_root, dataset_dir):
    app = make_app(EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=1, device="cpu"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+s", ".", ".", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ProfileScreen)
        assert "start with a letter or digit" in last_notice(app).message


async def test_palette_screenshot_is_saved_in_the_current_folder_without_a_downloads_folder(
    tmp_path, monkeypatch, checkpoint_root, dataset_dir
):
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/Downloads, as on a server
    monkeypatch.chdir(here)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await palette(pilot, "screenshot")
        await wait_for(pilot, lambda: notified(app, "screenshot"), timeout=10)
        [written] = here.glob("*.svg")
        assert notified(app, f"Saved screenshot to [$text-success]{str(written)!r}")
        assert Path(written).read_text().startswith("<svg")
