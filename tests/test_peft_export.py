"""Every PEFT-facing export applied with peft itself to our decoder: exactly the intended modules get LoRA
layers, with the intended ranks (exact names, suffixes, layer granularity and the Side-Step fisher map)."""

from __future__ import annotations

import json

import pytest

peft = pytest.importorskip("peft")

from acetui.estimate import EstimateRequest, Estimator, rank_modules  # noqa: E402
from acetui.estimate.exports import export, peft_exact_modules, peft_suffix_modules  # noqa: E402
from acetui.estimate.sidestep import build_fisher_map  # noqa: E402
from acetui.model import load_decoder  # noqa: E402


@pytest.fixture(scope="module")
def result(checkpoint_root, dataset_dir):
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=2, top_k=5, modules="attention+mlp")
    return Estimator(request).run()


def _adapted(config, checkpoint_root) -> dict[str, object]:
    """Apply ``config`` to a freshly loaded decoder; return {module name: LoRA layer}."""
    decoder = peft.inject_adapter_in_model(config, load_decoder(checkpoint_root, "turbo"))
    return {name: layer for name, layer in decoder.named_modules() if hasattr(layer, "lora_A")}


def test_exact_names_target_exactly_the_top_k(result, checkpoint_root, tmp_path):
    ranking = rank_modules(result)
    path = export(tmp_path / "peft.json", "peft", ranking, 5)
    targets = json.loads(path.read_text())["target_modules"]
    assert targets == [item.module.removeprefix("decoder.") for item in ranking[:5]]
    assert not any(name.startswith("decoder.") for name in targets)

    adapted = _adapted(peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets), checkpoint_root)
    assert set(adapted) == set(targets)


def test_suffixes_target_every_layer_of_the_top_k_projection_types(result, checkpoint_root, tmp_path):
    ranking = rank_modules(result)
    targets = json.loads(export(tmp_path / "suffix.json", "peft-suffix", ranking, 5).read_text())["target_modules"]
    assert targets == peft_suffix_modules(ranking, 5) == sorted(set(targets))
    assert all(name.count(".") == 1 and name.split(".")[0] in ("self_attn", "cross_attn", "mlp") for name in targets)

    adapted = _adapted(peft.LoraConfig(r=4, target_modules=targets), checkpoint_root)
    expected = {f"layers.{layer}.{suffix}" for layer in range(4) for suffix in targets}
    assert set(adapted) == expected


def test_layer_granularity_exports_every_member_projection(result, checkpoint_root):
    ranking = rank_modules(result, granularity="layer")
    targets = peft_exact_modules(ranking, 2)
    blocks = [item.module.removeprefix("decoder.") for item in ranking[:2]]
    members = {"mlp": ("gate_proj", "up_proj", "down_proj")}
    expected = {
        f"{block}.{projection}"
        for block in blocks
        for projection in members.get(block.split(".")[-1], ("q_proj", "k_proj", "v_proj", "o_proj"))
    }
    assert set(targets) == expected
    assert set(_adapted(peft.LoraConfig(r=2, target_modules=targets), checkpoint_root)) == expected


def test_fisher_map_gives_every_adapted_module_its_pattern_rank(result, checkpoint_root):
    data = build_fisher_map(result, effective={}, base_rank=16, rank_min=4, rank_max=40)
    rank_min = data["rank_budget"]["min"]
    config = peft.LoraConfig(
        r=rank_min,  # what Side-Step falls back to for a matched module without a pattern entry
        lora_alpha=2 * rank_min,
        target_modules=data["target_modules"],
        rank_pattern=data["rank_pattern"],
        alpha_pattern=data["alpha_pattern"],
    )
    adapted = _adapted(config, checkpoint_root)
    assert set(adapted) == set(data["rank_pattern"])
    assert len(set(data["rank_pattern"].values())) > 1  # the budget really varies the rank
    for name, layer in adapted.items():
        assert layer.r["default"] == data["rank_pattern"][name], name
        assert layer.scaling["default"] == pytest.approx(2.0)  # alpha = 2 x rank
