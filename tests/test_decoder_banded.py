"""The decoder's blocked sliding-window attention against the dense mask the official SDPA path uses.

The diffusers parity tests cover it too (their 81-frame case takes the blocked path); this one checks
the threshold, batch > 1 and a padded last block directly.
"""

from __future__ import annotations

import torch

from acetui.model.decoder import AceStepDecoder, BandedAttention, sliding_window_attention
from acetui.model.synthetic import TINY, random_state


def test_banded_sliding_attention_matches_the_dense_mask():
    """The engine's blocked sliding-window attention equals the official dense-mask SDPA (fp32 noise)."""
    assert isinstance(sliding_window_attention(torch.zeros(1, 16, 1), 4), BandedAttention)
    assert not isinstance(sliding_window_attention(torch.zeros(1, 15, 1), 4), BandedAttention)
    model = AceStepDecoder(TINY)
    model.load_state_dict(
        {key.removeprefix("decoder."): value for key, value in random_state(TINY, 3, torch.float32).items()}
    )
    generator = torch.Generator().manual_seed(0)
    for batch, frames in ((1, 97), (2, 200)):  # odd length, padded last block, batch > 1
        inputs = (
            torch.randn(batch, frames, 64, generator=generator),
            torch.rand(batch, generator=generator),
            torch.randn(batch, 7, TINY.condition_width, generator=generator),
            torch.randn(batch, frames, 128, generator=generator),
        )
        outputs = []
        for banded in (True, False):
            model.banded_attention = banded
            model.zero_grad()
            x, t, condition, context = inputs
            out = model(x, t, t, condition, context)
            out.square().mean().backward()
            outputs.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
        (out_banded, grads_banded), (out_dense, grads_dense) = outputs
        torch.testing.assert_close(out_banded, out_dense, rtol=1e-5, atol=1e-5)
        for banded_grad, dense_grad in zip(grads_banded, grads_dense):
            torch.testing.assert_close(banded_grad, dense_grad, rtol=1e-4, atol=1e-6)
