"""What a second UX walk in tmux found at 80x24: History cut the top module to "lay" and scrolled the run id
out of view, a broken checkpoint's reason ran under a scrollbar no key reaches, and the closed device list
said "auto" rather than what it stands for after a profile was loaded."""

from __future__ import annotations

import shutil

from textual.containers import VerticalScroll
from textual.widgets import DataTable, Select, Static
from textual.widgets._select import SelectCurrent

from acetui.data import write_dataset
from acetui.estimate import EstimateRequest
from acetui.model.synthetic import TINY
from acetui.model.variants import CONFIG_FILE
from acetui.profiles import save_profile, settings_of
from acetui.tui.app import make_app
from acetui.tui.screens.history import HistoryScreen
from tests.test_tui_results_review import cut_words, shown_lines
from tests.tui_support import SIZE, open_screen, record_run, settle


async def test_history_keeps_the_run_id_and_shows_the_top_module_at_80_columns(checkpoint_root, tmp_path):
    dataset = tmp_path / "a-dataset-with-a-long-name"
    write_dataset(dataset, count=2, condition_width=TINY.condition_width, seed=4, frames=(9, 30))
    runs = [
        record_run(checkpoint_root, dataset, auto_batches=True, max_batches=12),  # batches "N (auto, max 12)"
        record_run(checkpoint_root, dataset, batches=3, stop_after=1),
    ]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, HistoryScreen())
        table = app.screen.query_one("#runs", DataTable)
        lines = shown_lines(table)
        for run in runs:
            top = str(table.get_cell(run.run_id, "top"))
            assert any(run.run_id in line and f" {top} " in line for line in lines), (top, lines)
        for _ in range(len(table.columns)):
            await pilot.press("right")
            await pilot.pause()
            lines = shown_lines(table)
            assert all(any(run.run_id in line for line in lines) for run in runs) and cut_words(table) == set()
        assert table.scroll_x > 0 and "batches" in lines[0]


async def test_a_broken_checkpoint_says_why_in_full_at_80x24(checkpoint_root, dataset_dir, tmp_path):
    """Alone, and naming the file from the checkpoints root the heading names, the reason fits above the
    footer: no scrollbar, whose lines no key could bring into view."""
    root = tmp_path / "ACE-Step-1.5" / "checkpoints"
    shutil.copytree(checkpoint_root / "acestep-v15-turbo", root / "acestep-v15-turbo")
    (root / "acestep-v15-turbo" / CONFIG_FILE).write_text("{broken")
    save_profile("broken", settings_of(EstimateRequest(root, "turbo", dataset_dir)))
    app = make_app(EstimateRequest(checkpoint_root, "turbo", dataset_dir))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o", "enter")
        await settle(pilot)
        reason = app.screen.unusable
        assert reason.startswith(f"{root / 'acestep-v15-turbo' / CONFIG_FILE}: not valid JSON")
        hint = app.screen.query_one("#hint", Static)
        shown = "".join(shown_lines(hint)).split()  # a line breaks after a space or a path separator
        assert "".join(shown) == "".join(f"cannot run: {reason.removeprefix(f'{root}/')}".split())
        assert app.screen.query_one(VerticalScroll).max_scroll_y == 0


async def test_the_closed_device_list_names_what_auto_runs_on_after_a_profile_loads(checkpoint_root, dataset_dir):
    save_profile("plain", settings_of(EstimateRequest(checkpoint_root, "turbo", dataset_dir, device="auto")))
    app = make_app(EstimateRequest(checkpoint_root, "turbo", dataset_dir, device="cpu"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o", "enter")
        await settle(pilot)
        device = app.screen.query_one("#device", Select)
        shown = str(device.query_one(SelectCurrent).query_one("#label").render())
        assert device.value == "auto" and shown.startswith("auto (") and shown.endswith(")"), shown
