"""The engine's sensitivities against an independent computation with diffusers' model.

The reference loads the same sample files with plain ``torch.load``, pads them itself, draws the same
noise and timesteps from the run's per-batch seed, and takes gradient norms from diffusers' port.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from acetui.estimate import EstimateRequest, Estimator, rank_modules
from acetui.estimate.objective import batch_generator
from acetui.model.checkpoint import decoder_config
from tests.diffusers_reference import load_reference, reference_projection_grads


def _pad(tensors: list[torch.Tensor]) -> torch.Tensor:
    longest = max(t.shape[0] for t in tensors)
    return torch.stack([F.pad(t.float(), (0, 0, 0, longest - t.shape[0])) for t in tensors])


def _reference_sensitivities(result, folder, config) -> dict[str, float]:
    model = load_reference(folder)
    model.requires_grad_(False)
    for name, parameter in model.named_parameters():
        if ".to_q." in name or ".to_k." in name or ".to_v." in name or ".to_out.0." in name:
            parameter.requires_grad_(True)
    totals: dict[str, float] = {}
    for record in result.batches:
        samples = [torch.load(path, map_location="cpu", weights_only=True) for path in record.samples]
        x0 = _pad([s["target_latents"] for s in samples])
        context = _pad([s["context_latents"] for s in samples])
        condition = _pad([s["encoder_hidden_states"] for s in samples])
        generator = batch_generator(result.request.seed, record.index)
        size = len(samples)
        a = torch.sigmoid(torch.randn(size, generator=generator) * config.timestep_sigma + config.timestep_mu)
        b = torch.sigmoid(torch.randn(size, generator=generator) * config.timestep_sigma + config.timestep_mu)
        t = torch.maximum(a, b)
        noise = torch.randn(x0.shape, generator=generator)
        assert torch.allclose(t, torch.tensor(record.timesteps))
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * x0
        model.zero_grad(set_to_none=True)
        prediction = model(x_t, t, t, condition, context, return_dict=False)[0]
        loss = F.mse_loss(prediction, noise - x0)
        assert loss.item() == pytest.approx(record.loss, rel=1e-5)
        loss.backward()
        for name, grad in reference_projection_grads(model).items():
            totals[f"decoder.{name}"] = totals.get(f"decoder.{name}", 0.0) + grad.norm().item()
    return {name: total / len(result.batches) for name, total in totals.items()}


@pytest.mark.parametrize("variant, dataset", [("base", "dataset_dir"), ("xl-base", "xl_dataset_dir")])
def test_sensitivities_match_diffusers(checkpoint_root, variant, dataset, request):
    folder = request.getfixturevalue(dataset)
    estimate = EstimateRequest(checkpoint_root, variant, folder, batches=3, batch_size=2, seed=7, dtype="fp32")
    result = Estimator(estimate).run()
    assert result.status == "complete" and len(result.included_batches) == 3
    config = decoder_config(checkpoint_root, variant)
    expected = _reference_sensitivities(result, checkpoint_root / f"acestep-v15-{variant}", config)

    modules = {item.module: item.sensitivity for item in rank_modules(result, "grad-norm", "module")}
    assert set(modules) == set(expected)
    for name, value in expected.items():
        assert modules[name] == pytest.approx(value, rel=1e-4), name

    layers = {item.module: item.sensitivity for item in rank_modules(result, "grad-norm", "layer")}
    assert len(layers) == 2 * config.num_hidden_layers
    for group, value in layers.items():
        members = [v for name, v in expected.items() if name.startswith(group + ".")]
        assert len(members) == 4
        assert value == pytest.approx(sum(members), rel=1e-4), group


def _ranking_json(checkpoint_root, dataset_dir, seed: int) -> str:
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=3, seed=seed)
    result = Estimator(request).run()
    return json.dumps([(i.module, i.sensitivity) for i in rank_modules(result)])


def test_same_seed_gives_identical_results_and_different_seeds_differ(checkpoint_root, dataset_dir):
    first = _ranking_json(checkpoint_root, dataset_dir, seed=3)
    assert first == _ranking_json(checkpoint_root, dataset_dir, seed=3)
    assert first != _ranking_json(checkpoint_root, dataset_dir, seed=4)
