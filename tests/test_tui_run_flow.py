"""A run inside the app and what the user sees around it: History while it runs, how it ends, its warnings in
the results, the results filter and sort feedback, the command palette and the compare sort (80x24)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from dataclasses import replace

import torch
from textual.widgets import DataTable, Input, ProgressBar, Sparkline, Static

from acetui import paths
from acetui.data import write_dataset
from acetui.estimate import BatchDone, EstimateRequest, StageProgress
from acetui.estimate.compare import log_distance
from acetui.estimate.imported import load_ranking
from acetui.estimate.memory import memory_stats
from acetui.estimate.stats import MIN_BATCHES
from acetui.model.synthetic import TINY
from acetui.tui.app import make_app
from acetui.tui.ranking_source import ranking_source
from acetui.tui.screens import run as run_screen
from acetui.tui.screens.compare import CompareScreen
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.history import HistoryScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.screens.run import RunScreen
from acetui.tui.widgets.ranking_table import RankingTable
from acetui.tui.widgets.run_summary import RunSummary
from tests.support import PYTHON, REPO, estimate_args, subprocess_env, subprocess_runs_dir
from tests.test_engine_records import _wait_until_running
from tests.tui_support import SIZE, open_screen, record_run, settle, start_long_run, two_runs, wait_for


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def notified(app, words: str) -> bool:
    return any(words in note.message for note in app._notifications)


def key_label(app, key: str) -> str:
    """What the footer says ``key`` does on the current screen."""
    return app.screen.active_bindings[key].binding.description


async def palette(pilot, query: str) -> None:
    """Run the palette's best match for ``query`` (typed at once: a key press waits for an idle app, which a
    running estimator seldom leaves)."""
    await pilot.press("ctrl+p")
    pilot.app.screen.query_one(Input).value = query
    await pilot.pause(0.5)
    await pilot.press("enter")
    await pilot.pause()


async def test_history_during_a_run_follows_it_and_never_resumes_or_deletes_it(checkpoint_root, dataset_dir):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run = await start_long_run(pilot, checkpoint_root, dataset_dir)
        assert key_label(app, "escape") == "Stop…"  # escape asks to stop a running run, so it says so
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and bool(app.screen.runs))
        history, run_id = app.screen, app.screen.runs[0].run_id
        assert key_label(app, "enter") == "Open"
        table = history.query_one("#runs", DataTable)
        shown = str(table.get_cell(run_id, "batches"))
        await wait_for(pilot, lambda: str(table.get_cell(run_id, "batches")) != shown)  # no ctrl+l needed
        await pilot.press("r")
        await pilot.pause()
        assert app.screen is history and notified(app, f"run {run_id} is running now")
        assert [type(screen) for screen in app.screen_stack].count(RunScreen) == 1
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: notified(app, f"run {run_id} is still running (pid "))
        assert app.screen is history and run_id in [shown.run_id for shown in history.runs]
        assert (paths.app_dirs().runs / f"{run_id}.json").is_file()
        run.estimator.cancel()  # the run ends while History is in front
        await settle(pilot)
        assert app.screen is history and notified(app, "open it from History or the Run screen")
        assert str(table.get_cell(run_id, "status")) == "cancelled"
        await pilot.press("escape")
        assert app.screen is run and "enter opens the results" in text(run, "#stage")
        assert key_label(app, "escape") == "Back" and "ETA" not in text(run, "#stats")
        assert key_label(app, "enter") == "Results"  # as History's enter opens a run's results
        await pilot.press("enter")
        assert isinstance(app.screen, ResultsScreen) and app.screen.source.result.run_id == run_id


async def test_history_footer_opens_and_resume_says_a_run_is_complete(checkpoint_root, dataset_dir):
    done = record_run(checkpoint_root, dataset_dir, batches=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert key_label(app, "enter") == "Open"  # the table's own enter binding hid it from the footer
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen) and notified(app, f"run {done.run_id} is complete")


def heading(app) -> str:
    return str(app.screen.query_one("#heading").render())


async def test_a_stopped_runs_results_say_how_far_it_got_and_r_resumes_it(checkpoint_root, dataset_dir):
    stopped = record_run(checkpoint_root, dataset_dir, batches=4, top_k=4, stop_after=1)
    complete = record_run(checkpoint_root, dataset_dir, batches=1, top_k=4)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(complete, "grad-norm"))
        assert "r" not in app.screen.active_bindings and "1 batches" in heading(app)
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)  # a complete run has nothing to resume
        await open_screen(pilot, ResultsScreen(stopped, "grad-norm"))
        assert "1 of 4 batches (cancelled)" in heading(app)
        assert key_label(app, "r") == "Resume"
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen) and app.screen.source.result.run_id == stopped.run_id
        resumed = app.screen.source.result
        assert resumed.status == "complete" and len(resumed.batches) == 4
        assert "4 batches" in heading(app) and "of 4" not in heading(app) and "r" not in app.screen.active_bindings


async def test_finished_auto_run_shows_it_stopped_and_no_eta(checkpoint_root, dataset_dir):
    request = EstimateRequest(
        checkpoint_root, "turbo", dataset_dir, top_k=16, auto_batches=True, max_batches=50, stability_target=0.01
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run = RunScreen(request)
        await open_screen(pilot, run)
        result = app.screen.source.result
        assert result.metadata["stop_reason"] == "stable" and result.completed_batches < 50
        progress = run.query_one(ProgressBar)
        assert progress.percentage == 1.0
        stats = text(run, "#stats")
        assert f"stopped: stable after {result.completed_batches} batches" in stats and "ETA" not in stats


async def test_failed_run_stops_its_progress_bar(checkpoint_root, tmp_path):
    request = EstimateRequest(checkpoint_root, "turbo", tmp_path, auto_batches=True, top_k=4)  # no samples
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run = RunScreen(request)
        await open_screen(pilot, run)
        assert app.screen is run and "failed" in text(run, "#stage")
        progress = run.query_one(ProgressBar)
        assert not progress.display and progress.total is None  # nothing left spinning
        assert text(run, "#stability") == f"top-4 stability: from batch {MIN_BATCHES} on; stops at 0.9"
        assert key_label(app, "escape") == "Back"


async def test_a_run_stopped_while_setting_up_says_so_and_leaves_no_record(checkpoint_root, dataset_dir):
    """Reading a 4.8 GB checkpoint or thousands of samples takes minutes: the stage line counts them, and
    a stop asked meanwhile ends the run there, before its first batch, with nothing to keep or resume."""
    run = RunScreen(EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=3))
    forward, scanning, go_on = run.estimator.on_event, threading.Event(), threading.Event()

    def held_in_the_scan(event) -> None:  # the engine thread waits at its first file, as on a slow disk
        forward(event)
        if isinstance(event, StageProgress) and event.unit == "files":
            scanning.set()
            go_on.wait(30)

    run.estimator.on_event = held_in_the_scan
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(run)
        await wait_for(pilot, lambda: scanning.is_set() and "0 of 6 files" in text(run, "#stage"))
        assert text(run, "#stage") == f"scanning {dataset_dir} ... 0 of 6 files"
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Stop setting up the run? No batch has run yet."
        await pilot.press("y")
        assert text(run, "#stage") == "stopping the setup ..."
        go_on.set()
        await wait_for(pilot, lambda: not run.running)
        assert text(run, "#stage") == "cancelled while setting up, before the first batch: nothing to keep"
        assert not run.query_one(ProgressBar).display and key_label(app, "escape") == "Back"
        assert list(paths.app_dirs().runs.glob("*.json")) == []


def _batch(index: int, loss: float) -> BatchDone:
    memory = memory_stats(torch.device("cpu"))
    return BatchDone(index, 100, loss, loss, "", 1.0, 0.01, 100.0, 1.0, memory, saved=False)


async def test_a_fast_runs_progress_is_shown_at_most_ten_times_a_second_and_its_last_batch_at_the_end(
    checkpoint_root, tmp_path, monkeypatch
):
    """Showing every batch took the UI thread as long as a tiny model's batch (the app ran at half the CLI's
    speed); the batches are all counted at once, the latest shown when the interval is up or the run ends."""
    monkeypatch.setattr(run_screen, "SHOW_INTERVAL", 1.0)  # two calls in a row fall inside it even under load
    request = EstimateRequest(checkpoint_root, "turbo", tmp_path, batches=100)  # no samples: fails at once
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run = RunScreen(request)
        await open_screen(pilot, run)
        progress = run.query_one(ProgressBar)
        run.batch_done(_batch(0, 1.0))
        run.batch_done(_batch(1, 2.0))  # within the interval: counted, not yet shown
        assert run.losses == [1.0, 2.0] and progress.progress == 1
        await wait_for(pilot, lambda: progress.progress == 2, timeout=5)
        assert "batch 2/100" in text(run, "#stats")
        run.batch_done(_batch(2, 3.0))
        run.batch_done(_batch(3, 4.0))
        run.show_outcome(None)  # the run ends: its last batch is shown now, not by a timer after the outcome
        assert progress.progress == 4 and run.show_timer is None
        assert list(run.query_one(Sparkline).data) == [1.0, 2.0, 3.0, 4.0]


async def test_results_show_the_runs_warnings(checkpoint_root, dataset_dir, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(sorted(dataset_dir.glob("*.pt"))[0], folder)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, RunScreen(EstimateRequest(checkpoint_root, "turbo", folder, batches=2, top_k=4)))
        assert isinstance(app.screen, ResultsScreen)
        warning = app.screen.source.result.metadata["warnings"][0]
        assert "only 1 valid samples" in warning
        assert app.screen.query_one("#warnings").display and "only 1 valid samples" in text(app.screen, "#warnings")
        assert warning in str(app.screen.query_one(RunSummary).render())


async def test_results_filter_and_sort_say_what_they_do(checkpoint_root, dataset_dir):
    result = record_run(checkpoint_root, dataset_dir, batches=2, top_k=4)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = ResultsScreen(result)
        await open_screen(pilot, screen)
        table = screen.query_one(RankingTable)
        assert text(screen, "#table-status") == "32 modules · sorted by rank ▲"
        await pilot.press("slash", *"layers.(1")
        await pilot.pause()
        assert text(screen, "#table-status").startswith("invalid regex, matching as text · 0 of 32 modules")
        await pilot.press("enter")  # back in the table, empty as it is: escape there clears the filter
        assert table.has_focus and table.row_count == 0 and key_label(app, "escape") == "Clear filter"
        await pilot.press("slash")
        screen.query_one("#filter", Input).value = "cross_attn"
        await pilot.pause()
        assert text(screen, "#table-status").startswith("16 of 32 modules")
        await pilot.press("enter")  # keeps the filter, back in the table
        assert table.has_focus and table.row_count == 16 and key_label(app, "escape") == "Clear filter"
        await pilot.press("escape")
        await pilot.pause()
        assert screen.query_one("#filter", Input).value == "" and table.row_count == 32 and table.has_focus
        assert key_label(app, "escape") == "Back"
        await pilot.press(*"o" * 7)  # 95 % CI: scrolled off to the right at 80 columns
        await pilot.pause()
        assert text(screen, "#table-status").endswith("sorted by 95 % CI (low end) ▼")
        await pilot.press("O")
        await pilot.pause()
        assert text(screen, "#table-status").endswith("sorted by 95 % CI (low end) ▲")
        await pilot.press("escape")
        assert app.screen is not screen


async def test_palette_offers_each_screens_actions(checkpoint_root, dataset_dir):
    partial = record_run(checkpoint_root, dataset_dir, batches=3, stop_after=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        results = ResultsScreen(partial)
        await open_screen(pilot, results)
        await palette(pilot, "sort by P(top-k)")
        assert results.query_one(RankingTable).order.index == 3
        await palette(pilot, "filter")
        assert results.query_one("#filter", Input).has_focus
        results.query_one(RankingTable).focus()
        await palette(pilot, "copy")
        assert app.clipboard == results.targets
        await pilot.press("escape")
        await pilot.press("ctrl+g")
        await settle(pilot)
        await palette(pilot, "resume")
        await settle(pilot)
        resumed = app.screen.source.result
        assert isinstance(app.screen_stack[-2], RunScreen)
        assert (resumed.run_id, resumed.status) == (partial.run_id, "complete")
        await start_long_run(pilot, checkpoint_root, dataset_dir)
        await palette(pilot, "stop")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)


async def test_compare_sorts_the_biggest_differences_first(checkpoint_root, dataset_dir):
    first, second = two_runs(checkpoint_root, dataset_dir)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = CompareScreen(first, second)
        await open_screen(pilot, screen)
        table = screen.query_one("#pairs", DataTable)
        by_module = {change.module: change for change in screen.comparison.modules}

        def shown() -> list:
            return [by_module[row.key.value] for row in table.ordered_rows]

        assert [change.rank_a for change in shown()] == sorted(change.rank_a for change in shown())
        await pilot.press("o")
        changes = [abs(change.rank_change) for change in shown()]
        assert changes == sorted(changes, reverse=True) and changes[0] > 0
        assert shown() == screen.comparison.most_different(len(by_module))  # the CLI's order, one rule
        assert "sorted by rank change ▼" in text(screen, "#heading")
        await pilot.press("o")
        distances = [log_distance(change.ratio) for change in shown()]
        assert distances == sorted(distances, reverse=True)
        await pilot.press("O")
        assert [log_distance(change.ratio) for change in shown()] == sorted(distances)
        assert "sorted by ratio ▲" in text(screen, "#heading")


async def test_history_does_not_resume_a_run_another_process_is_running(
    tmp_path, checkpoint_root, dataset_dir, isolated_app_dirs, monkeypatch
):
    runs = subprocess_runs_dir(tmp_path)
    monkeypatch.setattr(paths, "app_dirs", lambda: replace(isolated_app_dirs, data=runs.parent))
    command = [*PYTHON, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "100000")]
    process = subprocess.Popen(
        command, cwd=REPO, env=subprocess_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        run_id = _wait_until_running(runs, process).stem
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+g")
            await settle(pilot)
            assert app.screen.runs[0].run_id == run_id
            await pilot.press("r")
            await settle(pilot)
            refusal = f"run {run_id} is still running (pid {process.pid} on host {socket.gethostname()})"
            assert isinstance(app.screen, HistoryScreen) and notified(app, refusal)
    finally:
        process.kill()
        process.wait()


async def test_results_warn_when_effective_ranks_cannot_be_had(tmp_path, checkpoint_root, dataset_dir):
    """The fisher map would say -1 for every module: the user is told why, not left to find out."""
    root = tmp_path / "checkpoints"
    shutil.copytree(checkpoint_root / "acestep-v15-turbo", root / "acestep-v15-turbo")
    done = record_run(root, dataset_dir, batches=1)
    shutil.rmtree(root)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(done))
        assert notified(app, "effective ranks unknown (") and notified(app, "effective_rank is -1")


async def test_compare_with_an_export_starts_at_its_score_and_warns_when_scores_mix(checkpoint_root, dataset_dir):
    run = record_run(checkpoint_root, dataset_dir, batches=2)
    exported = ranking_source(run).write("json", paths.app_dirs().runs / "f.json", "fisher", None, force=False)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, CompareScreen(run, load_ranking(exported), "grad-norm"))
        heading = str(app.screen.query_one("#heading", Static).render())
        assert app.screen.score == "fisher" and "Spearman +1.000" in heading and "mix" not in heading
        await pilot.press("s")
        await settle(pilot)
        heading = str(app.screen.query_one("#heading", Static).render())
        assert app.screen.score == "relative"
        assert "B is ranked by fisher, not relative: the ratios mix two scores" in heading


async def test_compare_says_when_two_rankings_share_no_modules(checkpoint_root, dataset_dir, tmp_path):
    """Instead of "top-0 overlap nan%": e.g. a run against a file that names other modules."""
    run = record_run(checkpoint_root, dataset_dir, batches=2)
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"module": "encoder.layers.0.q_proj", "sensitivity": 1.0}]))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, CompareScreen(run, load_ranking(other)))
        heading = str(app.screen.query_one("#heading", Static).render())
        assert "share no modules" in heading and "nan" not in heading


async def test_compare_ranks_the_runs_by_layer_or_by_module_to_line_them_up(checkpoint_root, dataset_dir):
    """A layer ranking against a module one shared nothing, and the way out was a terminal command."""
    by_layer = record_run(checkpoint_root, dataset_dir, batches=2, granularity="layer")
    by_module = record_run(checkpoint_root, dataset_dir, batches=2, seed=2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        compare = CompareScreen(by_layer, by_module)
        await open_screen(pilot, compare)
        table = compare.query_one("#pairs", DataTable)
        assert table.row_count == 0
        assert "A ranks layers and B modules: g ranks the runs by layer or by module" in text(compare, "#heading")
        assert key_label(app, "g") == "Units"
        await pilot.press("g")
        assert table.row_count == 8 and "8 shared modules, grad-norm, runs by layer" in text(compare, "#heading")
        assert compare.comparison.modules[0].module.rsplit(".", 1)[-1] in {"self_attn", "cross_attn"}
        await pilot.press("g")
        assert table.row_count == 32 and "runs by module" in text(compare, "#heading")
        await pilot.press("g")
        assert table.row_count == 0  # each by its own again


async def test_the_run_log_wraps_again_when_the_terminal_narrows(checkpoint_root, tmp_path):
    """Its lines were wrapped once, as written: at a narrower width they were cut ("... fewer than")."""
    folder = tmp_path / "few"
    write_dataset(folder, count=3, condition_width=TINY.condition_width, seed=2, frames=(9, 12))
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        run = RunScreen(EstimateRequest(checkpoint_root, "turbo", folder, batches=1))
        await open_screen(pilot, run)
        await pilot.press("escape")  # the results the finished run opened
        log = run.query_one("#log")
        warning = next(text for text in log.texts if "is unreliable" in text)
        assert len(warning) > 80
        await pilot.resize_terminal(80, 30)
        await settle(pilot)
        width = log.scrollable_content_region.width
        assert width < len(warning) and all(line.cell_length <= width for line in log.lines)
        shown = " ".join(line.text.strip() for line in log.lines)
        assert " ".join(warning.split()) in " ".join(shown.split())


async def test_the_stop_question_follows_the_run_it_asks_about(checkpoint_root, dataset_dir):
    """Asked while setting up, it kept saying "No batch has run yet" over batches, and stayed open after the
    run ended (whose results then did not open: the question was in front)."""
    run = RunScreen(EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=3))
    forward, gates = run.estimator.on_event, {"files": threading.Event(), "batch": threading.Event()}
    reached = {name: threading.Event() for name in gates}

    def held(event) -> None:
        forward(event)
        name = "files" if isinstance(event, StageProgress) else "batch" if isinstance(event, BatchDone) else None
        if name is not None and not reached[name].is_set():
            reached[name].set()
            gates[name].wait(30)

    run.estimator.on_event = held
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(run)
        await wait_for(pilot, reached["files"].is_set)
        await pilot.press("escape")
        question = app.screen
        assert isinstance(question, ConfirmScreen) and question.question.startswith("Stop setting up the run?")
        gates["files"].set()
        await wait_for(pilot, lambda: reached["batch"].is_set() and run.planned is not None)
        assert question.question.startswith("Stop the run after the current batch?")
        assert str(question.query_one("#question").render()) == question.question
        gates["batch"].set()
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
        await settle(pilot)
        assert question not in app.screen_stack and app.screen_stack[-2] is run
