"""acetui's decoder against diffusers' independent port: outputs and attention-projection gradients."""

from __future__ import annotations

import pytest
import torch

from acetui.model import load_decoder
from acetui.model.checkpoint import DECODER_PREFIX
from tests.diffusers_reference import load_reference, reference_projection_grads
from tests.support import decoder_inputs


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("variant", ["turbo", "base", "xl-base"])
@pytest.mark.parametrize("frames", [13, 24, 81])
@pytest.mark.parametrize("r_equals_t", [True, False])
def test_output_and_projection_gradients_match_diffusers(checkpoint_root, variant, frames, r_equals_t):
    ours = load_decoder(checkpoint_root, variant, dtype=torch.float32)
    reference = load_reference(checkpoint_root / f"acestep-v15-{variant}")
    inputs = decoder_inputs(ours.config, batch=2, frames=frames, seed=frames, r_equals_t=r_equals_t)
    target = torch.randn(2, frames, 64, generator=torch.Generator().manual_seed(99))

    names = ours.attention_projection_names()
    modules = dict(ours.named_modules())
    for name in names:
        modules[name].weight.requires_grad_(True)
    reference.requires_grad_(True)

    our_output = ours(**inputs)
    reference_output = reference(**inputs, return_dict=False)[0]
    assert our_output.shape == (2, frames, 64)
    assert _relative(our_output, reference_output) < 1e-5

    torch.nn.functional.mse_loss(our_output, target).backward()
    torch.nn.functional.mse_loss(reference_output, target).backward()
    reference_grads = reference_projection_grads(reference)
    assert sorted(reference_grads) == sorted(names)
    for name in names:
        assert _relative(modules[name].weight.grad, reference_grads[name]) < 1e-5, name


def test_parity_detects_a_wrong_window(checkpoint_root):
    """Control: the comparison is sensitive enough to see an off-by-one sliding window."""
    ours = load_decoder(checkpoint_root, "turbo", dtype=torch.float32)
    reference = load_reference(checkpoint_root / "acestep-v15-turbo")
    inputs = decoder_inputs(ours.config, batch=2, frames=24, seed=0, r_equals_t=True)
    object.__setattr__(ours.config, "sliding_window", ours.config.sliding_window - 1)
    with torch.no_grad():
        difference = _relative(ours(**inputs), reference(**inputs, return_dict=False)[0])
    assert difference > 1e-3


def test_parameter_names_are_checkpoint_keys(checkpoint_root):
    from safetensors import safe_open

    model = load_decoder(checkpoint_root, "turbo")
    with safe_open(str(checkpoint_root / "acestep-v15-turbo" / "model.safetensors"), "pt") as handle:
        decoder_keys = {k[len(DECODER_PREFIX) :] for k in handle.keys() if k.startswith(DECODER_PREFIX)}
    assert {name for name, _ in model.named_parameters()} == decoder_keys
    assert not any(p.requires_grad for p in model.parameters())
