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
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.graph import saved_tensors_hooks

from acetui.model.decoder import AceStepDecoder, GatedSiLU, ProjectionsOfNorm, RMSNorm
from acetui.model.synthetic import TINY, random_state
from tests.support import decoder_inputs

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


def _saved_bytes(model: AceStepDecoder) -> int:
    """Bytes of the distinct storages autograd keeps for backward, the weights excluded."""
    weights = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    inputs = decoder_inputs(model.config, batch=1, frames=FRAMES)
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


def test_projections_of_a_norm_give_autograds_gradients_for_every_input():
    """Residual stream, norm weight, modulation, weights and biases: each gradient as plain autograd's."""
    generator = torch.Generator().manual_seed(2)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_()

    norm = RMSNorm(16, 1e-6)

    def prepare(x, weight, shift, scale):
        return torch.addcmul(shift, norm.normalize(x, weight), 1 + scale)

    inputs = [leaf(2, 9, 16), leaf(16), leaf(2, 1, 16), leaf(2, 1, 16)]
    parameters = [leaf(16, 16), leaf(16), leaf(8, 16), None]
    outputs = ProjectionsOfNorm.apply(prepare(*inputs), prepare, len(inputs), *inputs, *parameters)
    hidden = prepare(*inputs)
    expected = (F.linear(hidden, parameters[0], parameters[1]), F.linear(hidden, parameters[2]))
    tensors = [tensor for tensor in inputs + parameters if tensor is not None]
    upstream = [torch.randn(output.shape, generator=generator, dtype=torch.float64) for output in expected]
    ours = torch.autograd.grad(outputs, tensors, upstream)
    theirs = torch.autograd.grad(expected, tensors, upstream)
    for output, reference in zip(outputs, expected):
        torch.testing.assert_close(output, reference, rtol=1e-12, atol=1e-12)
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference, rtol=1e-12, atol=1e-12)


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
    output = model(**decoder_inputs(model.config, batch=2, frames=FRAMES))
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


@pytest.mark.parametrize("everything_trains", [False, True])
def test_activation_checkpointing_keeps_less_and_gives_the_same_gradients(everything_trains):
    """Recomputing each layer in backward re-runs the decoder's own autograd Functions too. With only the
    projections trained (the estimator's case) the first layer's input needs no gradient; with everything
    trained the gradients also flow back through the layers' inputs (timestep and condition embedders)."""
    model = _decoder(2)
    if everything_trains:
        model.requires_grad_(True)
    trained = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    kept, grads = [], []
    for checkpointing in (False, True):
        model.activation_checkpointing = checkpointing
        kept.append(_saved_bytes(model))
        model.zero_grad(set_to_none=True)
        model(**decoder_inputs(model.config, batch=2, frames=FRAMES)).square().mean().backward()
        grads.append([model.get_parameter(name).grad for name in trained])
    assert kept[1] < kept[0] / 2
    assert len(trained) == (len(list(model.parameters())) if everything_trains else 16)
    for plain, recomputed in zip(*grads):
        if everything_trains:  # the embedders' gradients add up over the layers in another order
            assert (recomputed - plain).norm() <= 1e-6 * plain.norm()
        else:
            torch.testing.assert_close(recomputed, plain, rtol=1e-6, atol=0)


def test_activation_checkpointing_imports_no_compiler_machinery():
    """torch.utils.checkpoint imported torch._dynamo on its first call (~1 s here, 4-5 s on a GPU server),
    which every checkpointed run paid in its first batch."""
    code = (
        "import sys, dataclasses, torch;"
        "from acetui.model.decoder import AceStepDecoder; from acetui.model.synthetic import TINY;"
        "from tests.support import decoder_inputs;"
        "model = AceStepDecoder(dataclasses.replace(TINY, num_hidden_layers=2)); model.activation_checkpointing = True;"
        "model(**decoder_inputs(model.config, batch=1, frames=64)).square().mean().backward();"
        "assert all(p.grad is not None for p in model.layers.parameters());"
        "print(sorted(name for name in ('torch._dynamo', 'sympy') if name in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=root)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "[]"
