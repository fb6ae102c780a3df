"""What a UX review at 80x24 found: the module column scrolled out of view, a heat map without a legend,
ctrl+q ending a running run without asking (80x24)."""

from __future__ import annotations

import json
import time

from textual.widgets import DataTable, ProgressBar

from acetui import paths
from acetui.cli import _app_ended
from acetui.estimate import rank_modules
from acetui.estimate.imported import load_ranking
from acetui.tui.app import make_app
from acetui.tui.screens.compare import CompareScreen
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.history import HistoryScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.widgets.heat_map import COLD, HOT, HeatMap
from acetui.tui.widgets.ranking_table import RankingTable, short_module
from tests.tui_support import SIZE, open_screen, record_run, shown_modules, start_long_run, two_runs, wait_for


def cursor_line(table: DataTable) -> str:
    """The text the table shows on its cursor row, after the header."""
    return table.render_line(table.header_height + table.cursor_row - round(table.scroll_y)).text


async def scrolled_right(pilot, table: DataTable) -> str:
    """The cursor row's text once the table is scrolled as far right as it goes."""
    table.focus()
    await pilot.press("down", "down")
    table.scroll_to(x=table.max_scroll_x, animate=False)
    await pilot.pause()
    assert table.scroll_x > 0  # too wide for 80 columns, so it did scroll
    return cursor_line(table)


async def test_module_names_stay_in_view_when_tables_scroll_right(checkpoint_root, dataset_dir):
    first, second = two_runs(checkpoint_root, dataset_dir)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        results = ResultsScreen(first)
        await open_screen(pilot, results)
        table = results.query_one(RankingTable)
        line = await scrolled_right(pilot, table)
        assert short_module(shown_modules(table)[table.cursor_row].module) in line
        compare = CompareScreen(first, second)
        await open_screen(pilot, compare)
        pairs = compare.query_one("#pairs", DataTable)
        line = await scrolled_right(pilot, pairs)
        assert short_module(pairs.ordered_rows[pairs.cursor_row].key.value) in line


async def test_the_last_step_right_starts_the_view_with_a_whole_column_too(checkpoint_root, dataset_dir):
    """It stopped where the view ended with the last column, and blanked the column the fixed ones cut: History at
    80 columns read "run  [blank]  variant dataset batches", as if those values were empty."""
    run = record_run(checkpoint_root, dataset_dir, batches=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        history = HistoryScreen()
        await open_screen(pilot, history)
        table = history.query_one("#runs", DataTable)
        table.focus()
        for _ in range(8):  # more than the columns: the last steps change nothing
            await pilot.press("right")
        line = cursor_line(table)
        assert line.split() == [run.run_id, "turbo", dataset_dir.name, "1/1"]  # the last columns that fit
        assert line.index("turbo") - line.index(run.run_id) - len(run.run_id) == 2  # no gap
        await pilot.press("left")
        assert cursor_line(table).split()[1] == history.runs[0].top  # one whole column back
    async with make_app().run_test(size=(200, 24)) as pilot:  # all fits: nothing to scroll
        history = HistoryScreen()
        await open_screen(pilot, history)
        assert history.query_one("#runs", DataTable).max_scroll_x == 0


def legend_line(screen) -> tuple[str, str]:
    """The heat map's first line: its text, and the background colours of its cells, one per character."""
    strip = screen.query_one(HeatMap).render_line(0)
    return strip.text, " ".join(segment.style.bgcolor.name for segment in strip for _ in segment.text)


async def test_heat_map_has_a_legend_of_its_colour_scale(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=1)
    hottest = max(module.share for module in rank_modules(result))
    partial = tmp_path / "partial.json"  # one layer lacks a projection: its cell shows "-"
    partial.write_text(json.dumps([
        {"module": "decoder.layers.0.self_attn.q_proj", "sensitivity": 3.0},
        {"module": "decoder.layers.0.self_attn.k_proj", "sensitivity": 1.0},
        {"module": "decoder.layers.1.self_attn.q_proj", "sensitivity": 1.0},
    ]))  # fmt: skip
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        await pilot.press("v")
        await pilot.pause()
        text, colours = legend_line(app.screen)
        assert text.strip() == f"share of the total in %: 0.0 {' ' * 12} {hottest * 100:.1f}"
        scale = [COLD.blend(HOT, step / 11).hex.lower() for step in range(12)]  # cold to hot, left to right
        assert f"{scale[0]} {scale[1]}" != f"{scale[-2]} {scale[-1]}" and " ".join(scale) in colours
        await open_screen(pilot, ResultsScreen(load_ranking(partial)))
        await pilot.press("v")
        await pilot.pause()
        text, _ = legend_line(app.screen)
        assert text.strip().endswith("60.0   - no score")


async def test_quitting_during_a_run_asks_and_keeps_its_partial_result(checkpoint_root, dataset_dir, capsys):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run = await start_long_run(pilot, checkpoint_root, dataset_dir)
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ConfirmScreen) and "partial result is kept" in app.screen.question
        await pilot.press("n")
        done = run.query_one(ProgressBar).progress
        await wait_for(pilot, lambda: run.query_one(ProgressBar).progress > done)  # the run goes on
        assert app.is_running and app.screen is run and run.running
        await pilot.press("escape")  # the Run screen's own question, "Stop the run?" ...
        assert isinstance(app.screen, ConfirmScreen) and "Stop the run" in app.screen.question
        await pilot.press("ctrl+q")  # ... gives way to the quit question: never two dialogs stacked
        await pilot.pause()
        assert "partial result is kept" in app.screen.question and app.screen_stack[-2] is run
        await pilot.press("y")
        await pilot.pause()
        assert not app.is_running
    assert app.return_value == [run.run_id]  # the CLI names it, with the command that resumes it:
    assert _app_ended(app.return_value) == 0
    resume = f"acetui: run {run.run_id} stops after its current batch; resume with: acetui resume {run.run_id}\n"
    assert capsys.readouterr().err == resume
    record = paths.app_dirs().runs / f"{run.run_id}.json"
    deadline = time.monotonic() + 60
    while json.loads(record.read_text())["status"] == "running":  # the batch under way finishes first
        assert time.monotonic() < deadline, "the run was not stopped"
        time.sleep(0.1)
    saved = json.loads(record.read_text())
    assert saved["status"] == "interrupted" and saved["batches"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:  # with no run running, ctrl+q quits at once, as before
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running
    assert app.return_value == [] and _app_ended(app.return_value) == 0 and capsys.readouterr().err == ""
