"""Activation checkpointing for one decoder layer: keep its inputs, run it again in backward.

``torch.utils.checkpoint`` does the same, but its first call imports ``torch._dynamo`` (about 1 s on a
CPU, 4-5 s on a GPU server with Triton installed), which every checkpointed run paid in its first batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class RecomputedLayer(torch.autograd.Function):
    """``layer(*inputs)`` without keeping its activations; backward recomputes them.

    The layer's trainable parameters are explicit inputs: autograd then calls this backward even where no
    input needs a gradient (the first layer's input comes from frozen modules) and accumulates the
    returned weight gradients as for any leaf, post-accumulate hooks included.
    """

    @staticmethod
    def forward(ctx, layer: Callable[..., torch.Tensor], count: int, *inputs_and_parameters: torch.Tensor):
        inputs = inputs_and_parameters[:count]
        ctx.layer, ctx.parameters = layer, inputs_and_parameters[count:]
        ctx.save_for_backward(*inputs)
        with torch.no_grad():
            return layer(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inputs = [tensor.detach().requires_grad_(tensor.requires_grad) for tensor in ctx.saved_tensors]
        # Differentiating sum(output * grad) hands exactly ``grad`` to the output (1 * grad); passing it as
        # grad_outputs instead would make torch import sympy for a shape check on the first call.
        with torch.enable_grad():
            projected = (ctx.layer(*inputs) * grad).sum()
        candidates = [*inputs, *ctx.parameters]
        wanted = [tensor for tensor, needed in zip(candidates, ctx.needs_input_grad[2:]) if needed]
        found = iter(torch.autograd.grad(projected, wanted, allow_unused=True))
        return None, None, *(next(found) if needed else None for needed in ctx.needs_input_grad[2:])


def recomputed(layer: Callable[..., torch.Tensor], parameters: list[torch.Tensor], *inputs: torch.Tensor):
    """``layer(*inputs)``, its activations recomputed in backward; ``parameters``: those it trains."""
    return RecomputedLayer.apply(layer, len(inputs), *inputs, *parameters)
