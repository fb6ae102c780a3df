"""Each screen's behaviour at 80x24: cancel, bad datasets, profiles, filter and sort, history, compare."""

from __future__ import annotations

import shutil

import torch
from textual import events
from textual.widgets import DataTable, Input, ProgressBar

from acetui import paths
from acetui.data import write_dataset
from acetui.history import history_record, list_runs
from acetui.model.synthetic import TINY
from acetui.profiles import load_last, profile_path
from acetui.tui.app import make_app
from acetui.tui.screens.checkpoint import CheckpointScreen
from acetui.tui.screens.compare import CompareScreen
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.dataset import DatasetScreen
from acetui.tui.screens.export import ExportScreen
from acetui.tui.screens.history import HistoryScreen
from acetui.tui.screens.keys import KeysScreen
from acetui.tui.screens.parameters import ParametersScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.screens.run import RunScreen
from acetui.tui.widgets.ranking_table import RankingTable
from tests.test_tui_run_flow import palette
from tests.tui_support import (
    SIZE,
    fill,
    open_history,
    open_screen,
    pick_to_parameters,
    record_run,
    settle,
    shown_modules,
    submit,
    to_dataset_step,
)


async def test_cancel_keeps_the_partial_result(checkpoint_root, dataset_dir):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        fill(pilot, batches="5000")
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RunScreen)
        progress = app.screen.query_one(ProgressBar)
        while not progress.progress:
            await pilot.pause(0.05)
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)
        partial = app.screen.source.result
        assert partial.status == "cancelled" and 0 < partial.completed_batches < 5000
        assert "cancelled" in str(app.screen.query_one("#heading").render())
    runs, _ = list_runs()
    assert [(run.run_id, run.status) for run in runs] == [(partial.run_id, "cancelled")]
    assert runs[0].load().completed_batches == partial.completed_batches


async def test_bad_dataset_lists_each_reason_with_its_files(checkpoint_root, dataset_dir, tmp_path):
    """Many truncated files took two wrapped lines each, 8 files a screen; now a reason is one short entry."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for sample in sorted(dataset_dir.glob("*.pt"))[:2]:
        shutil.copy(sample, folder / sample.name)
    head = (folder / "sample_000.pt").read_bytes()[:100]
    for index in range(20):
        (folder / f"bad_{index:02d}.pt").write_bytes(head)
    (folder / "garbage\x1b[2J.pt").write_bytes(b"not a torch file at all")
    torch.save({"target_latents": torch.zeros(3)}, folder / "missing.pt")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_dataset_step(pilot, checkpoint_root)
        await submit(pilot, "path", str(folder))
        summary = str(app.screen.query_one("#summary").render())
        assert "2 valid samples" in summary and "22 invalid" in summary
        problems = app.screen.query_one("#problem-list")
        corrupt = "21 files  not a valid torch file (corrupt, truncated or not written by torch.save)"
        missing = "missing.pt  missing keys 'context_latents', 'encoder_hidden_states'"
        few = "  bad_00.pt, bad_01.pt, bad_02.pt and 18 more"
        assert str(problems.render()).splitlines() == [corrupt, few, missing]
        assert app.screen.query_one("#problems").max_scroll_y == 0  # all of it in view at 80x24
        await pilot.press("ctrl+f")  # every name, to find the files to mend
        every = "  " + ", ".join(f"bad_{index:02d}.pt" for index in range(20)) + ", garbage\\x1b[2J.pt"
        assert str(problems.render()).splitlines() == [corrupt, every, missing]
        await pilot.press("ctrl+f")
        assert len(str(problems.render()).splitlines()) == 3 and "and 18 more" in str(problems.render())
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert isinstance(app.screen, ParametersScreen)


async def test_dataset_screen_says_when_a_manifest_chose_the_samples(checkpoint_root, dataset_dir, tmp_path):
    folder = tmp_path / "listed"
    shutil.copytree(dataset_dir, folder)
    (folder / "manifest.json").write_text('{"samples": ["sample_000.pt", "sample_001.pt"]}')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_dataset_step(pilot, checkpoint_root)
        await submit(pilot, "path", str(folder))
        summary = str(app.screen.query_one("#summary").render())
        assert "2 valid samples" in summary and "manifest.json (2 listed)" in summary and "not used" in summary


async def test_checkpoint_problem_shown_in_place(checkpoint_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(checkpoint_root / "acestep-v15-turbo", root / "acestep-v15-turbo")
    (root / "acestep-v15-base").mkdir()
    (root / "acestep-v15-base" / "config.json").write_text("{ not json")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "path", str(root))
        table = app.screen.query_one("#variants", DataTable)
        assert table.row_count == 2
        table.move_cursor(row=1)
        await pilot.pause()
        assert "base" in str(app.screen.query_one("#detail").render())
        await pilot.press("enter")
        assert isinstance(app.screen, CheckpointScreen)


async def test_profile_save_and_reload(checkpoint_root, dataset_dir):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        fill(pilot, seed="7", top_k="3", batches="auto")
        await pilot.press("ctrl+s")
        await pilot.press(*"mine", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ParametersScreen)
    assert profile_path("mine").is_file()
    app = make_app(profile="mine")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ParametersScreen)
        assert app.screen.query_one("#seed", Input).value == "7"
        assert app.screen.query_one("#batches", Input).value == "auto"
        fill(pilot, seed="8")
        await pilot.press("ctrl+o")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.query_one("#seed", Input).value == "7"


async def test_broken_profile_is_reported_not_fatal():
    path = profile_path("broken")
    path.parent.mkdir(parents=True)
    path.write_text("seed = [unclosed")
    app = make_app(profile="broken")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, CheckpointScreen)
        assert any("broken.toml" in note.message for note in app._notifications)


async def test_last_settings_restored_after_a_run(checkpoint_root, dataset_dir):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        fill(pilot, batches="2", seed="11")
        await pilot.press("ctrl+r")
        await settle(pilot)
    last, problem = load_last()
    assert not problem and last["seed"] == 11
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.screen.query_one("#path", Input).value == str(checkpoint_root)
        assert app.screen.query_one("#variants", DataTable).row_count == 3


async def test_filter_and_sort(checkpoint_root, dataset_dir):
    result = record_run(checkpoint_root, dataset_dir, batches=2, top_k=4)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        table = app.screen.query_one(RankingTable)
        await pilot.press("slash", *"cross_attn")
        assert table.row_count == 16 and all(m.kind == "cross_attn" for m in shown_modules(table))
        app.screen.query_one("#filter", Input).value = r"layers\.(0|3)\.self"
        await pilot.pause()
        assert {(m.layer, m.kind) for m in shown_modules(table)} == {(0, "self_attn"), (3, "self_attn")}
        app.screen.query_one("#filter", Input).value = "q_proj["
        await pilot.pause()
        assert table.row_count == 0
        app.screen.query_one("#filter", Input).value = ""
        await pilot.press("enter")
        assert table.has_focus and table.row_count == 32
        await pilot.press("4")
        chances = [row.stats.p_top_k for row in table.rows_shown()]
        assert chances == sorted(chances, reverse=True) and chances[0] > chances[-1]
        await pilot.press("3")
        values = [m.sensitivity for m in shown_modules(table)]
        assert values == sorted(values, reverse=True)
        await pilot.press("3")
        assert [m.sensitivity for m in shown_modules(table)] == sorted(values)
        await pilot.press("s")
        assert app.screen.score == "fisher"
        await pilot.press("v")
        await pilot.pause()
        assert str(app.screen.query_one("TabbedContent").active) == "heat-map"


async def test_export_error_keeps_the_result(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        await pilot.press("e")
        app.screen.query_one("#path", Input).value = str(tmp_path)
        await pilot.press("enter")
        await pilot.pause()
        assert any("directory" in note.message for note in app._notifications)
        assert isinstance(app.screen, ExportScreen)  # reopened with the path, to correct it
        assert app.screen.query_one("#path", Input).value == str(tmp_path)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ResultsScreen)


async def test_history_compare_and_broken_record(checkpoint_root, dataset_dir):
    record_run(checkpoint_root, dataset_dir, batches=2, seed=1)
    record_run(checkpoint_root, dataset_dir, batches=2, seed=2)
    runs_dir = paths.app_dirs().runs
    (runs_dir / "00000000-broken.json").write_text("{ truncated")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        assert app.screen.query_one("#runs", DataTable).row_count == 2
        assert any("broken" in note.message for note in app._notifications)
        await pilot.press("space", "down", "space", "c")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.query_one("#pairs", DataTable).row_count == 32
        assert "Spearman" in str(app.screen.query_one("#heading").render())
        await pilot.press("escape", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)
    assert (runs_dir / "00000000-broken.json.bad").exists()


async def test_history_deletes_a_run_once_asked_and_keeps_the_others_marks(checkpoint_root, dataset_dir):
    older = record_run(checkpoint_root, dataset_dir, batches=2, seed=1)
    newer = record_run(checkpoint_root, dataset_dir, batches=4, seed=2, stop_after=1)
    runs_dir = paths.app_dirs().runs
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        history, table = await open_history(pilot)
        await pilot.press("down", "space", "up", "d")  # older marked; the cursor on the newer
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == (
            f"Delete run {newer.run_id} (cancelled, 1/4 batches, {dataset_dir.name})? Its record is gone for good."
        )
        await pilot.press("n")
        assert table.row_count == 2 and (runs_dir / f"{newer.run_id}.json").is_file()
        await pilot.press("d", "y")
        await settle(pilot)
        assert app.screen is history and table.row_count == 1
        assert [run.run_id for run in history.runs] == [older.run_id] and history.marked == [older.run_id]
        assert [path.name for path in runs_dir.iterdir()] == [f"{older.run_id}.json"]
        assert any(note.message == f"deleted run {newer.run_id}" for note in app._notifications)
        other = record_run(checkpoint_root, dataset_dir, batches=1, seed=3)  # as another process would
        await palette(pilot, "reload the history")  # off the footer, which it crowded at 80 columns
        await settle(pilot)
        assert [run.run_id for run in history.runs] == [other.run_id, older.run_id]


async def test_history_resumes_a_partial_run(checkpoint_root, dataset_dir):
    partial = record_run(checkpoint_root, dataset_dir, batches=4, stop_after=1)
    assert partial.status == "cancelled"
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+g")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)
        assert app.screen.source.result.run_id == partial.run_id
        assert app.screen.source.result.status == "complete" and app.screen.source.result.completed_batches == 4


async def test_request_opens_prefilled_at_parameters(checkpoint_root, dataset_dir):
    from acetui.estimate import EstimateRequest

    request = EstimateRequest(checkpoint_dir=checkpoint_root, variant="base", dataset_dir=dataset_dir, batches=9)
    app = make_app(request=request)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ParametersScreen)
        assert app.screen.query_one("#batches", Input).value == "9"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, DatasetScreen)
        assert "6 valid samples" in str(app.screen.query_one("#summary").render())


async def test_palette_offers_the_screens_commands(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=1, top_k=4)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        await pilot.press("ctrl+p", *"export: csv")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        target = tmp_path / "ranking.csv"
        app.screen.query_one("#path", Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert target.read_text().splitlines()[0].startswith("rank,module")
        await pilot.press("ctrl+p", *"score relative")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.score == "relative"


async def test_f1_lists_every_key_of_the_screen_its_own_first(checkpoint_root, dataset_dir):
    """Textual's keys panel listed the focused field's editing keys first: at 80x24 the screen's own were cut."""
    result = record_run(checkpoint_root, dataset_dir, batches=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        await pilot.press("f1")
        assert isinstance(app.screen, KeysScreen) and app.screen.title_text == "5 · Results"
        rows = [(key, name) for key, name, _ in app.screen.rows]
        keys = [key for key, _ in rows]
        assert rows[0] == ("s", "Score") and ("e", "Export") in rows and ("y", "Copy") in rows  # y: off the footer
        assert ("o", "Sort") in rows and ("O", "Reverse") in rows  # the ranking table's, which is ours
        assert keys.index("o") > keys.index("esc") and keys[-1] == "^p"  # the screen's, the table's, the app's
        assert "home" not in keys and "r" not in keys  # no field's editing keys; resume: the run is complete
        await pilot.press("f1")
        assert isinstance(app.screen, ResultsScreen)
        await pilot.press("e", "f1")  # a dialog's keys too (app keys do not reach past a dialog otherwise)
        assert isinstance(app.screen, KeysScreen) and app.screen.title_text == "this dialog"
        assert app.screen.rows[0][:2] == ("esc", "Cancel")  # the export dialog's own key first


async def test_history_filters_runs_by_any_of_their_cells(checkpoint_root, dataset_dir, tmp_path):
    """Dozens of runs over several datasets: / narrows the list as typed, enter goes back to the runs (whose
    keys act on what is shown), escape shows every run again and then goes back."""
    other = tmp_path / "vocals"
    write_dataset(other, count=5, condition_width=TINY.condition_width, seed=4, frames=(9, 20))
    stopped = record_run(checkpoint_root, dataset_dir, batches=3, stop_after=1)  # the oldest: the last row
    first = record_run(checkpoint_root, dataset_dir, batches=1)
    vocals = record_run(checkpoint_root, other, batches=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        history, table = await open_history(pilot)
        assert table.row_count == 3 and table.has_focus
        await pilot.press("slash", *"vocals")
        assert [run.run_id for run in history.shown] == [vocals.run_id] and table.row_count == 1
        assert "1 of 3 runs match" in str(history.query_one("#problems").render())
        await pilot.press("enter")  # ends the filter: enter again opens the run shown
        assert table.has_focus and isinstance(app.screen, HistoryScreen)
        await pilot.press("space", "slash", *"drum[", "enter")  # vocals marked; an invalid regex
        notice = str(history.query_one("#problems").render())
        assert "0 of 3 runs match (invalid regex, matching as text)" in notice
        assert "1 marked run hidden by the filter (c compares them)" in notice
        await pilot.press("escape")
        assert table.row_count == 3 and not history.query_one("#filter", Input).value
        await pilot.press("slash", *"cancel", "enter", "r")  # a status; r resumes the run shown, not row 1's
        await settle(pilot)
        resumed = next(screen for screen in app.screen_stack if isinstance(screen, RunScreen))
        assert resumed.estimator.resume.run_id == stopped.run_id != first.run_id


async def test_a_filter_typed_in_a_burst_after_the_slash_is_text_not_commands(checkpoint_root, dataset_dir):
    """Keys sent together (SSH) reached the list before the filter had the focus: "/day" in History deleted
    the highlighted run (d asked, y answered); in Results it copied the target modules (y)."""
    runs = [record_run(checkpoint_root, dataset_dir, batches=1, seed=seed) for seed in (1, 2)]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        history, table = await open_history(pilot)
        for key, character in (("slash", "/"), ("d", "d"), ("a", "a"), ("y", "y")):  # all queued at once
            app.post_message(events.Key(key, character))
        await settle(pilot)
        assert app.screen is history and history.query_one("#filter", Input).value == "day"
        assert all(history_record(run.run_id).is_file() for run in runs)
        results = ResultsScreen(runs[0])
        await open_screen(pilot, results)
        for key, character in (("slash", "/"), ("c", "c"), ("r", "r"), ("y", "y")):
            app.post_message(events.Key(key, character))
        await settle(pilot)
        assert results.query_one("#filter", Input).value == "cry" and app.clipboard == ""
