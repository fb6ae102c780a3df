"""Comparing rankings: known correlations, rank changes, ratios, and the files the CLI accepts."""

from __future__ import annotations

import json
import math

import pytest

from acetui.cli import main
from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest, Estimator
from acetui.estimate.compare import (
    compare_sensitivities,
    difference,
    load_operand,
    log_distance,
    result_sensitivities,
    spearman,
)
from acetui.estimate.exports import decoder_name, estimate_json
from acetui.estimate.scores import rank_modules
from tests.support import one_error_line, run_cli

MODULES = {f"decoder.layers.{n}.self_attn.q_proj": float(10 - n) for n in range(6)}


@pytest.fixture(scope="module")
def run(checkpoint_root, dataset_dir):
    request = EstimateRequest(
        checkpoint_dir=checkpoint_root, variant="base", dataset_dir=dataset_dir, batches=3, device="cpu", top_k=4
    )
    return Estimator(request).run()


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)  # ties share ranks
    assert math.isnan(spearman([1], [1]))
    assert math.isnan(spearman([1, 1], [1, 2]))


def test_self_comparison_is_identity():
    comparison = compare_sensitivities(MODULES, MODULES, top_k=3)
    assert comparison.spearman == pytest.approx(1.0)
    assert comparison.top_k_overlap == 1.0
    assert all(change.rank_change == 0 and change.ratio == 1.0 for change in comparison.modules)


def test_reversed_ranking():
    reversed_values = {name: 100.0 - value for name, value in MODULES.items()}
    comparison = compare_sensitivities(MODULES, reversed_values, top_k=3)
    assert comparison.spearman == pytest.approx(-1.0)
    assert comparison.top_k_overlap == 0.0
    first = comparison.modules[0]
    assert (first.rank_a, first.rank_b, first.rank_change) == (1, 6, -5)
    assert {c.module for c in comparison.most_different(2)} == {
        "decoder.layers.0.self_attn.q_proj",
        "decoder.layers.5.self_attn.q_proj",
    }


def test_ratios_names_and_missing_modules():
    second = {name.removeprefix("decoder."): 2 * value for name, value in MODULES.items()}
    second.pop("layers.5.self_attn.q_proj")
    second["layers.9.mlp.up_proj"] = 1.0
    comparison = compare_sensitivities(MODULES, second, top_k=2)
    assert decoder_name("layers.1.cross_attn.v_proj") == "decoder.layers.1.cross_attn.v_proj"
    assert decoder_name("decoder.layers.1.cross_attn.v_proj") == "decoder.layers.1.cross_attn.v_proj"
    assert all(change.ratio == 2.0 for change in comparison.modules)
    assert comparison.spearman == pytest.approx(1.0)
    assert comparison.only_a == ["decoder.layers.5.self_attn.q_proj"]
    assert comparison.only_b == ["decoder.layers.9.mlp.up_proj"]
    assert len(comparison.modules) == 5
    assert comparison.modules[0].share_ratio == pytest.approx(1.0)
    assert json.loads(json.dumps(comparison.to_dict()))["spearman"] == pytest.approx(1.0)


def test_zero_on_one_side_differs_most_and_zero_on_both_sides_least():
    """One rule (``log_distance``) for the CLI's most-different list and the Compare screen's sort: a ratio of
    0 or inf (zero on one side only) is the largest change, 0 / 0 (NaN: zero on both sides) none at all."""
    assert log_distance(2.0) == pytest.approx(log_distance(0.5)) == pytest.approx(math.log(2))
    assert log_distance(0.0) == log_distance(math.inf) == math.inf and log_distance(math.nan) == 0.0
    # z and w both move one place; z is zero in both runs, w only in A
    a, b = {"x": 2.0, "y": 1.0, "z": 0.0, "w": 0.0}, {"x": 4.0, "y": 1.0, "z": 0.0, "w": 1.0}
    comparison = compare_sensitivities(a, b)
    changes = {change.module: change for change in comparison.modules}
    assert (changes["z"].rank_change, changes["w"].rank_change) == (-1, 1)
    assert math.isnan(changes["z"].share_ratio) and changes["w"].share_ratio == math.inf
    assert [change.module for change in comparison.most_different()] == ["w", "z", "y", "x"]
    assert difference(changes["z"]) == (1, 0.0)


def test_run_against_itself_and_its_export(run, tmp_path):
    same = result_sensitivities(run)
    assert compare_sensitivities(same, same).spearman == pytest.approx(1.0)
    exported = tmp_path / "ranking.json"
    exported.write_text(estimate_json(rank_modules(run), 4))
    record = tmp_path / "run.json"
    record.write_text(json.dumps(run.to_dict()))
    assert load_operand(record).sensitivities("grad-norm") == result_sensitivities(run)
    assert load_operand(exported).sensitivities("fisher") == pytest.approx(result_sensitivities(run))
    fisher = load_operand(record).sensitivities("fisher")
    assert compare_sensitivities(fisher, load_operand(record).sensitivities("grad-norm")).spearman < 1.0


def test_an_export_names_its_score_and_a_comparison_with_a_run_uses_it(run, tmp_path, capsys):
    """An export ranked by fisher compared with its own run: by fisher, unless --score says otherwise, and
    then the mix is warned about (ratios of fisher over grad-norm values mean nothing)."""
    exported = tmp_path / "fisher.json"
    exported.write_text(estimate_json(rank_modules(run, "fisher"), 4, scored_by="fisher"))
    assert {entry["scored_by"] for entry in json.loads(exported.read_text())} == {"fisher"}
    assert load_operand(exported).fixed_score == "fisher"
    record = tmp_path / "run.json"
    record.write_text(json.dumps(run.to_dict()))
    assert main(["compare", str(record), str(exported), "-o", str(tmp_path / "same.json")]) == 0
    assert "Spearman rank correlation +1.000" in capsys.readouterr().out
    assert {module["ratio"] for module in json.loads((tmp_path / "same.json").read_text())["modules"]} == {1.0}
    assert main(["compare", str(record), str(exported), "--score", "grad-norm"]) == 0
    warning = f"acetui: warning: {exported} is ranked by fisher, compared with grad-norm"
    assert warning in capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(
    ("scored_by", "expected"),
    [
        (["fisher", "loss"], "entry 1: scored_by 'loss' is not one of grad-norm, fisher, relative"),
        (["fisher", None], "the entries disagree on scored_by (fisher, unset)"),
    ],
    ids=["unknown", "mixed"],
)
def test_an_exports_score_must_be_one_of_ours_and_the_same_throughout(scored_by, expected, tmp_path):
    path = tmp_path / "ranking.json"
    entries = [{"module": name, "sensitivity": 1.0} for name in list(MODULES)[:2]]
    for entry, score in zip(entries, scored_by):
        if score is not None:
            entry["scored_by"] = score
    path.write_text(json.dumps(entries))
    with pytest.raises(AcetuiError) as caught:
        load_operand(path)
    assert str(caught.value) == f"{path}: {expected}"


def test_bad_files_are_named(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(AcetuiError, match="broken.json"):
        load_operand(broken)
    with pytest.raises(AcetuiError, match="missing.json"):
        load_operand(tmp_path / "missing.json")


def test_cli_compare(run, tmp_path, capsys):
    record = tmp_path / "run.json"
    record.write_text(json.dumps(run.to_dict()))
    exported = tmp_path / "reversed.json"
    values = result_sensitivities(run)
    exported.write_text(json.dumps([{"module": name, "sensitivity": -value} for name, value in values.items()]))
    output = tmp_path / "comparison.json"
    assert main(["compare", str(record), str(exported), "--top", "3", "--output", str(output)]) == 0
    text = capsys.readouterr().out
    assert "Spearman rank correlation -1.000" in text
    saved = json.loads(output.read_text())
    assert saved["spearman"] == pytest.approx(-1.0)
    assert len(saved["modules"]) == len(values)
    assert main(["compare", str(record), str(tmp_path / "nope.json")]) == 1


def _ranking_file(path, modules) -> str:
    path.write_text(json.dumps([{"module": name, "sensitivity": value} for name, value in modules.items()]))
    return str(path)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--top-k", "0"], "acetui: --top-k must be a positive integer, got 0"),
        (["--top-k", "-3"], "acetui: --top-k must be a positive integer, got -3"),
        (["--top", "0"], "acetui: --top must be a positive integer, got 0"),
        (["--top", "-1"], "acetui: --top must be a positive integer, got -1"),
    ],
    ids=["top-k-0", "top-k-negative", "top-0", "top-negative"],
)
def test_cli_compare_refuses_counts_below_one(option, expected, tmp_path, capsys):
    ranking = _ranking_file(tmp_path / "a.json", MODULES)
    output = tmp_path / "comparison.json"
    code, out, err = run_cli(capsys, "compare", ranking, ranking, *option, "--output", output)
    assert (code, out, one_error_line(err)) == (1, "", expected)
    assert not output.exists()


def test_rankings_with_no_module_in_common_are_an_error(tmp_path, capsys):
    first = _ranking_file(tmp_path / "a.json", MODULES)
    second = _ranking_file(tmp_path / "b.json", {"decoder.layers.9.cross_attn.v_proj": 1.0})
    code, out, err = run_cli(capsys, "compare", first, second)
    assert (code, out) == (1, "")
    assert one_error_line(err) == (
        "acetui: the two rankings share no modules (A has 6, e.g. decoder.layers.0.self_attn.q_proj; "
        "B has 1, e.g. decoder.layers.9.cross_attn.v_proj)"
    )


def test_a_layer_ranking_against_a_module_ranking_says_how_to_line_them_up(run, tmp_path, capsys):
    layers = _ranking_file(tmp_path / "layers.json", {"decoder.layers.0.self_attn": 2.0, "decoder.layers.1.mlp": 1.0})
    code, out, err = run_cli(capsys, "compare", layers, _ranking_file(tmp_path / "modules.json", MODULES))
    assert code == 1 and one_error_line(err).endswith(
        "; A ranks layers and B modules: acetui compare --granularity ranks a run either way"
    )
    record = tmp_path / "run.json"
    record.write_text(json.dumps(run.to_dict()))
    code, out, err = run_cli(capsys, "compare", record, layers, "--granularity", "layer")
    assert code == 0 and "common modules" in out


BAD_FISHER_MAPS = {
    "modules-object": ({"version": 2, "modules": {"a": 1}, "rank_pattern": {"layers.0.self_attn.q_proj": 8}},
                       "fisher map 'modules' should be a non-empty list of modules, found {\"a\": 1}"),
    "modules-string": ({"modules": "layers.0", "rank_pattern": {"layers.0.self_attn.q_proj": 8}},
                       "fisher map 'modules' should be a non-empty list of modules, found \"layers.0\""),
    "modules-empty": ({"version": 2, "modules": [], "rank_pattern": {"layers.0.self_attn.q_proj": 8}},
                      "fisher map 'modules' should be a non-empty list of modules, found []"),
    "modules-missing": ({"version": 2, "rank_pattern": {"layers.0.self_attn.q_proj": 8}},
                        "fisher map version 2 has no 'modules' list"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_FISHER_MAPS)
def test_a_malformed_fisher_map_is_an_error_naming_it(case, tmp_path):
    content, expected = BAD_FISHER_MAPS[case]
    path = tmp_path / "fisher_map.json"
    path.write_text(json.dumps(content))
    with pytest.raises(AcetuiError) as caught:
        load_operand(path)
    assert str(caught.value) == f"{path}: {expected}"


def test_a_version_1_fisher_map_compares_its_rank_pattern(tmp_path):
    path = tmp_path / "fisher_map.json"
    path.write_text(json.dumps({"rank_pattern": {"layers.0.self_attn.q_proj": 16, "layers.1.self_attn.q_proj": 8}}))
    assert load_operand(path).sensitivities("grad-norm") == {
        "decoder.layers.0.self_attn.q_proj": 16.0,
        "decoder.layers.1.self_attn.q_proj": 8.0,
    }


def test_a_dataset_folder_stands_for_the_fisher_map_written_in_it(tmp_path):
    """``--fisher-map`` (Side-Step's and ours) writes <dataset-dir>/fisher_map.json: the folder names it."""
    (tmp_path / "fisher_map.json").write_text(json.dumps({"rank_pattern": {"layers.0.self_attn.q_proj": 16}}))
    assert load_operand(tmp_path).sensitivities("grad-norm") == {"decoder.layers.0.self_attn.q_proj": 16.0}
    empty = tmp_path / "samples"
    empty.mkdir()
    with pytest.raises(AcetuiError) as caught:
        load_operand(empty)
    assert str(caught.value) == (
        f"{empty}: a folder without a fisher_map.json (give a run id, a run record, an estimate JSON, "
        "or a dataset folder fisher_map.json was written in)"
    )


def test_cli_compare_takes_run_ids_and_unique_prefixes(run, tmp_path, capsys, isolated_app_dirs):
    runs = isolated_app_dirs.runs
    runs.mkdir(parents=True)
    for run_id in ("20250101-000000-aaaaaa", "20250101-000000-aaaabb"):
        (runs / f"{run_id}.json").write_text(json.dumps({**run.to_dict(), "run_id": run_id}))
    code, out, err = run_cli(capsys, "compare", "20250101-000000-aaaaaa", "20250101-000000-aaaab")
    assert (code, err) == (0, "")
    assert out.startswith("A: 20250101-000000-aaaaaa\nB: 20250101-000000-aaaab\n")
    assert "Spearman rank correlation +1.000" in out
    code, out, err = run_cli(capsys, "compare", "20250101", "20250101-000000-aaaaaa")
    assert one_error_line(err) == "acetui: 20250101: ambiguous run id (2 runs match)"
    code, out, err = run_cli(capsys, "compare", "2024", "20250101-000000-aaaaaa")
    assert one_error_line(err) == f"acetui: 2024: no such run id in {runs} and no such file"


def test_a_record_of_another_version_is_named_as_such(tmp_path):
    """Compare reads run records as the history does: another version's is not called a bad ranking file."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"format": "acetui-run/2", "run_id": "x"}))
    with pytest.raises(AcetuiError, match="a run record of another acetui version"):
        load_operand(path)
