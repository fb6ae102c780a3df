"""The whole app driven by Pilot on the tiny checkpoint fixtures: pick, scan, set, run, rank, export."""

from __future__ import annotations

import json

from textual.widgets import Input

from acetui.history import list_runs
from acetui.tui.app import make_app
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.widgets.ranking_table import RankingTable
from tests.tui_support import SIZE, fill, pick_to_parameters, settle


async def test_whole_flow_to_export(checkpoint_root, dataset_dir, tmp_path):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        fill(pilot, batches="3", top_k="4")
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)
        result = app.screen.source.result
        assert result.status == "complete" and result.completed_batches == 3
        assert app.screen.query_one(RankingTable).row_count == 32
        target = tmp_path / "out" / "ranking.json"
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#path", Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ResultsScreen)
        entries = json.loads(target.read_text())
        assert len(entries) == 32 and sum(entry["top_k"] for entry in entries) == 4
        assert entries[0]["module"] == app.screen.ranking[0].module
        await pilot.press("y")
        assert app.clipboard == app.screen.targets
    runs, problems = list_runs()
    assert [run.status for run in runs] == ["complete"] and not problems


async def test_a_run_goes_ahead_when_its_settings_cannot_be_remembered(checkpoint_root, dataset_dir, isolated_app_dirs):
    """ctrl+r saves the settings for the next start first; a config folder that cannot be written (here a
    file in its place) ended the app with a traceback."""
    isolated_app_dirs.config.write_text("a file where the config folder goes")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        fill(pilot, batches="2")
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen) and app.screen.source.result.status == "complete"
        (notice,) = [n for n in app._notifications if n.title == "Settings not remembered"]
        assert notice.message == f"{isolated_app_dirs.last_settings}: cannot write (Not a directory)"
