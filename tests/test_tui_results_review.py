"""What a UX review of the Results and Compare screens found at 80 to 100 columns: acetui's own JSON export
reopened with the wrong top-k and no statistics, columns cut by the table's edges, a heading wrapped mid-phrase,
sort labels that did not say the order, a heat map and exports that ignored the filter without saying so; then a
deep imported path cut before its file name, and the whole-column keys dropping the cell cursor and hover reset."""

from __future__ import annotations

import csv
import json
import shutil

from textual.widgets import DataTable, Input, Label, Select

from acetui.estimate import rank_modules
from acetui.estimate.compare import log_distance
from acetui.estimate.exports import target_modules_string
from acetui.estimate.imported import load_ranking
from acetui.estimate.stats import result_stats
from acetui.tui.app import make_app
from acetui.tui.ranking_source import stop_text
from acetui.tui.screens.compare import CompareScreen
from acetui.tui.screens.export import ExportScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.widgets.heat_map import HeatMap
from acetui.tui.widgets.ranking_table import RankingTable
from tests.tui_support import SIZE, open_screen, record_run, settle, shown_modules, submit, two_runs


def shown_lines(widget) -> list[str]:
    """The lines ``widget`` shows on screen, as text, without the cells its scrollbar covers."""
    width = widget.scrollable_content_region.width
    return [widget.render_line(y).text[:width] for y in range(widget.size.height)]


def cut_words(table: DataTable) -> set[str]:
    """Words the table shows that are no whole word of any label or cell: parts of a column cut by an edge."""
    cells = [column.label for column in table.columns.values()]
    cells += [cell for row in table.ordered_rows for cell in table.get_row(row.key)]
    whole = {word for cell in cells for word in str(cell).split()}
    return {word for line in shown_lines(table) for word in line.split()} - whole


async def export_to(pilot, fmt: str, path) -> str:
    """Export ``fmt`` to ``path`` through the dialog; returns what the dialog said the file holds."""
    await pilot.press("e")
    dialog = pilot.app.screen
    assert isinstance(dialog, ExportScreen)
    dialog.query_one("#format", Select).value = fmt
    await pilot.pause()
    said = " ".join(str(label.render()) for label in dialog.query("#scope").results(Label))
    await submit(pilot, "path", str(path))
    return said


async def test_own_json_export_reopens_with_its_top_k_and_statistics(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=3, top_k=8)  # 32 modules, default top-k 16
    stats = result_stats(result, "grad-norm").by_name()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        await export_to(pilot, "json", tmp_path / "estimate.json")
        await pilot.press("i")
        await submit(pilot, "path", str(tmp_path / "estimate.json"))
        screen = app.screen
        assert isinstance(screen, ResultsScreen) and screen.source.result is None and screen.source.top_k == 8
        heading = " ".join(shown_lines(screen.query_one("#heading")))
        assert "top-8" in heading and "statistics from the file" in heading and "no per-batch data" not in heading
        table = screen.query_one(RankingTable)
        marked = [str(table.get_cell(m.module, "rank")).startswith("●") for m in shown_modules(table)]
        assert marked == [True] * 8 + [False] * 24
        for module in rank_modules(result)[:3]:
            unit = stats[module.module]
            assert str(table.get_cell(module.module, "p_top_k")) == f"{unit.p_top_k:.2f}"
            assert str(table.get_cell(module.module, "stderr")) == f"{unit.stderr:#.2g}"
            assert str(table.get_cell(module.module, "ci")) == f"[{unit.ci_low:#.3g}, {unit.ci_high:#.3g}]"
        await pilot.press("y")
        assert app.clipboard == target_modules_string(rank_modules(result), 8)
        await export_to(pilot, "csv", tmp_path / "again.csv")
    rows = list(csv.DictReader((tmp_path / "again.csv").open()))
    assert [row["top_k"] for row in rows] == ["1"] * 8 + ["0"] * 24
    assert {row["module"]: float(row["p_top_k"]) for row in rows} == {name: u.p_top_k for name, u in stats.items()}


async def test_a_one_batch_export_and_a_side_step_file_show_no_statistics(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=1, top_k=8)  # figures null: unknown
    side_step = tmp_path / "side-step.json"
    side_step.write_text(json.dumps([{"module": m.module, "sensitivity": m.sensitivity} for m in rank_modules(result)]))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        await export_to(pilot, "json", tmp_path / "one-batch.json")
        for path, top_k in ((tmp_path / "one-batch.json", 8), (side_step, 16)):
            await pilot.press("i")
            await submit(pilot, "path", str(path))
            table = app.screen.query_one(RankingTable)
            assert app.screen.source.top_k == top_k
            assert {str(table.get_cell(m.module, "p_top_k")) for m in shown_modules(table)} == {"–"}
            assert "no per-batch data" in " ".join(shown_lines(app.screen.query_one("#heading")))


async def test_tables_scroll_by_whole_columns_and_never_show_part_of_one(checkpoint_root, dataset_dir):
    first, second = two_runs(checkpoint_root, dataset_dir)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        for screen in (ResultsScreen(first), CompareScreen(first, second)):
            await open_screen(pilot, screen)
            table = screen.query_one(DataTable)
            offsets = []
            for _ in range(len(table.columns)):
                assert cut_words(table) == set(), table.scroll_x
                offsets.append(table.scroll_x)
                await pilot.press("right")
                await pilot.pause()
            assert len(set(offsets)) > 2 and str(table.ordered_columns[-1].label) in shown_lines(table)[0]
            table.scroll_to(x=3, animate=False)  # as a mouse may leave it
            await pilot.pause()
            assert cut_words(table) == set()
            await pilot.press("left")
            await pilot.pause()
            assert table.scroll_x == 0


async def test_columns_fit_the_shown_score_after_switching_scores(checkpoint_root, dataset_dir):
    """Switching to fisher widened columns for good, and at 80 columns the last one then ran under the
    scrollbar ("[1.12, 2.13" with its bracket hidden)."""
    result = record_run(checkpoint_root, dataset_dir, batches=3)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        table = app.screen.query_one(RankingTable)
        widths = [column.get_render_width(table) for column in table.ordered_columns]
        await pilot.press("s", "s", "s", "home")
        assert app.screen.score == "grad-norm"
        assert [column.get_render_width(table) for column in table.ordered_columns] == widths
        for _ in range(len(table.columns)):
            await pilot.press("right")
            await pilot.pause()
            assert cut_words(table) == set(), table.scroll_x


async def test_heading_keeps_its_phrases_whole_and_names_each_stabilitys_score(checkpoint_root, dataset_dir, tmp_path):
    dataset = tmp_path / "vocals-dataset-2025"  # long enough to end the first line inside "grad-norm · module"
    shutil.copytree(dataset_dir, dataset)
    result = record_run(checkpoint_root, dataset, auto_batches=True, max_batches=3, stability_target=1.0, top_k=4)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        heading = app.screen.query_one("#heading")
        lines = shown_lines(heading)
        stability = result_stats(result, "grad-norm").stability
        assert any("grad-norm · module" in line for line in lines)
        assert any(f"top-4 stability {stability:.2f}  {stop_text(result)}" in line for line in lines), lines
        await pilot.press("s")
        await pilot.pause()
        lines = shown_lines(heading)
        stability = result_stats(result, "fisher").stability
        assert any(f"top-4 stability {stability:.2f} on fisher" in line for line in lines), lines
        assert any(f"{stop_text(result)} on grad-norm" in line for line in lines), lines


def side_step_file(path):
    """A small Side-Step estimate list at ``path`` (its folders made): nine modules, no checkpoint needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"module": f"decoder.layers.{n}.self_attn.q_proj", "sensitivity": 9 - n} for n in range(9)]
    path.write_text(json.dumps(entries))
    return path


async def test_a_deep_imported_path_keeps_its_file_name_at_80_columns(tmp_path):
    path = side_step_file(tmp_path / "runs" / "2025-06-01" / "vocals-with-a-long-folder-name" / "side-step.json")
    assert len(str(path)) > SIZE[0]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(load_ranking(path)))
        lines = [line.rstrip() for line in shown_lines(app.screen.query_one("#heading"))]
        cut = [line for line in lines if line.startswith("…")]
        assert len(cut) == 1 and str(path).endswith(cut[0][1:]), lines
        assert cut[0].endswith("/vocals-with-a-long-folder-name/side-step.json")


async def test_left_and_right_keep_datatables_cursor_and_hover_behaviour(tmp_path):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(load_ranking(side_step_file(tmp_path / "estimate.json"))))
        table = app.screen.query_one(RankingTable)

        def row_styles(y: int) -> list[str]:
            return [str(segment.style) for segment in table.render_line(y)]

        await pilot.hover(RankingTable, offset=(5, 5))  # row 4: the hover cursor shades it
        assert row_styles(5) != row_styles(7)
        await pilot.press("right")
        assert row_styles(5) == row_styles(7)  # keys hide the hover cursor, as in any DataTable
        table.cursor_type = "cell"
        await pilot.press("right", "right", "left")
        assert table.cursor_coordinate == (0, 1)


async def test_results_footer_keeps_history_at_80_columns(checkpoint_root, dataset_dir):
    result = record_run(checkpoint_root, dataset_dir, batches=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        app.screen.query_one("#filter", Input).value = "cross"
        await pilot.press("enter")  # the longest footer: "esc Clear filter"
        await pilot.pause()
        assert app.screen.active_bindings["escape"].binding.description == "Clear filter"
        assert "History" in app.export_screenshot()


async def test_compare_says_its_order_and_fits_its_columns(checkpoint_root, dataset_dir):
    first, second = two_runs(checkpoint_root, dataset_dir)
    app = make_app()
    async with app.run_test(size=(100, 24)) as pilot:
        screen = CompareScreen(first, second)
        await open_screen(pilot, screen)
        await pilot.press("o", "o")
        heading = " ".join(shown_lines(screen.query_one("#heading")))
        assert "sorted by ratio ▼ (most different first)" in heading
        table = screen.query_one("#pairs", DataTable)
        ratios = [log_distance(change.ratio) for change in screen.comparison.modules]
        assert table.max_scroll_x == 0 and cut_words(table) == set() and max(ratios) > 0
        assert "B / A ▼" in shown_lines(table)[0] and all("×" in line for line in shown_lines(table)[1:4])
        await pilot.press("O")
        assert "ratio ▲ (least different first)" in " ".join(shown_lines(screen.query_one("#heading")))


async def test_the_export_dialog_says_a_partial_runs_ranking_is_so_far(checkpoint_root, dataset_dir, tmp_path):
    """The file cannot say so (Side-Step's list holds modules only): a running run's export read as final."""
    partial = record_run(checkpoint_root, dataset_dir, batches=4, stop_after=2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(partial))
        said = await export_to(pilot, "json", tmp_path / "so-far.json")
    so_far = "The run is cancelled: the ranking of its 2 batches so far."
    assert said == f"Writes the whole ranking, all 32 modules. {so_far}"


async def test_heat_map_and_export_dialog_follow_the_filter(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = ResultsScreen(result)
        await open_screen(pilot, screen)
        heat_map = screen.query_one(HeatMap)
        screen.query_one("#filter", Input).value = r"self_attn\.v"
        await pilot.press("enter", "v")
        await pilot.pause()
        lines = shown_lines(heat_map)
        assert lines[1].strip() == "filtered: 4 of 32 modules   · filtered out"
        cells = [line.split()[1:] for line in lines[3:7]]  # layers 0-3: self.q self.k self.v self.o, cross ...
        assert all(row[2] != "·" and row.count("·") == len(row) - 1 for row in cells), cells
        said = await export_to(pilot, "json", tmp_path / "all.json")
        assert said == "Writes the whole ranking, all 32 modules, not only the 4 the filter shows."
        assert len(json.loads((tmp_path / "all.json").read_text())) == 32
        await pilot.press("escape")
        await settle(pilot)
        assert "filtered" not in " ".join(shown_lines(heat_map))
