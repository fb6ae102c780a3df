"""Profiles and last-used settings in TOML: round trip, strict validation, broken files reported."""

from __future__ import annotations

import json

import pytest

from acetui.cli import main
from acetui.estimate import EstimateRequest
from acetui.profiles import (
    ProfileError,
    delete_profile,
    list_profiles,
    load_last,
    load_profile,
    missing_folders,
    profile_path,
    save_last,
    save_profile,
    settings_of,
)


def test_profile_round_trip(tmp_path):
    request = EstimateRequest(tmp_path / "ckpt", "xl-base", tmp_path / "data", batches=7, top_k=8, crop_frames=500)
    save_profile("vocals", settings_of(request))
    assert list_profiles() == ["vocals"]
    assert EstimateRequest.from_dict(load_profile("vocals")) == request


def test_settings_a_profile_leaves_out_take_their_defaults(tmp_path):
    save_profile("plain", settings_of(EstimateRequest(tmp_path, "turbo", tmp_path, seed=3)))
    assert "crop_frames" not in profile_path("plain").read_text()
    draft = {"crop_frames": 200, "auto_batches": True, "top_k": 4, "variant": "base"}
    draft.update(load_profile("plain"))
    assert draft["crop_frames"] is None and draft["auto_batches"] is False and draft["top_k"] == 16
    assert draft["seed"] == 3 and draft["variant"] == "turbo"
    save_profile("partial", {"seed": 5})
    assert "variant" not in load_profile("partial")  # folders and variant have no default to impose


def test_delete_profile(tmp_path):
    save_profile("old", {"seed": 1})
    assert delete_profile("old") == profile_path("old")
    assert list_profiles() == []
    with pytest.raises(ProfileError, match=r"old\.toml: no such profile"):
        delete_profile("old")
    with pytest.raises(ProfileError, match="profile name"):
        delete_profile("../escape")


def test_missing_folders_names_each(tmp_path, dataset_dir):
    assert missing_folders({"dataset_dir": str(dataset_dir), "seed": 1}) == ""
    gone = tmp_path / "gone"
    assert missing_folders({"checkpoint_dir": str(gone), "dataset_dir": str(dataset_dir)}) == (
        f"checkpoint folder {gone} not found"
    )
    assert missing_folders({"checkpoint_dir": str(gone), "dataset_dir": str(gone)}) == (
        f"checkpoint folder {gone} not found; dataset folder {gone} not found"
    )
    plain_file = tmp_path / "notes.txt"
    plain_file.write_text("x")
    assert missing_folders({"dataset_dir": str(plain_file)}) == f"dataset folder {plain_file} is not a folder"


def test_unknown_key_and_wrong_type_name_file_and_key(tmp_path):
    path = profile_path("broken")
    path.parent.mkdir(parents=True)
    path.write_text('variant = "base"\ncolour = "red"\n')
    with pytest.raises(ProfileError, match=r"broken\.toml: unknown key 'colour'"):
        load_profile("broken")
    path.write_text("batches = 'five'\n")
    with pytest.raises(ProfileError, match=r"key 'batches' should be int"):
        load_profile("broken")
    path.write_text("batches = [\n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile("broken")


def test_bad_profile_names_are_refused():
    with pytest.raises(ProfileError, match="profile name"):
        save_profile("../escape", {})


def test_last_settings_survive_and_a_broken_file_is_reported_not_fatal(isolated_app_dirs):
    assert load_last() == ({}, "")
    save_last({"variant": "sft", "batches": 3})
    assert load_last() == ({"variant": "sft", "batches": 3}, "")
    isolated_app_dirs.last_settings.write_text("not toml [")
    values, problem = load_last()
    assert values == {} and "last.toml" in problem


def test_cli_runs_a_profile_and_flags_win(checkpoint_root, dataset_dir, tmp_path, capsys):
    save_profile(
        "quick",
        {
            "checkpoint_dir": str(checkpoint_root),
            "variant": "turbo",
            "dataset_dir": str(dataset_dir),
            "batches": 2,
            "top_k": 3,
        },
    )
    out = tmp_path / "out.json"
    assert main(["estimate", "--profile", "quick", "--top-k", "4", "-o", str(out), "--quiet"]) == 0
    assert sum(entry["top_k"] for entry in json.loads(out.read_text())) == 4
    assert main(["estimate", "--profile", "missing-one", "--quiet"]) == 1
    assert "no such profile" in capsys.readouterr().err
