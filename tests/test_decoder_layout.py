"""The memory layouts the decoder's kernels see: a strided operand costs a copy or a slow kernel."""

from __future__ import annotations

from acetui.model.decoder import AceStepDecoder
from acetui.model.synthetic import TINY
from tests.support import decoder_inputs


def test_every_layer_reads_the_residual_stream_token_by_token():
    """The patch convolution's output is a transposed view; kept as such, every norm of the residual
    stream would copy it into rows (five copies per layer with the backward pass)."""
    model = AceStepDecoder(TINY)
    layouts = []
    for layer in model.layers:
        layer.register_forward_pre_hook(lambda module, args: layouts.append(args[0].is_contiguous()))
    for batch in (1, 2):
        model(**decoder_inputs(TINY, batch=batch, frames=40))
    assert layouts == [True] * 2 * TINY.num_hidden_layers
