"""The parameters screen at 80x24: focus and its visibility, profiles (stale values, missing folders,
replace and delete), and the form's checks on top-k, seed and timestep focus."""

from __future__ import annotations

from dataclasses import replace

import pytest
from textual import events
from textual.widgets import DataTable, Input, OptionList, Select, Static
from textual.widgets._select import SelectCurrent

from acetui.data import write_dataset
from acetui.estimate import EstimateRequest, rank_modules
from acetui.model.config import DecoderConfig
from acetui.model.synthetic import TINY, write_checkpoint
from acetui.model.variants import CONFIG_FILE
from acetui.profiles import list_profiles, load_profile, profile_path, save_profile, settings_of
from acetui.tui.app import make_app
from acetui.tui.screens import parameters
from acetui.tui.screens.checkpoint import CheckpointScreen
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.dataset import DatasetScreen
from acetui.tui.screens.parameters import ParametersScreen, scored_units
from acetui.tui.screens.profile import ProfileScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.screens.run import RunScreen
from acetui.tui.widgets.settings_form import SettingsForm
from tests.tui_support import SIZE, fill, pick_to_parameters, record_run, settle, wait_for


def parameters_app(checkpoint_root, dataset_dir, **settings):
    """The app opened at the parameters step with these settings, as the demo and ``--profile`` open it."""
    request = EstimateRequest(checkpoint_dir=checkpoint_root, variant="turbo", dataset_dir=dataset_dir, **settings)
    return make_app(request=request)


def messages(app) -> list[str]:
    return [note.message for note in app._notifications]


def value(app, ident: str) -> str:
    return app.screen.query_one(f"#{ident}", Input).value


async def test_first_field_focused_and_typing_replaces_after_a_run(checkpoint_root, dataset_dir):
    app = parameters_app(checkpoint_root, dataset_dir, batches=5, top_k=4)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.screen.focused is app.screen.query_one("#batches", Input)
        await pilot.press("1")
        assert value(app, "batches") == "1"
        await pilot.press("shift+tab")
        assert app.screen.focused.id == "score"  # Tab cycles the fields only, not the scrolling container
        await pilot.press("tab", "tab")
        assert app.screen.focused.id == "top-k"  # the disabled auto-only fields are skipped
        await pilot.press("2")
        assert value(app, "top-k") == "2"
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert isinstance(app.screen, ParametersScreen) and app.screen.focused.id == "top-k"
        await pilot.press("3")
        assert value(app, "top-k") == "3"


async def test_focused_fields_stand_out(checkpoint_root, dataset_dir):
    app = parameters_app(checkpoint_root, dataset_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        unfocused_input = app.screen.query_one("#seed", Input).styles.background
        assert app.screen.query_one("#batches", Input).styles.background != unfocused_input
        unfocused_select = app.screen.query_one("#dtype", Select).query_one(SelectCurrent).styles.background
        app.screen.query_one("#granularity", Select).focus()
        await pilot.pause()
        focused_select = app.screen.query_one("#granularity", Select).query_one(SelectCurrent).styles.background
        assert abs(focused_select.brightness - unfocused_select.brightness) > 0.1


async def test_loading_a_profile_replaces_every_setting(checkpoint_root, dataset_dir):
    save_profile(
        "plain",
        settings_of(EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=3, score="fisher")),
    )
    app = parameters_app(checkpoint_root, dataset_dir, crop_frames=200, seed=9, auto_batches=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert value(app, "crop-frames") == "200"
        await pilot.press("ctrl+o", "enter")
        await settle(pilot)
        assert value(app, "crop-frames") == "" and value(app, "seed") == "42" and value(app, "batches") == "3"
        assert app.screen.query_one("#score", Select).value == "fisher"
        assert app.draft["crop_frames"] is None and not app.draft["auto_batches"]


async def test_profile_with_a_missing_folder_says_which(checkpoint_root, dataset_dir, tmp_path):
    gone = tmp_path / "moved-away"
    save_profile("gone", {"checkpoint_dir": str(checkpoint_root), "variant": "turbo", "dataset_dir": str(gone)})
    app = parameters_app(checkpoint_root, dataset_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "needs ~" in str(app.screen.query_one("#hint", Static).render())
        await pilot.press("ctrl+o", "enter")
        await settle(pilot)
        assert f"profile gone: dataset folder {gone} not found" in messages(app)
        hint = str(app.screen.query_one("#hint", Static).render())
        assert f"cannot run: dataset folder {gone} not found" in hint


async def test_the_steps_before_show_the_folders_a_loaded_profile_set(checkpoint_root, dataset_dir, tmp_path):
    """Back from parameters after loading a profile, the dataset step showed the folder picked there before,
    and its next put that folder back beside the profile's checkpoint: a run of neither's choosing."""
    other = tmp_path / "other-dataset"
    write_dataset(other, count=2, condition_width=TINY.condition_width, seed=3, frames=(9, 30))
    save_profile("other", {"checkpoint_dir": str(checkpoint_root), "variant": "base", "dataset_dir": str(other)})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        assert (app.draft["variant"], app.draft["dataset_dir"]) == ("turbo", str(dataset_dir))
        await pilot.press("ctrl+o", "down", "enter")
        await settle(pilot)
        assert (app.draft["variant"], app.draft["dataset_dir"]) == ("base", str(other))
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, DatasetScreen)
        assert app.screen.query_one("#path", Input).value == str(other)
        assert str(app.screen.query_one("#variant", Static).render()) == "for base"
        assert "2 valid samples" in str(app.screen.query_one("#summary", Static).render())
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, CheckpointScreen)
        assert app.screen.variants[app.screen.query_one("#variants", DataTable).cursor_row].name == "base"
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert app.screen.query_one("#path", Input).value == str(other)
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert (app.draft["variant"], app.draft["dataset_dir"]) == ("base", str(other))


async def test_saving_over_a_profile_asks_first(checkpoint_root, dataset_dir):
    save_profile("mine", {"seed": 1})
    app = parameters_app(checkpoint_root, dataset_dir, seed=2)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+s", *"mine", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, ParametersScreen) and load_profile("mine")["seed"] == 1
        await pilot.press("ctrl+s", *"mine", "enter")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, ParametersScreen) and load_profile("mine")["seed"] == 2


async def test_profile_picker_deletes_after_asking(checkpoint_root, dataset_dir):
    save_profile("first", {"seed": 1})
    save_profile("second", {"seed": 2})
    app = parameters_app(checkpoint_root, dataset_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o", "down", "delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert list_profiles() == ["first", "second"]
        await pilot.press("delete", "y")
        await pilot.pause()
        assert list_profiles() == ["first"] and not profile_path("second").exists()
        assert isinstance(app.screen, ProfileScreen)
        assert app.screen.query_one("#names", OptionList).option_count == 1
        await pilot.press("delete", "y")
        await pilot.pause()
        assert list_profiles() == [] and isinstance(app.screen, ParametersScreen)


async def test_top_k_above_the_scored_modules_is_flagged(checkpoint_root, dataset_dir):
    app = parameters_app(checkpoint_root, dataset_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        warning = app.screen.query_one("#top-k-warning", Static)
        assert not warning.display
        fill(pilot, top_k="9999")
        await pilot.pause()
        assert warning.display
        assert str(warning.render()) == "top-k 9999 exceeds the 32 modules scored: it will be capped at 32"
        app.screen.query_one("#granularity", Select).value = "layer"
        await pilot.pause()
        assert "the 8 layer groups scored" in str(warning.render())
        fill(pilot, top_k="8")
        await pilot.pause()
        assert not warning.display


def test_scored_units_match_what_a_run_ranks(checkpoint_root, dataset_dir):
    config = DecoderConfig.from_json_file(checkpoint_root / "acestep-v15-turbo" / CONFIG_FILE)
    result = record_run(checkpoint_root, dataset_dir, batches=1, modules="attention+mlp")
    assert scored_units(config, "attention+mlp", "module") == (len(rank_modules(result)), "modules")
    layer_units = len(rank_modules(result, granularity="layer"))
    assert scored_units(config, "attention+mlp", "layer") == (layer_units, "layer groups")


async def test_seed_range_matches_the_engine(checkpoint_root, dataset_dir):
    app = parameters_app(checkpoint_root, dataset_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for seed in (-1, 2**63):
            fill(pilot, seed=str(seed))
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert isinstance(app.screen, ParametersScreen)
            assert messages(app)[-1] == f"seed must be at least 0 and below 2**63, got {seed}"
        fill(pilot, seed=str(2**63 - 1))
        assert app.screen.query_one(SettingsForm).values()["seed"] == 2**63 - 1
        fill(pilot, seed="9" * 5000)  # past int()'s digit limit: once a traceback that closed the app
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert messages(app)[-1] == "seed is far out of range (5000 digits)"


@pytest.mark.parametrize(
    ("field", "text", "key", "title", "message"),
    [
        (
            "timestep_focus",
            "0.9,0.1",
            "ctrl+r",
            "Cannot run",
            "timestep focus range 0.9,0.1 must satisfy 0 <= LOW < HIGH <= 1",
        ),
        ("top_k", "0", "ctrl+s", "Profile not saved", "top-k must be at least 1, got 0"),
    ],
    ids=["run", "save-profile"],
)
async def test_an_invalid_field_says_what_is_wrong_and_what_it_stopped(
    checkpoint_root, dataset_dir, field, text, key, title, message
):
    """Saving a profile with a bad field said "Cannot run" too."""
    app = parameters_app(checkpoint_root, dataset_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        fill(pilot, **{field: text})
        await pilot.press(key)
        await pilot.pause()
        assert isinstance(app.screen, ParametersScreen)
        notice = list(app._notifications)[-1]
        assert (notice.title, notice.message) == (title, message)


async def test_the_closed_device_list_names_what_auto_runs_on(checkpoint_root, dataset_dir):
    """``auto`` was already the value before the devices were listed, so the closed list kept "auto"."""
    app = parameters_app(checkpoint_root, dataset_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = str(app.screen.query_one("#device", Select).query_one(SelectCurrent).query_one("#label").render())
        assert shown.startswith("auto (") and shown.endswith(")")


async def test_batches_take_auto_in_any_case(checkpoint_root, dataset_dir):
    app = parameters_app(checkpoint_root, dataset_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        fill(pilot, batches="AUTO")
        await pilot.pause()
        assert app.screen.query_one(SettingsForm).values()["auto_batches"] is True
        assert not app.screen.query_one("#max-batches", Input).disabled


async def test_ctrl_r_typed_right_after_a_value_runs_with_that_value(checkpoint_root, dataset_dir):
    """Keys sent together (type-ahead, SSH): ctrl+r's action ran before the field had taken the 0 of 30."""
    app = parameters_app(checkpoint_root, dataset_dir, batches=3)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        field = app.screen.query_one("#batches", Input)
        field.focus()
        await pilot.press("end")
        for key, character in (("0", "0"), ("ctrl+r", None)):  # both queued before either is handled
            app.post_message(events.Key(key, character))
        await pilot.pause()
        await wait_for(pilot, lambda: any(isinstance(screen, RunScreen) for screen in app.screen_stack))
        run = next(screen for screen in app.screen_stack if isinstance(screen, RunScreen))
        assert run.request.batches == 30
        run.estimator.cancel()
        await settle(pilot)


async def test_a_profile_naming_another_model_is_checked_against_that_model(checkpoint_root, dataset_dir, tmp_path):
    """The dataset step's scan was remembered by folder alone: a profile whose model the same samples do not
    fit ran, and failed at once, instead of being refused."""
    wide = tmp_path / "wide"
    write_checkpoint(wide / "acestep-v15-base", replace(TINY, encoder_hidden_size=TINY.condition_width * 2))
    save_profile("wide", {"checkpoint_dir": str(wide), "variant": "base", "dataset_dir": str(dataset_dir)})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pick_to_parameters(pilot, checkpoint_root, dataset_dir)
        await pilot.press("ctrl+o", "enter")
        await settle(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert isinstance(app.screen, ParametersScreen)
        assert any(f"no valid samples in dataset folder {dataset_dir}" in message for message in messages(app))


async def test_the_cuda_graphs_row_shows_for_a_gpu_only_and_keeps_its_value(checkpoint_root, dataset_dir, monkeypatch):
    """At 80x24 a row that does nothing on the CPU cost the advice below the form its last line."""
    free = {"auto": (False, 2**36), "cuda:0": (True, 2**34), "cpu": (False, 2**36)}
    gpu = ([("auto", "auto"), ("cuda:0 Test GPU", "cuda:0"), ("cpu", "cpu")], free, "")
    monkeypatch.setattr(parameters, "probe_devices", lambda: gpu)
    app = parameters_app(checkpoint_root, dataset_dir, cuda_graphs="off", device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.screen.query_one(SettingsForm)
        row = [app.screen.query_one("#cuda-graphs-label"), app.screen.query_one("#cuda-graphs", Select)]
        assert [widget.display for widget in row] == [False, False]
        for device, shown in (("cuda:0", True), ("cpu", False)):
            app.screen.query_one("#device", Select).value = device
            await pilot.pause()
            assert [widget.display for widget in row] == [shown, shown]
            assert form.values()["cuda_graphs"] == "off"  # hidden, a profile's value still runs
