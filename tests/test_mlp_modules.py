"""``--modules attention+mlp``: the MLP projections are scored end to end (engine, scores, exports, CLI),
their gradient norms equal plain autograd's, and attention-only stays the default and is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from acetui.cli import main
from acetui.data import collate, load_sample
from acetui.estimate import EstimateRequest, Estimator, rank_modules
from acetui.estimate.exports import peft_suffix_modules, ranking_csv
from acetui.estimate.objective import TimestepFocus, batch_generator, draw_batch, flow_matching_loss
from acetui.model import load_decoder
from tests.support import estimate_args

MLP = ("gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def runs(checkpoint_root, dataset_dir):
    both = EstimateRequest(checkpoint_root, "base", dataset_dir, batches=3, seed=7, modules="attention+mlp")
    attention = EstimateRequest(checkpoint_root, "base", dataset_dir, batches=3, seed=7)
    return Estimator(both).run(), Estimator(attention).run()


def test_attention_only_is_the_default():
    request = EstimateRequest(Path("c"), "turbo", Path("d"))
    assert request.modules == "attention"


def test_eleven_projections_per_layer(runs):
    with_mlp, attention = runs
    assert len(with_mlp.modules) == 4 * 11 and len(attention.modules) == 4 * 8
    mlp_names = [name for name in with_mlp.modules if ".mlp." in name]
    assert mlp_names == [f"decoder.layers.{layer}.mlp.{proj}" for layer in range(4) for proj in MLP]
    assert not any(".mlp." in name for name in attention.modules)
    assert with_mlp.metadata["model"]["scored_modules"] == 44
    numels = dict(zip(with_mlp.modules, with_mlp.numels))
    assert numels["decoder.layers.0.mlp.down_proj"] == 64 * 128  # hidden x intermediate of the tiny config


def test_attention_scores_do_not_change_when_mlp_is_added(runs):
    with_mlp, attention = runs
    for batch_mlp, batch_attention in zip(with_mlp.batches, attention.batches, strict=True):
        by_name = dict(zip(with_mlp.modules, batch_mlp.norms))
        assert batch_mlp.loss == pytest.approx(batch_attention.loss, rel=1e-6)
        assert [by_name[name] for name in attention.modules] == pytest.approx(batch_attention.norms, rel=1e-5)


def test_mlp_norms_equal_plain_autograd(runs, checkpoint_root):
    with_mlp, _ = runs
    decoder = load_decoder(checkpoint_root, "base")
    config = decoder.config
    record = with_mlp.batches[1]
    samples = [
        load_sample(Path(path), condition_width=config.condition_width, context_channels=config.context_channels)
        for path in record.samples
    ]
    batch = collate(samples)
    draw = draw_batch(
        batch,
        config.timestep_mu,
        config.timestep_sigma,
        TimestepFocus.parse("balanced"),
        batch_generator(7, record.index),
    )
    assert draw.timesteps.tolist() == pytest.approx(record.timesteps)
    weights = {name: decoder.get_submodule(name.removeprefix("decoder.")).weight for name in with_mlp.modules}
    for weight in weights.values():
        weight.requires_grad_(True)
    loss = flow_matching_loss(decoder, batch.to("cpu", torch.float32), draw)
    loss.backward()
    assert loss.item() == pytest.approx(record.loss, rel=1e-6)
    expected = [float(weights[name].grad.norm()) for name in with_mlp.modules]
    assert record.norms == pytest.approx(expected, rel=1e-5)
    assert all(norm > 0 for name, norm in zip(with_mlp.modules, record.norms) if ".mlp." in name)


def test_rankings_and_exports_include_mlp(runs):
    with_mlp, _ = runs
    modules = rank_modules(with_mlp, "fisher")
    assert {item.kind for item in modules} == {"self_attn", "cross_attn", "mlp"}
    layers = rank_modules(with_mlp, "grad-norm", "layer")
    assert sorted(item.module for item in layers if item.kind == "mlp") == [f"decoder.layers.{i}.mlp" for i in range(4)]
    assert len(layers) == 12
    mlp_rows = [line for line in ranking_csv(modules, 44).splitlines() if ",mlp," in line]
    assert len(mlp_rows) == 12
    assert {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} <= set(peft_suffix_modules(modules, 44))


def test_cli_modules_flag_end_to_end(checkpoint_root, dataset_dir, tmp_path, capsys):
    out = tmp_path / "ranking.json"
    more = ("--estimate-batches", "2", "--modules", "attention+mlp", "--granularity", "layer", "--top-k", "12")
    code = main(estimate_args(checkpoint_root, dataset_dir, *more, "-o", str(out)))
    assert code == 0
    entries = json.loads(out.read_text())
    assert len(entries) == 12 and {entry["module"].split(".")[-1] for entry in entries} == {
        "self_attn",
        "cross_attn",
        "mlp",
    }
    assert "mlp" in capsys.readouterr().out
