"""Statistics, auto runs, Side-Step files and the rank exports in the TUI, at 80x24 on the tiny fixtures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from textual.widgets import Input, Select, Static

from acetui.data import scan_dataset
from acetui.estimate import EstimateRequest, rank_modules
from acetui.estimate.effective_rank import effective_ranks
from acetui.estimate.exports import export
from acetui.estimate.memory import MemoryNeed
from acetui.estimate.sidestep import export_fisher_map, fisher_map_path
from acetui.estimate.stats import result_stats
from acetui.model import load_decoder
from acetui.model.synthetic import TINY
from acetui.tui.app import make_app
from acetui.tui.screens.compare import CompareScreen
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.export import ExportScreen
from acetui.tui.screens.history import HistoryScreen
from acetui.tui.screens.open_ranking import OpenRankingScreen
from acetui.tui.screens.parameters import ParametersScreen, batches_hint
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.screens.run import RunScreen, stability_text
from acetui.tui.widgets.ranking_table import BAR_WIDTH, RankingTable
from tests.fisher_map_schema import fisher_map_problems
from tests.tui_support import SIZE, fill, open_screen, pick_to_parameters, record_run, settle, shown_modules, submit


def cell(table: RankingTable, module: str, column: str) -> str:
    return str(table.get_cell(module, column))


async def test_statistics_and_effective_rank_columns(checkpoint_root, dataset_dir):
    result = record_run(checkpoint_root, dataset_dir, batches=3, top_k=4)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        table = app.screen.query_one(RankingTable)
        stats = result_stats(result, "grad-norm")
        first, last = rank_modules(result)[0], rank_modules(result)[-1]
        unit = stats.by_name()[first.module]
        assert cell(table, first.module, "p_top_k") == f"{unit.p_top_k:.2f}"
        assert cell(table, first.module, "stderr") == f"{unit.stderr:#.2g}"
        assert cell(table, first.module, "ci") == f"[{unit.ci_low:#.3g}, {unit.ci_high:#.3g}]"
        assert f"top-4 stability {stats.stability:.2f}" in str(app.screen.query_one("#heading").render())
        assert cell(table, first.module, "bar") == "█" * BAR_WIDTH
        assert len(cell(table, last.module, "bar").strip()) < BAR_WIDTH
        expected = effective_ranks(checkpoint_root, "turbo", [first.module])[first.module]
        assert cell(table, first.module, "effective_rank") == str(expected) and expected > 0
        await pilot.press("s")
        fisher = result_stats(result, "fisher").by_name()
        shown = {module.module: cell(table, module.module, "p_top_k") for module in shown_modules(table)}
        assert shown == {name: f"{unit.p_top_k:.2f}" for name, unit in fisher.items()}


def test_the_stability_is_shown_against_the_target_as_typed():
    """A target of 0.999 read "target 1.00", and a stability of 0.995 "1.00", in yellow, as the run went on."""
    request = EstimateRequest(Path("/"), "turbo", Path("/"), auto_batches=True, stability_target=0.999)
    assert "0.995 / target 0.999" in stability_text(0.995, request).plain
    assert "0.90 / target 0.9" in stability_text(0.9, replace(request, stability_target=0.9)).plain


async def test_auto_run_shows_stability_and_why_it_stopped(checkpoint_root, dataset_dir):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        assert app.screen.query_one("#max-batches", Input).disabled
        fill(pilot, batches="auto", top_k="4", crop_frames="16")
        await pilot.pause()
        fill(pilot, max_batches="3", stability_target="1")
        app.screen.query_one("#activation-checkpointing", Select).value = "on"
        await pilot.press("ctrl+r")
        await settle(pilot)
        run_screen = next(screen for screen in app.screen_stack if isinstance(screen, RunScreen))
        request = run_screen.request
        assert request.auto_batches and request.max_batches == 3 and request.stability_target == 1.0
        assert request.crop_frames == 16 and request.activation_checkpointing == "on"
        stability = str(run_screen.query_one("#stability", Static).render())
        assert stability.startswith("top-4 stability ") and "/ target 1  " in stability
        assert str(run_screen.query_one("#loss-label", Static).render()).startswith("loss\nmax ")
        assert isinstance(app.screen, ResultsScreen)
        heading = str(app.screen.query_one("#heading").render())
        reason = app.screen.source.result.metadata["stop_reason"]
        assert ("auto: stable at 1" if reason == "stable" else "auto: max 3") in heading


async def test_cpu_memory_hint_never_says_vram(checkpoint_root, dataset_dir):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        devices = ["cpu"] if torch.cuda.is_available() else ["cpu", "auto"]
        for device in devices:
            app.screen.query_one("#device", Select).value = device
            await pilot.pause()
            hint = str(app.screen.query_one("#hint", Static).render())
            assert "VRAM" not in hint and "RAM free" in hint


async def test_memory_hint_follows_the_longest_sample_dtype_batch_size_and_crop(checkpoint_root, dataset_dir):
    """The hint estimates the longest batch of the scanned dataset as the form says, on the real app."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        screen = app.screen
        screen.query_one("#device", Select).value = "cpu"
        await pilot.pause()

        def needed() -> int:
            need = screen.longest_batch_need(on_cuda=False)
            hint = str(screen.query_one("#hint", Static).render())
            assert "the longest batch needs" in hint and "fits" in hint, hint
            return need.total

        fp32 = needed()
        assert screen.longest_batch_need(on_cuda=False).weights == 4 * sum(
            p.numel() for p in load_decoder(checkpoint_root, app.draft["variant"]).parameters()
        )
        screen.query_one("#dtype", Select).value = "bf16"
        await pilot.pause()
        bf16 = needed()
        fill(pilot, batch_size="4")
        await pilot.pause()
        four = needed()
        fill(pilot, crop_frames="2")
        await pilot.pause()
        cropped = needed()
        assert bf16 * 2 == fp32 and four > bf16 and cropped < four


async def test_memory_hint_when_the_app_opens_at_the_parameters_step(checkpoint_root, dataset_dir):
    """Demo, last settings and profiles skip the dataset step: the parameters step scans for itself."""
    app = make_app(EstimateRequest(checkpoint_root, "turbo", dataset_dir, device="cpu"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ParametersScreen)
        await pilot.pause()
        hint = str(app.screen.query_one("#hint", Static).render())
        assert "the longest batch needs" in hint and "fits" in hint, hint
        longest = max(info.frames for info in scan_dataset(dataset_dir, condition_width=TINY.condition_width).samples)
        assert app.longest_frames == {app.scan_key(dataset_dir): longest}  # for the dataset and its model


def test_memory_hint_says_when_a_run_does_not_fit():
    gib = 1024**3
    cuda = (True, 8 * gib)
    assert "fits" in batches_hint(cuda, MemoryNeed(weights=3 * gib, activations=2 * gib))
    tight = batches_hint(cuda, MemoryNeed(weights=3 * gib, activations=7 * gib))
    assert "auto checkpointing" in tight and "crop frames" in tight
    assert "weights alone do not fit" in batches_hint(cuda, MemoryNeed(weights=9 * gib, activations=gib))
    # The CPU keeps half its available RAM as headroom (glibc holds on to freed activations).
    cpu = (False, 16 * gib)
    assert "auto checkpointing" in batches_hint(cpu, MemoryNeed(weights=3 * gib, activations=7 * gib))
    assert "unknown" in batches_hint(None, None)


async def open_ranking_file(pilot, path) -> None:
    await pilot.press("i")
    assert isinstance(pilot.app.screen, OpenRankingScreen)
    await submit(pilot, "path", str(path))


async def test_open_side_step_files_in_the_results_view(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=2, top_k=4)
    estimate = export(tmp_path / "estimate.json", "json", rank_modules(result), 4)
    fisher_map = export_fisher_map(result, tmp_path / "fisher_map.json", effective={})
    (tmp_path / "broken.json").write_text("{}")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        await open_ranking_file(pilot, tmp_path / "broken.json")
        assert isinstance(app.screen, OpenRankingScreen)
        assert any("broken.json" in note.message for note in app._notifications)
        await submit(pilot, "path", str(estimate))
        assert isinstance(app.screen, ResultsScreen) and app.screen.source.result is None
        table = app.screen.query_one(RankingTable)
        top = rank_modules(result)[0].module
        assert table.row_count == 32 and shown_modules(table)[0].module == top
        assert {cell(table, top, key) for key in ("p_top_k", "stderr", "ci", "effective_rank")} == {"–"}
        await pilot.press("s")
        assert app.screen.score == "sensitivity"
        await open_ranking_file(pilot, fisher_map)
        assert app.screen.score == "fisher" and "fisher_map" in str(app.screen.query_one("#heading").render())
        await pilot.press("escape")
        assert isinstance(app.screen, ResultsScreen) and app.screen.score == "sensitivity"


async def test_history_compares_a_run_with_a_file(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=2, top_k=4)
    estimate = export(tmp_path / "estimate.json", "json", rank_modules(result), 4)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        await pilot.press("f")
        await submit(pilot, "path", str(estimate))
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.comparison.spearman == 1.0 and len(app.screen.comparison.modules) == 32
        assert "estimate.json" in str(app.screen.query_one("#heading").render())


async def export_as(pilot, fmt: str, path) -> str:
    """Open the export dialog, pick ``fmt``, return its default path and write to ``path``."""
    await pilot.press("e")
    assert isinstance(pilot.app.screen, ExportScreen)
    pilot.app.screen.query_one("#format", Select).value = fmt
    await pilot.pause()
    default = pilot.app.screen.query_one("#path", Input).value
    await submit(pilot, "path", str(path))
    return default


async def test_fisher_map_and_rank_pattern_exports(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=2, top_k=4)
    target = tmp_path / "fisher_map.json"
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        assert await export_as(pilot, "fisher-map", target) == str(fisher_map_path(result.request.dataset_dir))
        written = json.loads(target.read_text())
        assert fisher_map_problems(written) == [] and written["modules"][0]["effective_rank"] > 0
        target.write_text("keep me")
        await export_as(pilot, "fisher-map", target)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert target.read_text() == "keep me"
        assert isinstance(app.screen, ExportScreen)  # back in the dialog, the path kept
        assert app.screen.query_one("#path", Input).value == str(target)
        await pilot.press("escape")
        await export_as(pilot, "fisher-map", target)
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, ResultsScreen) and fisher_map_problems(json.loads(target.read_text())) == []
        peft = tmp_path / "peft.json"
        await export_as(pilot, "peft-ranks", peft)
        config = json.loads(peft.read_text())
        assert len(config["rank_pattern"]) == 4 and config["alpha_pattern"] == {
            name: 2 * rank for name, rank in config["rank_pattern"].items()
        }
        assert not any(name.startswith("decoder.") for name in config["target_modules"])


def test_figures_keep_alignment_zeros_but_no_bare_trailing_point():
    from acetui.tui.widgets.ranking_table import significant

    assert significant(119.04, "#.3g") == "119"
    assert significant(1.2, "#.3g") == "1.20"
    assert significant(103.84, "#.4g") == "103.8"
