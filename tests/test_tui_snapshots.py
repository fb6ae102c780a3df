"""SVG snapshots of the main screens at 80x24, with stable content: relative paths under a temp working
folder, fixed run ids and a fixed device list (the real one shows this machine's free memory)."""

from __future__ import annotations

import json
import shutil
from functools import partial

import pytest
import torch

from acetui import paths
from acetui.estimate import rank_modules
from acetui.estimate.exports import export
from acetui.estimate.imported import load_ranking
from acetui.tui.app import make_app
from acetui.tui.screens import parameters
from acetui.tui.screens.compare import CompareScreen
from acetui.tui.screens.results import ResultsScreen
from tests.tui_support import SIZE, open_screen, record_run, settle, submit

GIB = 1024**3


@pytest.fixture
def workdir(tmp_path, monkeypatch, checkpoint_root, dataset_dir):
    """``checkpoints`` (turbo and a broken variant) and ``dataset`` (two broken files) in the working folder."""
    shutil.copytree(checkpoint_root / "acestep-v15-turbo", tmp_path / "checkpoints" / "acestep-v15-turbo")
    (tmp_path / "checkpoints" / "acestep-v15-base").mkdir()
    (tmp_path / "checkpoints" / "acestep-v15-base" / "config.json").write_text("{ not json")
    shutil.copytree(dataset_dir, tmp_path / "dataset")
    (tmp_path / "dataset" / "empty.pt").write_bytes(b"")
    torch.save({"target_latents": torch.zeros(3)}, tmp_path / "dataset" / "partial.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        parameters,
        "probe_devices",
        lambda: (
            [("auto", "auto"), ("cuda:0 Test GPU (24.0 GiB free)", "cuda:0"), ("cpu", "cpu")],
            {"auto": (True, 24 * GIB), "cuda:0": (True, 24 * GIB), "cpu": (False, 64 * GIB)},
            "",
        ),
    )
    return tmp_path


def fixed_run(checkpoint_root, dataset_dir, run_id: str, seed: int):
    result = record_run(checkpoint_root, dataset_dir, batches=2, top_k=8, seed=seed)
    runs = paths.app_dirs().runs
    (runs / f"{result.run_id}.json").unlink()
    result.run_id = run_id
    (runs / f"{run_id}.json").write_text(json.dumps(result.to_dict()))
    return result


async def open_checkpoints(pilot) -> None:
    await submit(pilot, "path", "checkpoints")


async def open_dataset(pilot) -> None:
    await open_checkpoints(pilot)
    await pilot.press("enter")
    await submit(pilot, "path", "dataset")


async def open_parameters(pilot) -> None:
    await open_dataset(pilot)
    await pilot.press("ctrl+n")
    await settle(pilot)


@pytest.mark.parametrize("steps", [open_checkpoints, open_dataset, open_parameters], ids=lambda s: s.__name__)
def test_step_screens(snap_compare, workdir, steps):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=steps)


@pytest.mark.parametrize(
    ("press", "size"),
    [([], SIZE), (["v"], SIZE), (["v", "v"], SIZE), ([], (200, 60))],
    ids=["ranking", "heat-map", "summary", "ranking-200x60"],
)
def test_results_views(snap_compare, checkpoint_root, dataset_dir, press, size):
    result = fixed_run(checkpoint_root, dataset_dir, "run-a", seed=1)
    show = partial(open_screen, screen=ResultsScreen(result))
    assert snap_compare(make_app(), terminal_size=size, run_before=show, press=press)


def test_imported_ranking(snap_compare, checkpoint_root, dataset_dir, tmp_path, monkeypatch):
    result = fixed_run(checkpoint_root, dataset_dir, "run-a", seed=1)
    export(tmp_path / "estimate.json", "json", rank_modules(result), 8)
    monkeypatch.chdir(tmp_path)
    show = partial(open_screen, screen=ResultsScreen(load_ranking("estimate.json")))
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=show)


def test_history(snap_compare, checkpoint_root, dataset_dir):
    fixed_run(checkpoint_root, dataset_dir, "run-a", seed=1)
    fixed_run(checkpoint_root, dataset_dir, "run-b", seed=2)

    async def open_history(pilot) -> None:
        await pilot.press("ctrl+g")
        await settle(pilot)  # the records are read off the UI thread

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=open_history, press=["space", "down", "space"])


def test_compare(snap_compare, checkpoint_root, dataset_dir):
    first = fixed_run(checkpoint_root, dataset_dir, "run-a", seed=1)
    second = fixed_run(checkpoint_root, dataset_dir, "run-b", seed=2)
    show = partial(open_screen, screen=CompareScreen(first, second))
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=show)
