"""A ``--profile`` before the subcommand, a profile's out-of-range value, and ``resume`` of a record file
that is not the history's record of its run: each was passed over without a word."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from acetui import paths
from acetui.estimate.result import record_file
from acetui.profiles import load_profile, profile_path, save_profile
from tests.support import estimate_args, one_error_line, run_cli, run_records
from tests.tui_support import record_run

CPU = ("--device", "cpu", "--dtype", "fp32")


def _save_k3(checkpoint_root, dataset_dir) -> None:
    save_profile(
        "k3",
        {"checkpoint_dir": str(checkpoint_root), "variant": "turbo", "dataset_dir": str(dataset_dir), "top_k": 3},
    )


# ------------------------------------------------------------------------------------ --profile's place


def test_a_profile_before_estimate_is_used_as_after_it(checkpoint_root, dataset_dir, tmp_path, capsys):
    """It was dropped: ``missing --checkpoint-dir, ...``, or with the folders given 16 rows instead of 3."""
    _save_k3(checkpoint_root, dataset_dir)
    out = tmp_path / "out.json"
    code, _, err = run_cli(capsys, "--profile", "k3", "estimate", "-q", "--estimate-batches", "1", *CPU, "-o", out)
    assert code == 0 and err == ""
    assert sum(entry["top_k"] for entry in json.loads(out.read_text())) == 3


def test_a_profile_after_estimate_wins_over_one_before_it(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    """As a repeated ``--profile`` after it: the later one is used (here, one that is not saved)."""
    _save_k3(checkpoint_root, dataset_dir)
    code, _, err = run_cli(capsys, "--profile", "k3", "estimate", "-q", "--profile", "nosuch")
    assert code == 1 and one_error_line(err) == "acetui: no such profile 'nosuch' (saved: k3)"
    code, _, err = run_cli(capsys, "--profile", "nosuch", "estimate", "-q")
    assert code == 1 and one_error_line(err) == "acetui: no such profile 'nosuch' (saved: k3)"
    assert run_records(isolated_app_dirs) == {}


@pytest.mark.parametrize(
    "command",
    [
        ["locate"],
        ["runs"],
        ["resume", "x"],
        ["show", "x"],
        ["compare", "a.json", "b.json"],
        ["variants", "root"],
        ["scan", "data"],
    ],
)
def test_a_profile_before_a_command_that_takes_none_is_refused(command, capsys):
    """``acetui --profile nosuch locate`` printed the folders and exited 0, the profile silently unused."""
    code, out, err = run_cli(capsys, "--profile", "nosuch", *command)
    assert code == 1 and out == ""
    assert one_error_line(err) == f"acetui: --profile does not apply to {command[0]} (only to the app and to estimate)"


# ------------------------------------------------------------------------------------ a profile's ranges


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"top_k": 0}, "top-k must be at least 1, got 0"),
        ({"granularity": "block"}, "granularity must be one of module, layer, got 'block'"),
        ({"timestep_focus": "0.5,0.2"}, "timestep focus range 0.5,0.2 must satisfy 0 <= LOW < HIGH <= 1"),
        (
            {"batches": 1000, "batch_size": 1024},
            "batches x batch size must be at most 1,000,000 samples drawn, got 1,024,000",
        ),
    ],
)
def test_a_profiles_value_out_of_range_names_its_file(
    settings, problem, checkpoint_root, dataset_dir, capsys, isolated_app_dirs
):
    """As a wrong type does (``<file>: key 'top_k' should be int, ...``); it said only what was wrong."""
    save_profile("bad", settings)
    code, _, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--profile", "bad"))
    assert code == 1 and one_error_line(err) == f"acetui: {profile_path('bad')}: {problem}"
    assert run_records(isolated_app_dirs) == {}


def test_a_profiles_bad_value_that_a_flag_replaces_is_not_used(checkpoint_root, dataset_dir, tmp_path, capsys):
    save_profile("zero", {"top_k": 0})
    out = tmp_path / "out.json"
    args = estimate_args(checkpoint_root, dataset_dir, "--profile", "zero", "--top-k", "2", "--estimate-batches", "1")
    assert run_cli(capsys, *args, "-o", out)[0] == 0
    assert sum(entry["top_k"] for entry in json.loads(out.read_text())) == 2
    code, _, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--top-k", "0"))
    assert code == 1 and one_error_line(err) == "acetui: top-k must be at least 1, got 0"  # a flag's: no file


# ------------------------------------------------------------------------------------ resume <record file>


def _stopped_run(checkpoint_root, dataset_dir, tmp_path: Path, name: str) -> tuple[str, Path, Path]:
    """A run stopped at 1 of 3 batches, and a copy of its record outside the history that asks for 4."""
    run = record_run(checkpoint_root, dataset_dir, batches=3, stop_after=1)
    history = record_file(paths.app_dirs().runs, run.run_id)
    data = json.loads(history.read_text())
    data["request"]["batches"] = 4
    copy = tmp_path / "ext" / name
    copy.parent.mkdir()
    copy.write_text(json.dumps(data))
    return run.run_id, copy, history


def test_resuming_a_copy_of_a_run_the_history_holds_is_refused(
    checkpoint_root, dataset_dir, tmp_path, capsys, isolated_app_dirs
):
    """The history's record was continued instead, to its own batch count, and the copy left as it was."""
    run_id, copy, history = _stopped_run(checkpoint_root, dataset_dir, tmp_path, "copy.json")
    before = history.read_bytes(), copy.read_bytes()
    code, _, err = run_cli(capsys, "resume", copy, "-q")
    assert code == 1 and one_error_line(err) == (
        f"acetui: {copy} holds run {run_id}, whose record in the history is {history}: resume that one with "
        f"acetui resume {run_id}, or move it out of {history.parent} to resume {copy} instead"
    )
    assert (history.read_bytes(), copy.read_bytes()) == before


def test_the_historys_own_record_by_path_is_resumed(checkpoint_root, dataset_dir, tmp_path, capsys, isolated_app_dirs):
    run_id, _, history = _stopped_run(checkpoint_root, dataset_dir, tmp_path, "unused.json")
    code, _, err = run_cli(capsys, "resume", history)
    assert code == 0 and "done: 3 batches (2 now, 1 before)" in err
    assert run_records(isolated_app_dirs)[run_id]["status"] == "complete"


def test_a_record_file_whose_run_the_history_lacks_is_continued_into_it(
    checkpoint_root, dataset_dir, tmp_path, capsys, isolated_app_dirs
):
    """What the refusal's advice leads to: with the history's record moved away, the named file's run
    (and its edited batch count) is continued into the history; the file itself is left as it was."""
    run_id, copy, history = _stopped_run(checkpoint_root, dataset_dir, tmp_path, "copy.json")
    shutil.move(history, tmp_path / "ext" / "old.json")
    before = copy.read_bytes()
    code, _, err = run_cli(capsys, "resume", copy)
    assert code == 0 and "done: 4 batches (3 now, 1 before)" in err
    assert run_records(isolated_app_dirs)[run_id]["status"] == "complete" and copy.read_bytes() == before


def test_estimate_saves_its_settings_as_a_profile_and_never_replaces_another(
    checkpoint_root, dataset_dir, capsys, isolated_app_dirs
):
    """Headless, a profile came only from the app's ctrl+s; a name taken by other settings is refused before
    the run, as nothing can ask there."""
    args = estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "2", "--top-k", "5")
    code, _, err = run_cli(capsys, *args, "--save-profile", "vocals")
    path = profile_path("vocals")
    assert code == 0 and err == f"acetui: saved profile vocals ({path})\n"
    saved = load_profile("vocals")
    assert (saved["batches"], saved["top_k"], saved["dataset_dir"]) == (2, 5, str(dataset_dir))
    before = path.read_bytes()
    assert run_cli(capsys, "estimate", "-q", "--profile", "vocals", "--save-profile", "vocals")[::2] == (0, "")
    changed = ("estimate", "-q", "--profile", "vocals", "--top-k", "3", "--save-profile", "vocals")
    code, out, err = run_cli(capsys, *changed)
    assert (
        code == 1
        and out == ""
        and one_error_line(err)
        == (
            f"acetui: profile 'vocals' exists with other settings ({path}): acetui profiles --delete vocals first, "
            "or save under another name"
        )
    )
    assert path.read_bytes() == before and len(run_records(isolated_app_dirs)) == 2  # the refused one never ran
    # Saved before a setting existed (cuda_graphs): the file leaves it out, its default is what it holds.
    path.write_text("".join(line for line in before.decode().splitlines(True) if not line.startswith("cuda_graphs")))
    assert run_cli(capsys, "estimate", "-q", "--profile", "vocals", "--save-profile", "vocals")[::2] == (0, "")


def test_profiles_lists_shows_and_deletes_them(checkpoint_root, dataset_dir, tmp_path, capsys, isolated_app_dirs):
    folder = isolated_app_dirs.profiles
    assert run_cli(capsys, "profiles") == (0, f"no profiles saved yet in {folder}\n", "")
    save_profile("auto", {"checkpoint_dir": str(checkpoint_root), "variant": "base", "dataset_dir": str(dataset_dir),
                          "auto_batches": True})  # fmt: skip
    save_profile("moved", {"variant": "turbo", "dataset_dir": str(tmp_path / "gone"), "batches": 7})
    tuned = {"checkpoint_dir": str(checkpoint_root), "variant": str(tmp_path / "ft" / "acestep-v15-sft")}
    save_profile("tuned", {**tuned, "dataset_dir": str(dataset_dir)})  # a fine-tune by its path: its folder's name
    (folder / "broken.toml").write_text("batches = ")
    (folder / "zero.toml").write_text("top_k = 0\n")  # reads as TOML, cannot run
    code, out, _ = run_cli(capsys, "profiles")
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == ["profile", "variant", "dataset", "batches"]
    assert rows[0].split() == ["auto", "base", dataset_dir.name, "auto"]
    assert rows[1].startswith("broken ") and "unusable: " in rows[1] and "not valid TOML" in rows[1]
    assert rows[2].split()[:4] == ["moved", "turbo", "gone", "7"]
    assert rows[2].endswith(f"dataset folder {tmp_path / 'gone'} not found")
    assert rows[3].split() == ["tuned", "sft", dataset_dir.name, "5"]
    assert rows[4].startswith("zero ") and rows[4].endswith("unusable: top-k must be at least 1, got 0")
    code, out, _ = run_cli(capsys, "profiles", "--show", "moved")
    assert code == 0 and out == f"# {profile_path('moved')}\n{profile_path('moved').read_text()}"
    deleted = f"deleted profile moved ({profile_path('moved')})\n"
    assert run_cli(capsys, "profiles", "--delete", "moved") == (0, deleted, "")
    code, _, err = run_cli(capsys, "profiles", "--show", "moved")
    assert code == 1 and one_error_line(err) == "acetui: no such profile 'moved' (saved: auto, broken, tuned, zero)"
