"""Side-Step interchange: fisher_map.json schema version 2 read back field by field, the dataset hash,
overwrite protection, the rank budget, and importing Side-Step estimate lists and fisher maps."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import pytest

from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest, Estimator, rank_modules, score_table
from acetui.estimate.compare import load_operand
from acetui.estimate.effective_rank import effective_ranks
from acetui.estimate.exports import export
from acetui.estimate.imported import load_ranking
from acetui.estimate.sidestep import (
    FISHER_MAP_KEYS,
    budget_ranks,
    build_fisher_map,
    dataset_hash,
    export_fisher_map,
    write_fisher_map,
)
from acetui.estimate.stats import result_stats
from tests.fisher_map_schema import fisher_map_problems
from tests.test_compare import BAD_FISHER_MAPS


@pytest.fixture(scope="module")
def mlp_result(checkpoint_root, dataset_dir):
    request = EstimateRequest(
        checkpoint_root,
        "turbo",
        dataset_dir,
        batches=3,
        top_k=6,
        modules="attention+mlp",
        device="cpu",
        timestep_focus="texture",
    )
    return Estimator(request).run()


def _suffix(name: str) -> str:
    return ".".join(name.split(".")[-2:])


def test_dataset_hash_is_md5_of_sorted_name_size_joined_by_bar(tmp_path):
    (tmp_path / "b.pt").write_bytes(b"12345")
    (tmp_path / "a.pt").write_bytes(b"1")
    (tmp_path / "c.tmp.pt").write_bytes(b"123")
    (tmp_path / "notes.json").write_text("{}")
    (tmp_path / "sub.pt").mkdir()
    expected = hashlib.md5(b"a.pt:1|b.pt:5|c.tmp.pt:3").hexdigest()[:12]
    assert dataset_hash(tmp_path) == expected and len(expected) == 12

    (tmp_path / "b.pt").write_bytes(b"123456")
    assert dataset_hash(tmp_path) != expected
    assert dataset_hash(tmp_path / "empty-missing") == hashlib.md5(b"").hexdigest()[:12]


def test_fisher_map_read_back_against_the_schema(mlp_result, checkpoint_root, dataset_dir, tmp_path):
    path = export_fisher_map(mlp_result, tmp_path / "fisher_map.json", base_rank=16, rank_min=8, rank_max=48)
    data = json.loads(path.read_text())

    assert list(data) == list(FISHER_MAP_KEYS)
    assert fisher_map_problems(data) == []
    assert data["version"] == 2 and data["model_variant"] == "turbo"
    assert data["timestep_focus"] == "texture" and data["timestep_range"] == [0.0, 0.4]
    assert data["timestep_params"] == {"mu": -0.4, "sigma": 1.0, "data_proportion": 0.5}
    assert data["num_runs"] == 1 and data["batches_per_run"] == 3 and data["total_batches"] == 3
    assert data["base_rank"] == 16 and data["rank_budget"] == {"min": 8, "max": 48}
    assert data["dataset_hash"] == dataset_hash(dataset_dir)
    assert data["num_hidden_layers"] == 4

    # target_modules: the sorted suffixes of the run's top-k (by the fisher score)
    fisher_ranking = rank_modules(mlp_result, "fisher", "module")
    top = fisher_ranking[: mlp_result.request.top_k]
    assert data["target_modules"] == sorted({_suffix(item.module) for item in top})

    # every module the suffixes match gets a rank and alpha = 2 x rank; keys carry no decoder. prefix
    matched = [name for name in mlp_result.modules if _suffix(name) in data["target_modules"]]
    assert set(data["rank_pattern"]) == {name.removeprefix("decoder.") for name in matched}
    assert set(data["alpha_pattern"]) == set(data["rank_pattern"])
    for key, rank in data["rank_pattern"].items():
        assert isinstance(rank, int) and 8 <= rank <= 48 and data["alpha_pattern"][key] == 2 * rank
        assert key.startswith("layers.")
    assert set(data["excluded_modules"]) == set(mlp_result.modules) - set(matched)

    # modules: selected, descending score, the fisher means and their standard error over batches
    table = score_table(mlp_result, "fisher", "module")
    means = dict(zip(table.names, table.means.tolist()))
    errors = dict(zip(table.names, (table.values.std(dim=0) / 3**0.5).tolist()))
    effective = effective_ranks(checkpoint_root, "turbo", mlp_result.modules)
    assert [entry["name"] for entry in data["modules"]] == [
        item.module for item in fisher_ranking if item.module in matched
    ]
    for entry in data["modules"]:
        assert set(entry) == {"name", "fisher_score", "fisher_cross_run_std", "effective_rank", "assigned_rank"}
        assert entry["fisher_score"] == pytest.approx(means[entry["name"]], rel=1e-12)
        assert entry["fisher_cross_run_std"] == pytest.approx(errors[entry["name"]], rel=1e-9)
        assert entry["effective_rank"] == effective[entry["name"]] > 0
        assert entry["assigned_rank"] == data["rank_pattern"][entry["name"].removeprefix("decoder.")]


def test_never_overwrites_without_force(mlp_result, tmp_path):
    path = tmp_path / "fisher_map.json"
    path.write_text("keep me")
    with pytest.raises(AcetuiError, match="already exists"):
        export_fisher_map(mlp_result, path, effective={})
    with pytest.raises(AcetuiError, match="already exists"):
        write_fisher_map(path, {"version": 2})
    assert path.read_text() == "keep me"
    export_fisher_map(mlp_result, path, force=True, effective={})
    assert fisher_map_problems(json.loads(path.read_text())) == []
    assert [p.name for p in tmp_path.iterdir()] == ["fisher_map.json"]  # no temporary file left


def test_default_path_is_the_dataset_folder(mlp_result, dataset_dir, tmp_path):
    folder = tmp_path / "dataset"
    shutil.copytree(dataset_dir, folder)
    result = Estimator(EstimateRequest(mlp_result.request.checkpoint_dir, "turbo", folder, batches=1)).run()
    path = export_fisher_map(result, effective={})
    assert path == folder / "fisher_map.json"
    data = json.loads(path.read_text())
    assert data["dataset_hash"] == dataset_hash(folder) == dataset_hash(dataset_dir)
    assert all(".mlp." not in key for key in data["rank_pattern"])  # attention-only run


def test_budget_ranks_centre_on_base_rank_and_clamp():
    scores = {"a": 1.0, "b": 4.0, "c": 0.25, "d": 100.0, "e": 0.0}
    ranks = budget_ranks(scores, base_rank=32, rank_min=8, rank_max=96)
    # median of the positive scores is 2.5: a -> 32*sqrt(0.4)=20.2 -> 24, b -> 32*sqrt(1.6)=40.5 -> 40
    assert ranks == {"a": 24, "b": 40, "c": 8, "d": 96, "e": 8}
    with_effective = budget_ranks({"a": 1.0, "b": 1.0}, {"a": 10, "b": 40}, base_rank=32, rank_min=8, rank_max=96)
    assert with_effective["a"] < 32 < with_effective["b"]  # median effective rank 25: 32*sqrt(.4), 32*sqrt(1.6)
    with pytest.raises(AcetuiError):
        budget_ranks(scores, rank_min=0)
    with pytest.raises(AcetuiError):
        budget_ranks(scores, rank_min=64, rank_max=32)


def test_problems_name_what_side_step_would_mishandle(mlp_result):
    data = build_fisher_map(mlp_result, effective={})
    broken = json.loads(json.dumps(data))
    dropped = broken["modules"].pop()["name"].removeprefix("decoder.")
    del broken["rank_pattern"][dropped], broken["alpha_pattern"][dropped]
    broken["excluded_modules"].append("decoder." + dropped)
    assert any("no rank_pattern entry" in problem for problem in fisher_map_problems(broken))
    assert fisher_map_problems({"version": 2}) and fisher_map_problems([]) == ["not a JSON object"]


def test_import_own_and_side_step_estimate_lists(mlp_result, tmp_path):
    ranking = rank_modules(mlp_result)
    own = export(tmp_path / "own.json", "json", ranking, 6)
    imported = load_ranking(own)
    assert imported.kind == "estimate" and imported.score_name == "sensitivity"
    assert list(imported.scores) == [item.module for item in ranking]
    assert [row.sensitivity for row in imported.ranked()] == [item.sensitivity for item in ranking]
    assert [(row.layer, row.kind, row.projection) for row in imported.ranked()] == [
        (item.layer, item.kind, item.projection) for item in ranking
    ]

    side_step = tmp_path / "side-step.json"
    side_step.write_text(
        json.dumps(
            [
                {"name": "layers.1.cross_attn.v_proj", "score": 0.5},
                {"module": "decoder.layers.0.self_attn.q_proj", "sensitivity": 2},
            ]
        )
    )
    imported = load_ranking(side_step)
    assert imported.scores == {"decoder.layers.0.self_attn.q_proj": 2.0, "decoder.layers.1.cross_attn.v_proj": 0.5}
    assert [row.rank for row in imported.ranked()] == [1, 2] and imported.ranked()[0].share == pytest.approx(0.8)


def test_import_own_export_keeps_its_top_k_and_uncertainty(mlp_result, tmp_path):
    ranking, stats = rank_modules(mlp_result), result_stats(mlp_result, "grad-norm")
    imported = load_ranking(export(tmp_path / "own.json", "json", ranking, 6, stats))
    assert imported.top_k == 6 and imported.units == stats.by_name()
    assert load_ranking(export(tmp_path / "bare.json", "json", ranking, 6)).units == {}
    entries = [
        {"module": "decoder.layers.0.self_attn.q_proj", "sensitivity": 1.0, "stderr": None, "p_top_k": 0.5},
        {"module": "decoder.layers.0.self_attn.k_proj", "sensitivity": 0.5, "stderr": None, "p_top_k": None},
    ]
    (tmp_path / "partial.json").write_text(json.dumps(entries))
    units = load_ranking(tmp_path / "partial.json").units
    assert list(units) == ["decoder.layers.0.self_attn.q_proj"]  # all null is nothing known
    unit = units["decoder.layers.0.self_attn.q_proj"]
    assert unit.p_top_k == 0.5 and all(math.isnan(value) for value in (unit.stderr, unit.ci_low, unit.ci_high))


def q_proj_entries(flags: dict[float, bool | None]) -> list[dict]:
    """Estimate entries in file order, one per sensitivity, marked ``"top_k"`` as ``flags`` says."""
    return [
        {"module": f"decoder.layers.{n}.self_attn.q_proj", "sensitivity": value, "top_k": flag}
        for n, (value, flag) in enumerate(flags.items())
    ]


def test_top_k_marks_must_lead_the_ranking_in_sorted_order(tmp_path):
    path = tmp_path / "marks.json"
    path.write_text(json.dumps(q_proj_entries({3.0: True, 1.0: None, 4.0: True, 2.0: False})))
    assert load_ranking(path).top_k == 2  # the two most sensitive, wherever the file lists them; null is false
    path.write_text(json.dumps(q_proj_entries({3.0: False, 1.0: False, 4.0: True, 2.0: True})))  # ranks 1 and 3
    with pytest.raises(AcetuiError) as caught:
        load_ranking(path)
    assert str(caught.value) == (
        f"{path}: entry 3 (decoder.layers.3.self_attn.q_proj) is marked top_k at rank 3, below an unmarked entry: "
        "top_k should mark the most sensitive entries"
    )


def test_import_fisher_maps(mlp_result, tmp_path):
    data = build_fisher_map(mlp_result, effective={})
    path = write_fisher_map(tmp_path / "fisher_map.json", data)
    imported = load_ranking(path)
    assert imported.kind == "fisher_map" and imported.score_name == "fisher"
    assert list(imported.scores) == [entry["name"] for entry in data["modules"]]
    assert imported.metadata["model_variant"] == "turbo" and imported.metadata["version"] == 2

    without_modules = {
        "version": 1,
        "target_modules": ["self_attn.q_proj"],
        "alpha_pattern": {},
        "rank_pattern": {"layers.0.self_attn.q_proj": 16, "layers.1.self_attn.q_proj": 32},
    }
    (tmp_path / "v1.json").write_text(json.dumps(without_modules))
    imported = load_ranking(tmp_path / "v1.json")
    assert imported.score_name == "assigned_rank"
    assert imported.scores == {"decoder.layers.1.self_attn.q_proj": 32.0, "decoder.layers.0.self_attn.q_proj": 16.0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "empty"),
        ('[{"module": "decoder.layers.0.self_attn.q_proj"}]', "no module/name"),
        ('[{"module": "decoder.layers.0.self_attn.q_proj", "sensitivity": "high"}]', "not a finite number"),
        ('{"runs": 3}', "neither an estimate list"),
        ('{"rank_pattern": {}}', "no modules or rank_pattern"),
        ('[{"module": "decoder.layers.0.self_attn.q_proj", "sensitivity": 1, "top_k": 1}]', "top_k 1 is not true"),
        ('[{"module": "decoder.layers.0.self_attn.q_proj", "sensitivity": 1, "stderr": "x"}]', "stderr 'x' is not a"),
        ('[{"module": "m", "sensitivity": 1}, {"module": "n", "sensitivity": 1, "stderr": -1}]', "1: stderr -1.0 is n"),
        ('[{"module": "decoder.layers.0.self_attn.q_proj", "sensitivity": 1, "p_top_k": 1.5}]', "1.5 is not between"),
        ('[{"module": "m", "sensitivity": 1, "ci_low": 2, "ci_high": 1}]', "0: ci_low 2.0 is above ci_high 1.0"),
    ],
)
def test_import_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AcetuiError, match=message) as caught:
        load_ranking(path)
    assert str(path) in str(caught.value)
    with pytest.raises(AcetuiError, match="file not found"):
        load_ranking(tmp_path / "missing.json")


@pytest.mark.parametrize("case", BAD_FISHER_MAPS)
def test_every_reader_refuses_a_malformed_fisher_map_alike(case, tmp_path):
    content, problem = BAD_FISHER_MAPS[case]
    path = tmp_path / "fisher_map.json"
    path.write_text(json.dumps(content))
    messages = []
    for read in (load_ranking, load_operand):
        with pytest.raises(AcetuiError) as caught:
            read(path)
        messages.append(str(caught.value))
    assert messages == [f"{path}: {problem}"] * 2


def test_selection_follows_the_chosen_score_and_modules_stay_in_fisher_order(mlp_result):
    data = build_fisher_map(mlp_result, score="grad-norm", top_k=3, effective={})
    top = rank_modules(mlp_result, "grad-norm", "module")[:3]
    assert data["target_modules"] == sorted({_suffix(item.module) for item in top})
    scores = [entry["fisher_score"] for entry in data["modules"]]
    assert scores == sorted(scores, reverse=True) and fisher_map_problems(data) == []
