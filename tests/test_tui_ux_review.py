"""What a UX review in tmux found (80x24 to 160x45): a second run started from History over a running one, a
run started that was known to fail, Textual's words for bad fields and only the first of them, a hint hard to
parse, a save dialog saying "choose", a palette Quit that did not say it asks, an ``auto`` device that did
not say what it stands for, a mistyped ``--profile`` that only showed a passing notice."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import pytest
import torch
from textual.widgets import Label, Static

from acetui import paths
from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest
from acetui.estimate.memory import MemoryNeed
from acetui.profiles import save_profile
from acetui.tui.app import make_app
from acetui.tui.screens.history import HistoryScreen
from acetui.tui.screens.parameters import ParametersScreen, batches_hint, probe_devices
from acetui.tui.screens.profile import ProfileScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.screens.run import RunScreen
from acetui.tui.widgets.settings_form import SettingsForm
from tests.support import PYTHON, REPO, one_error_line, subprocess_env
from tests.tui_support import SIZE, fill, record_run, settle, start_long_run, wait_for

GIB = 1024**3


def last_notice(app):
    return list(app._notifications)[-1]


def engine_message(**settings) -> str:
    """What the engine says of these settings (folders are not checked when a request is made)."""
    with pytest.raises(AcetuiError) as caught:
        EstimateRequest("/", "turbo", "/", **settings)
    return str(caught.value)


async def test_history_refuses_to_resume_while_a_run_is_running(checkpoint_root, dataset_dir):
    interrupted = record_run(checkpoint_root, dataset_dir, batches=3, stop_after=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        run = await start_long_run(pilot, checkpoint_root, dataset_dir)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and len(app.screen.runs) == 2)
        history = app.screen
        await pilot.press("down")
        assert history.current().run_id == interrupted.run_id
        await pilot.press("r")
        await pilot.pause()
        assert app.screen is history
        assert [type(screen) for screen in app.screen_stack].count(RunScreen) == 1
        notice = f"run {run.run_id} is running now: one run at a time (esc goes back to it)"
        assert last_notice(app).message == notice
        await pilot.press("escape")
        assert app.screen is run and run.running


async def test_run_is_refused_while_the_checkpoint_folder_is_missing(checkpoint_root, dataset_dir, tmp_path):
    gone = tmp_path / "moved"
    app = make_app(EstimateRequest(gone, "turbo", dataset_dir, batches=1, top_k=4, device="cpu"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        problem = f"checkpoint folder {gone} not found"
        assert f"cannot run: {problem}" in str(app.screen.query_one("#hint", Static).render())
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, ParametersScreen)
        assert (last_notice(app).title, last_notice(app).message) == ("Cannot run", problem)
        shutil.copytree(checkpoint_root / "acestep-v15-turbo", gone / "acestep-v15-turbo")
        await pilot.press("ctrl+r")  # refused as known, and checked again
        await settle(pilot)
        assert isinstance(app.screen, ParametersScreen)
        assert "cannot run" not in str(app.screen.query_one("#hint", Static).render())
        await pilot.press("ctrl+r")  # the folder is back: it runs
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)


async def test_every_invalid_field_is_reported_in_our_words(checkpoint_root, dataset_dir):
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, auto_batches=True, device="cpu")
    app = make_app(request)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        fill(pilot, max_batches="", stability_target="1.5", top_k="0", seed="-1", batch_size="2000")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, ParametersScreen)
        assert last_notice(app).title == "Cannot run"
        assert last_notice(app).message.splitlines() == [
            "max batches must be a whole number, got ''",
            engine_message(stability_target=1.5),
            engine_message(top_k=0),
            engine_message(seed=-1),
            engine_message(batch_size=2000),
        ]
        fill(pilot, max_batches="3", stability_target="0.5", top_k="4", seed="1", batch_size="1", batches="abc")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert last_notice(app).message == "batches must be a whole number or auto, got 'abc'"
        fill(pilot, batches="2", max_batches="")  # max batches no longer applies: not held against the run
        await pilot.pause()
        assert app.screen.query_one(SettingsForm).values()["batches"] == 2


def test_hint_says_what_fits_then_how_many_batches():
    cpu, cuda = (False, 16 * GIB), (True, 8 * GIB)
    assert batches_hint(cpu, MemoryNeed(weights=GIB, activations=GIB)).splitlines() == [
        "memory: 16.0 GiB RAM free",
        "fits: the longest batch needs ~2.0 GiB (1.0 GiB weights)",
        "batches: 3-5, or auto with a low max (on a CPU a real model takes minutes per batch)",
    ]
    assert batches_hint(cuda, MemoryNeed(weights=3 * GIB, activations=7 * GIB)).splitlines() == [
        "memory: 8.0 GiB VRAM free",
        "too big as is: the longest batch needs ~10.0 GiB (3.0 GiB weights); "
        "auto checkpointing recomputes activations (~1.4x slower), or set crop frames",
        "batches: 5-10, or auto (more batches take longer but need no more memory)",
    ]
    assert batches_hint(cuda, MemoryNeed(weights=9 * GIB, activations=GIB)).splitlines()[1] == (
        "the weights alone do not fit: they need 9.0 GiB; pick another device or a smaller variant"
    )
    assert batches_hint(None).splitlines() == ["memory: free amount unknown", "batches: start with 3-5"]


def dialog_help(app) -> str:
    return str(app.screen.query_one(".dialog-help", Label).render())


async def test_profile_dialog_says_what_enter_does(checkpoint_root, dataset_dir):
    save_profile("mine", {"seed": 1})
    app = make_app(EstimateRequest(checkpoint_root, "turbo", dataset_dir, device="cpu"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ProfileScreen)
        assert dialog_help(app).startswith("enter: save (asks before replacing one)")
        await pilot.press("escape", "ctrl+o")
        assert dialog_help(app).startswith("enter: load")


async def test_palette_quit_says_it_asks_during_a_run():
    app = make_app()
    async with app.run_test(size=SIZE):
        quits = [command for command in app.get_system_commands(app.screen) if command.title == "Quit"]
        assert len(quits) == 1 and "asks first" in quits[0].help


def test_auto_device_says_what_it_runs_on():
    options, free, _ = probe_devices()
    label, value = options[0]
    resolved = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert value == "auto" and label.startswith(f"auto ({resolved}") and label.endswith(")")
    assert free.get("auto") == free.get(resolved)


def test_a_profile_not_saved_is_refused_naming_the_saved_ones(tmp_path, isolated_app_dirs, monkeypatch):
    """In a child process, which the app (as it opened before) could not hold up past the timeout."""
    env = subprocess_env(tmp_path)
    config = tmp_path / "xdg_config_home" / "acetui"
    monkeypatch.setattr(paths, "app_dirs", lambda: replace(isolated_app_dirs, config=config))

    def refusal(name: str) -> str:
        command = [*PYTHON, "--profile", name]
        child = subprocess.run(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
        assert (child.returncode, child.stdout) == (1, "")
        return one_error_line(child.stderr)

    assert refusal("nosuch") == f"acetui: no such profile 'nosuch' (none saved yet in {config / 'profiles'})"
    save_profile("vocals", {"seed": 1})
    save_profile("drums", {"seed": 2})
    assert refusal("vocal") == "acetui: no such profile 'vocal' (saved: drums, vocals)"
