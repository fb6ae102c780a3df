"""The results screen's export dialog (key ``e``) at 80x24: replacing files, the format following the
extension, correcting a path after a failed export, and absolute default paths."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input, Select

from acetui.errors import OutputExistsError
from acetui.estimate.exports import export
from acetui.estimate.imported import load_ranking
from acetui.tui.app import make_app
from acetui.tui.ranking_source import ranking_source
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.export import ExportScreen
from acetui.tui.screens.results import ResultsScreen
from tests.tui_support import SIZE, open_screen, record_run, settle


async def open_dialog(pilot) -> ExportScreen:
    await pilot.press("e")
    await pilot.pause()
    assert isinstance(pilot.app.screen, ExportScreen)
    return pilot.app.screen


async def type_path(pilot, path) -> None:
    """Set the path as typed text and let the dialog react to it."""
    pilot.app.screen.query_one("#path", Input).value = str(path)
    await pilot.pause()


def shown(pilot) -> tuple[str, str]:
    """The format and path the dialog shows."""
    screen = pilot.app.screen
    return str(screen.query_one("#format", Select).value), screen.query_one("#path", Input).value


@pytest.mark.parametrize(("fmt", "name"), [("json", "out.json"), ("csv", "out.csv"), ("targets", "out.txt"),
                                           ("peft", "out-peft.json"), ("fisher-map", "fisher_map.json")])  # fmt: skip
async def test_an_existing_file_is_replaced_only_when_confirmed(checkpoint_root, dataset_dir, tmp_path, fmt, name):
    result = record_run(checkpoint_root, dataset_dir, batches=1, top_k=4)
    target = tmp_path / name
    target.write_text("keep me\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        dialog = await open_dialog(pilot)
        dialog.query_one("#format", Select).value = fmt
        await type_path(pilot, target)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == f"{target} exists. Replace it?"
        await pilot.press("n")
        await pilot.pause()
        assert target.read_text() == "keep me\n"
        assert isinstance(app.screen, ExportScreen) and shown(pilot) == (fmt, str(target))
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)
    assert target.read_text() != "keep me\n"


@pytest.mark.parametrize("fmt", ["json", "csv", "targets", "peft", "peft-suffix", "peft-ranks"])
def test_every_source_replaces_a_file_only_with_force(checkpoint_root, dataset_dir, tmp_path, fmt):
    """The dialog asks because ``write`` refuses; a run and an imported file refuse alike."""
    result = record_run(checkpoint_root, dataset_dir, batches=1, top_k=4)
    run = ranking_source(result)
    estimate = export(tmp_path / "estimate.json", "json", run.ranking("grad-norm"), 4)
    imported = ranking_source(load_ranking(estimate))
    sources = [source for source in (run, imported) if fmt in source.export_formats()]
    for source in sources:
        target = tmp_path / f"{type(source).__name__}-{fmt}"
        target.write_text("keep me\n")
        with pytest.raises(OutputExistsError):
            source.write(fmt, target, source.scores[0], {}, force=False)
        assert target.read_text() == "keep me\n"
        assert source.write(fmt, target, source.scores[0], {}, force=True) == target
        assert target.read_text() != "keep me\n"
    assert len(sources) == (1 if fmt == "peft-ranks" else 2)


async def test_the_format_follows_the_extension(checkpoint_root, dataset_dir, tmp_path):
    result = record_run(checkpoint_root, dataset_dir, batches=1, top_k=4)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        dialog = await open_dialog(pilot)
        await type_path(pilot, tmp_path / "out.txt")
        assert shown(pilot) == ("targets", str(tmp_path / "out.txt"))
        await type_path(pilot, tmp_path / "out.json")
        assert shown(pilot) == ("json", str(tmp_path / "out.json"))
        dialog.query_one("#format", Select).value = "peft"
        await pilot.pause()
        assert shown(pilot) == ("peft", str(tmp_path / "out.json"))  # a JSON format keeps .json
        dialog.query_one("#format", Select).value = "csv"
        await pilot.pause()
        assert shown(pilot) == ("csv", str(tmp_path / "out.csv"))  # a typed name gets the format's extension
        await type_path(pilot, tmp_path / "ranking.csv")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ResultsScreen)
    assert (tmp_path / "ranking.csv").read_text().startswith("rank,module")


@pytest.mark.parametrize("case", ["directory", "under a file"])
async def test_a_failed_export_keeps_the_typed_path(checkpoint_root, dataset_dir, tmp_path, case):
    result = record_run(checkpoint_root, dataset_dir, batches=1, top_k=4)
    (tmp_path / "exports").mkdir()
    (tmp_path / "notes").write_text("a file, not a folder\n")
    bad = tmp_path / "exports" if case == "directory" else tmp_path / "notes" / "ranking.csv"
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        dialog = await open_dialog(pilot)
        dialog.query_one("#format", Select).value = "csv"
        await type_path(pilot, bad)
        await pilot.press("enter")
        await pilot.pause()
        errors = [note.message for note in app._notifications if note.severity == "error"]
        assert len(errors) == 1 and errors[0].startswith(str(bad)) and "\n" not in errors[0]
        assert isinstance(app.screen, ExportScreen) and shown(pilot) == ("csv", str(bad))
        await type_path(pilot, tmp_path / "exports" / "ranking.csv")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ResultsScreen)
    assert (tmp_path / "exports" / "ranking.csv").read_text().startswith("rank,module")


async def test_the_default_path_is_absolute(checkpoint_root, dataset_dir, tmp_path, monkeypatch):
    result = record_run(checkpoint_root, dataset_dir, batches=1, top_k=4)
    monkeypatch.chdir(tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(result))
        await open_dialog(pilot)
        expected = tmp_path / f"acetui-{result.run_id}.json"
        assert shown(pilot) == ("json", str(expected))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ResultsScreen)
    assert len(json.loads(expected.read_text())) == 32
