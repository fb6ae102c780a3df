"""Side-Step's flag spellings on ``acetui estimate`` and the fisher map flags, end to end on tiny checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest

from acetui.arguments import build_parser
from acetui.cli import main
from acetui.estimate.sidestep import dataset_hash
from tests.fisher_map_schema import fisher_map_problems
from tests.support import estimate_args


@pytest.mark.parametrize("output", ["--output", "--estimate-output", "-o"])
@pytest.mark.parametrize("variant", ["--model", "-M", "--model-variant"])
def test_side_step_flag_spellings_parse_alike(output, variant):
    args = build_parser().parse_args(["estimate", "-c", "ck", variant, "xl-turbo", "-d", "ds", output, "out.json"])
    assert str(args.checkpoint_dir) == "ck" and args.variant == "xl-turbo" and str(args.dataset_dir) == "ds"
    assert str(args.output) == "out.json"
    long = build_parser().parse_args(["estimate", "--checkpoint-dir", "ck", "--dataset-dir", "ds"])
    assert str(long.checkpoint_dir) == "ck" and str(long.dataset_dir) == "ds"


def test_fisher_map_flag_forms():
    parse = build_parser().parse_args
    assert parse(["estimate"]).fisher_map is None
    bare = parse(["estimate", "--fisher-map", "-d", "ds"])
    assert bare.fisher_map == "" and str(bare.dataset_dir) == "ds"
    given = parse(
        ["estimate", "--fisher-map", "map.json", "--force", "--rank", "32", "--rank-min", "8", "--rank-max", "64"]
    )
    assert given.fisher_map == "map.json" and given.force
    assert (given.base_rank, given.rank_min, given.rank_max) == (32, 8, 64)
    defaults = parse(["estimate"])
    assert (defaults.base_rank, defaults.rank_min, defaults.rank_max, defaults.force) == (64, 16, 128, False)


@pytest.fixture
def dataset_copy(dataset_dir, tmp_path):
    folder = tmp_path / "dataset"
    shutil.copytree(dataset_dir, folder)
    return folder


def _estimate(checkpoint_root, dataset, *extra):
    return main(estimate_args(checkpoint_root, dataset, "--estimate-batches", "2", *extra))


def test_side_step_spellings_end_to_end(checkpoint_root, dataset_dir, tmp_path, capsys):
    out = tmp_path / "estimate.json"
    assert _estimate(checkpoint_root, dataset_dir, "--output", str(out)) == 0
    entries = json.loads(out.read_text())
    assert isinstance(entries, list) and len(entries) == 32
    assert [entry["sensitivity"] for entry in entries] == sorted((e["sensitivity"] for e in entries), reverse=True)
    assert "decoder.layers." in capsys.readouterr().out


def test_bare_fisher_map_writes_into_the_dataset_folder(checkpoint_root, dataset_copy, capsys):
    assert (
        _estimate(
            checkpoint_root,
            dataset_copy,
            "--fisher-map",
            "--modules",
            "attention+mlp",
            "--score",
            "fisher",
            "--base-rank",
            "16",
            "--rank-min",
            "8",
            "--rank-max",
            "32",
        )
        == 0
    )
    data = json.loads((dataset_copy / "fisher_map.json").read_text())
    assert fisher_map_problems(data) == []
    assert data["base_rank"] == 16 and data["rank_budget"] == {"min": 8, "max": 32}
    assert data["dataset_hash"] == dataset_hash(dataset_copy) and data["total_batches"] == 2
    assert all(entry["effective_rank"] > 0 for entry in data["modules"])  # from the checkpoint's cache


def test_existing_map_is_refused_before_the_run_and_replaced_with_force(
    checkpoint_root, dataset_copy, capsys, isolated_app_dirs
):
    existing = dataset_copy / "fisher_map.json"
    existing.write_text('{"version": 2}')
    assert _estimate(checkpoint_root, dataset_copy, "--fisher-map") == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "already exists" in captured.err and "--force" in captured.err
    assert existing.read_text() == '{"version": 2}'
    assert not isolated_app_dirs.runs.exists() or not any(isolated_app_dirs.runs.iterdir())  # no run was started

    assert _estimate(checkpoint_root, dataset_copy, "--fisher-map", str(existing), "--force") == 0
    assert fisher_map_problems(json.loads(existing.read_text())) == []


def test_fisher_map_into_a_folder_and_bad_budgets(checkpoint_root, dataset_dir, tmp_path, capsys):
    folder = tmp_path / "maps"
    folder.mkdir()
    assert _estimate(checkpoint_root, dataset_dir, "--fisher-map", str(folder)) == 0
    assert fisher_map_problems(json.loads((folder / "fisher_map.json").read_text())) == []
    capsys.readouterr()
    for flags in (["--rank-min", "0"], ["--rank-min", "64", "--rank-max", "32"], ["--base-rank", "0"]):
        assert _estimate(checkpoint_root, dataset_dir, "--fisher-map", str(tmp_path / "x.json"), *flags) == 1
        assert capsys.readouterr().err.startswith("acetui: ")
    assert not (tmp_path / "x.json").exists()


def test_first_fisher_map_reports_effective_rank_progress_then_uses_the_cache(
    checkpoint_root, dataset_dir, tmp_path, capsys
):
    def run(name: str) -> str:
        argv = estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "1", quiet=False)
        assert main([*argv, "--fisher-map", str(tmp_path / name)]) == 0
        return capsys.readouterr().err

    first = run("first.json")
    assert "effective rank of the pretrained weights 32/32 (cached for this checkpoint)" in first
    assert "effective rank" not in run("second.json")
    assert json.loads((tmp_path / "first.json").read_text())["modules"][0]["effective_rank"] > 0
