"""The path steps at 80 columns: the variants table never cuts a column, paths wrap between folder names, the
tree shows a variant folder's full name three levels down."""

from __future__ import annotations

import shutil

import pytest
from textual.widget import Widget

from acetui.tui.app import make_app
from acetui.tui.screens.checkpoint import VariantTable, columns_that_fit
from acetui.tui.widgets.path_wrap import break_offsets
from tests.tui_support import SIZE, focused_tree, settle, submit

TURBO = "acestep-v15-turbo"


def lines_of(widget: Widget) -> list[str]:
    return [widget.render_line(y).text.rstrip() for y in range(widget.size.height)]


def headers(table: VariantTable) -> list[str]:
    return [str(column.label) for column in table.columns.values()]


@pytest.mark.parametrize(
    ("line", "width", "pieces"),
    [
        ("turbo in /data/checkpoints/acestep-v15-turbo", 30, ["turbo in /data/checkpoints/", TURBO]),
        ("/a/bb/ccc", 5, ["/a/", "bb/", "ccc"]),
        ("two words", 20, ["two words"]),
        ("two words", 4, ["two ", "words"]),
        ("a-name-wider-than-the-line/x", 8, ["a-name-wider-than-the-line/", "x"]),
    ],
)
def test_lines_break_after_spaces_and_path_separators(line, width, pieces):
    offsets = break_offsets(line, width)
    assert [line[start:end] for start, end in zip([0, *offsets], [*offsets, len(line)])] == pieces


def test_columns_fit_from_the_left_and_the_name_always_shows():
    assert columns_that_fit([9, 8, 7], 24) == 3
    assert columns_that_fit([9, 8, 7], 23) == 2
    assert columns_that_fit([9, 8, 7], 5) == 1


async def test_the_variants_table_shows_the_columns_that_fit_and_more_when_widened(checkpoint_root):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "path", str(checkpoint_root))
        table = app.screen.query_one(VariantTable)
        assert table.row_count == 3
        assert table.virtual_size.width <= table.scrollable_content_region.width  # nothing cut or scrolled
        assert headers(table) == ["variant", "params", "dtype", "size", "layers×hidden"]
        table.move_cursor(row=2)
        await pilot.resize_terminal(160, 30)
        await settle(pilot)
        assert headers(table)[-1] == "files" and table.cursor_row == 2
        assert table.virtual_size.width <= table.scrollable_content_region.width


async def test_a_variant_path_wraps_between_folder_names(checkpoint_root, tmp_path):
    """The root's name is padded so that folding the path every line's width would cut ``acestep-v15-turbo``."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        width = app.screen.query_one("#detail").size.width
        padding = 2 * width - len(f"{tmp_path}/") - len("/") - len(TURBO) // 2
        assert padding > 0
        root = tmp_path / ("r" * padding)
        shutil.copytree(checkpoint_root / TURBO, root / TURBO)
        await submit(pilot, "path", str(root))
        lines = lines_of(app.screen.query_one("#detail"))
        end = next((index + 1 for index, line in enumerate(lines) if line.endswith(TURBO)), len(lines))
        assert all(line.endswith("/") for line in lines[: end - 1]), lines
        assert "".join(lines[:end]) == f"turbo in {root / TURBO}"


async def test_the_tree_shows_a_variant_folder_three_levels_down_in_full(tmp_path, monkeypatch):
    (tmp_path / "ACE-Step-1.5" / "checkpoints" / TURBO).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tree = await focused_tree(pilot)
        for _ in range(2):
            await pilot.press("down", "space")
            await settle(pilot)
            await pilot.pause(0.1)
        assert any(line.endswith(f"📁 {TURBO}") for line in lines_of(tree)), lines_of(tree)
