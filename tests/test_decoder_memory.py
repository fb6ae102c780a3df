"""What the decoder keeps for the backward pass, which is most of an estimation run's memory.

Per token and layer the backward pass needs, in units of the hidden width D (query heads x head_dim = D,
key/value heads x head_dim = D/2, as in every released config) and of the MLP width I:
three residual-stream norm inputs (3 D), the q/k norm inputs (1.5 D self, 1 D cross), the attention
kernels' query, key, value and output (3 D self, 2 D cross) and the MLP's gate and up (2 I):
10.5 D + 2 I. The official op structure also keeps the normed input of the attention projections
(2 D), silu(gate) (I) and repeated key/value heads (1 D); a contiguous norm output before the head
transpose would add a merged-heads copy of each attention output (2 D). These tests hold the decoder
to the first figure.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch.autograd.graph import saved_tensors_hooks

from acetui.model.decoder import AceStepDecoder, GatedSiLU
from acetui.model.synthetic import TINY, random_state

FRAMES = 400  # 200 tokens: the banded sliding-window path (>= 4 windows of 4 on the CPU)


def _decoder(layers: int) -> AceStepDecoder:
    config = dataclasses.replace(TINY, num_hidden_layers=layers, layer_types=())
    model = AceStepDecoder(config)
    state = random_state(config, seed=0, dtype=torch.float32)
    model.load_state_dict({key.removeprefix("decoder."): value for key, value in state.items()})
    model.requires_grad_(False)
    for name in model.attention_projection_names():
        model.get_submodule(name).weight.requires_grad_(True)
    return model


def _inputs(config, batch: int = 1):
    generator = torch.Generator().manual_seed(0)
    t = torch.rand(batch, generator=generator)
    return dict(
        hidden_states=torch.randn(batch, FRAMES, config.audio_acoustic_hidden_dim, generator=generator),
        timestep=t,
        timestep_r=t,
        encoder_hidden_states=torch.randn(batch, 7, config.condition_width, generator=generator),
        context_latents=torch.randn(batch, FRAMES, config.context_channels, generator=generator),
    )


def _saved_bytes(model: AceStepDecoder) -> int:
    """Bytes of the distinct storages autograd keeps for backward, the weights excluded."""
    weights = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    inputs = _inputs(model.config)
    with saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(**inputs)
    assert output.requires_grad
    return sum(kept.values())


def test_gated_silu_gives_autograds_values_and_gradients():
    generator = torch.Generator().manual_seed(1)
    gate, up, grad = (torch.randn(3, 50, 24, generator=generator) for _ in range(3))
    for needs in ((True, True), (True, False), (False, True)):
        ours = [gate.clone().requires_grad_(needs[0]), up.clone().requires_grad_(needs[1])]
        plain = [gate.clone().requires_grad_(needs[0]), up.clone().requires_grad_(needs[1])]
        output = GatedSiLU.apply(*ours)
        expected = F.silu(plain[0]) * plain[1]
        assert torch.equal(output, expected)
        output.backward(grad)
        expected.backward(grad)
        for mine, theirs in zip(ours, plain):
            assert (mine.grad is None) == (theirs.grad is None)
            if mine.grad is not None:
                assert torch.equal(mine.grad, theirs.grad)


def test_each_layer_keeps_about_10_5_hidden_widths_and_2_mlp_widths_per_token():
    """Per-layer cost from two depths (the shared inputs, mask and RoPE tables cancel out)."""
    shallow, deep = _decoder(2), _decoder(4)
    per_layer = (_saved_bytes(deep) - _saved_bytes(shallow)) / 2
    config = deep.config
    tokens, element = FRAMES // config.patch_size, 4
    assert config.num_attention_heads * config.head_dim == config.hidden_size
    assert 2 * config.num_key_value_heads * config.head_dim == config.hidden_size
    # Small per-token statistics (norm scales, softmax log-sums, a padded block) add ~0.4 D here; one
    # more copy of any activation would add at least 0.5 D.
    budget = (10.5 + 0.5) * config.hidden_size * tokens * element + 2 * config.intermediate_size * tokens * element
    assert per_layer <= budget


def test_cpu_attention_shares_key_value_heads_inside_the_flash_kernel():
    """No repeated key/value copies on the CPU, and no fallback to the [T', T'] math kernel."""
    model = _decoder(2)
    output = model(**_inputs(model.config, batch=2))
    attention, pending, seen = [], [output.grad_fn], set()
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "Attention" in node.name() or "Softmax" in node.name():
            attention.append(node)
        pending.extend(next_node for next_node, _ in node.next_functions)
    # Two layers, each with self- and cross-attention, all in the flash kernel.
    assert [node.name() for node in attention] == ["ScaledDotProductFlashAttentionForCpuBackward0"] * 4
    config = model.config
    for node in attention:
        assert node._saved_query.shape[1] == config.num_attention_heads
        assert node._saved_key.shape[1] == node._saved_value.shape[1] == config.num_key_value_heads
