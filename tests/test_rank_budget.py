"""Rank budgets: more rank where the gradients are, within the parameters the user allows."""

from __future__ import annotations

import pytest
import torch

from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest, Estimator, rank_modules
from acetui.estimate.rank_budget import (
    alpha_pattern,
    assign_ranks,
    check_budget_floor,
    lora_parameters,
    peft_rank_config,
    projection_shapes,
    result_shapes,
)
from acetui.estimate.scores import RankedModule, module_parts
from acetui.model.synthetic import TINY
from tests.support import estimate_args


def ranked(values: dict[str, float]) -> list[RankedModule]:
    order = sorted(values, key=lambda name: -values[name])
    total = sum(values.values())
    rows = []
    for position, name in enumerate(order, start=1):
        parts = module_parts(name)
        rows.append(
            RankedModule(
                position,
                name,
                values[name],
                values[name] / total if total else 0.0,
                parts.layer,
                parts.kind,
                parts.projection,
            )
        )
    return rows


SQUARE = (64, 64)


def _parameters(ranks: dict[str, int], shapes: dict) -> int:
    """What the LoRA adapters of ``ranks`` cost, counted from the shapes."""
    return sum(lora_parameters(shapes[name], rank) for name, rank in ranks.items())


def test_lora_parameter_count():
    assert lora_parameters((32, 64), 4) == 4 * 96
    assert lora_parameters(64 * 64, 2) == 2 * 128


def test_default_budget_redistributes_the_uniform_one():
    values = {"decoder.layers.0.self_attn.q_proj": 1.0, "decoder.layers.1.self_attn.q_proj": 3.0}
    shapes = {"layers.0.self_attn.q_proj": SQUARE, "layers.1.self_attn.q_proj": SQUARE}
    ranks = assign_ranks(ranked(values), shapes, base_rank=8, min_rank=1, max_rank=64)
    assert ranks == {"layers.1.self_attn.q_proj": 12, "layers.0.self_attn.q_proj": 4}
    assert alpha_pattern(ranks) == {"layers.1.self_attn.q_proj": 24, "layers.0.self_attn.q_proj": 8}
    assert _parameters(ranks, shapes) == 16 * 128


def test_budget_clamps_and_order_on_real_shapes():
    shapes = projection_shapes(TINY, include_mlp=False)
    generator = torch.Generator().manual_seed(0)
    values = {"decoder." + name: float(v) for name, v in zip(shapes, torch.rand(len(shapes), generator=generator) ** 3)}
    ranking = ranked(values)
    budget = 200_000
    ranks = assign_ranks(ranking, shapes, base_rank=16, min_rank=4, max_rank=64, budget_params=budget)
    assert set(ranks) == set(shapes)
    assert all(4 <= rank <= 64 for rank in ranks.values())
    spent = _parameters(ranks, shapes)
    assert budget - max(lora_parameters(shape, 1) for shape in shapes.values()) <= spent <= budget
    assert ranks[ranking[0].module.removeprefix("decoder.")] == 64
    # Among projections of the same shape, more sensitive never means less rank (beyond one).
    same = [item.module.removeprefix("decoder.") for item in ranking if shapes[item.module[8:]] == SQUARE]
    assert all(ranks[a] + 1 >= ranks[b] for a, b in zip(same, same[1:]))
    generous = assign_ranks(ranking, shapes, base_rank=16, min_rank=4, max_rank=64, budget_params=10**9)
    assert set(generous.values()) == {64}


def test_budget_too_small_and_bad_limits():
    shapes = {"layers.0.self_attn.q_proj": SQUARE}
    ranking = ranked({"decoder.layers.0.self_attn.q_proj": 1.0})
    with pytest.raises(AcetuiError, match="below"):
        assign_ranks(ranking, shapes, base_rank=8, min_rank=4, max_rank=8, budget_params=100)
    with pytest.raises(AcetuiError):
        assign_ranks(ranking, shapes, base_rank=8, min_rank=9, max_rank=8)
    assert assign_ranks([], shapes, base_rank=8, min_rank=1, max_rank=8) == {}


def test_the_budget_floor_is_the_cheapest_top_k_at_the_minimum_rank(checkpoint_root, dataset_dir, tmp_path):
    """Exactly the cheapest top-k pass; below it, and without a config to read, nothing is guessed."""
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, top_k=4, modules="attention+mlp")
    floor = 16 * 4 * (32 + 64)  # four (32, 64) key/value projections; the MLP's are dearer
    check_budget_floor(request, floor, base_rank=64, min_rank=16)
    with pytest.raises(AcetuiError, match=f"below {floor:,}, the cost of --rank-min 16 on even the 4 cheapest"):
        check_budget_floor(request, floor - 1, base_rank=64, min_rank=16)
    check_budget_floor(request, 0, base_rank=16, min_rank=16)  # what the base rank costs: just enough
    gone = EstimateRequest(tmp_path / "moved", "turbo", dataset_dir, top_k=4)
    check_budget_floor(gone, 1, base_rank=64, min_rank=16)  # a stored run's export uses its recorded sizes


def test_no_signal_is_uniform_and_layer_units_expand():
    shapes = projection_shapes(TINY, include_mlp=False)
    block = {"decoder.layers.2.cross_attn": 0.0, "decoder.layers.0.self_attn": 0.0}
    ranks = assign_ranks(ranked(block), shapes, base_rank=8, min_rank=1, max_rank=32)
    assert set(ranks) == {
        f"layers.{n}.{kind}.{p}"
        for n, kind in ((2, "cross_attn"), (0, "self_attn"))
        for p in ("q_proj", "k_proj", "v_proj", "o_proj")
    }
    assert set(ranks.values()) == {8}


def test_run_ranking_applied_with_peft(checkpoint_root, dataset_dir):
    peft = pytest.importorskip("peft")
    from acetui.model import load_decoder

    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=2, top_k=6, device="cpu")
    result = Estimator(request).run()
    shapes = result_shapes(result)
    assert shapes["layers.0.self_attn.k_proj"] == (32, 64)  # GQA: fewer key/value heads than query heads
    ranks = assign_ranks(rank_modules(result)[:6], shapes, base_rank=8, min_rank=2, max_rank=32)
    config = peft_rank_config(ranks, base_rank=8)
    decoder = peft.inject_adapter_in_model(peft.LoraConfig(**config), load_decoder(checkpoint_root, "turbo"))
    adapted = {name: layer for name, layer in decoder.named_modules() if hasattr(layer, "lora_A")}
    assert set(adapted) == set(ranks)
    for name, layer in adapted.items():
        assert layer.r["default"] == ranks[name]
        assert layer.lora_alpha["default"] == 2 * ranks[name]


def test_cli_peft_output_with_rank_budget(checkpoint_root, dataset_dir, tmp_path):
    import json

    from acetui.cli import main

    out = tmp_path / "peft.json"
    budget = ("--rank-budget", "0", "--base-rank", "8", "--rank-min", "2", "--rank-max", "16")
    argv = estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "2", "--top-k", "4", *budget)
    argv += ["--peft-output", str(out)]
    assert main(argv) == 0
    config = json.loads(out.read_text())
    assert len(config["rank_pattern"]) == 4 and config["r"] == 8
    assert config["alpha_pattern"] == {name: 2 * rank for name, rank in config["rank_pattern"].items()}
    assert set(config["target_modules"]) == set(config["rank_pattern"])
    assert all(2 <= rank <= 16 for rank in config["rank_pattern"].values())
