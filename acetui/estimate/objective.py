"""The flow-matching objective the gradients are taken of, exactly as the official estimator computes it.

All randomness of a batch comes from one CPU ``torch.Generator`` seeded from (run seed, batch index), so
a batch's noise and timesteps do not depend on the device, on earlier batches, or on which process runs
it: resumed and multi-process runs reproduce a single uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from acetui.data import Batch
from acetui.errors import AcetuiError
from acetui.model import AceStepDecoder

FOCUS_RANGES = {"texture": (0.0, 0.4), "structure": (0.6, 1.0)}


@dataclass(frozen=True)
class TimestepFocus:
    """``balanced`` is the training distribution; otherwise t is uniform in [low, high]."""

    name: str
    low: float = 0.0
    high: float = 1.0

    @property
    def balanced(self) -> bool:
        return self.name == "balanced"

    @classmethod
    def parse(cls, text: str) -> TimestepFocus:
        """``balanced``, ``texture``, ``structure`` or ``LOW,HIGH`` with 0 <= LOW < HIGH <= 1."""
        text = text.strip().lower()
        if text == "balanced":
            return cls("balanced")
        if text in FOCUS_RANGES:
            return cls(text, *FOCUS_RANGES[text])
        try:
            low, high = (float(part) for part in text.split(","))
        except ValueError:
            raise AcetuiError(
                f"timestep focus {text!r} is not balanced, texture, structure or LOW,HIGH (e.g. 0.2,0.5)"
            ) from None
        if not 0.0 <= low < high <= 1.0:
            raise AcetuiError(f"timestep focus range {low},{high} must satisfy 0 <= LOW < HIGH <= 1")
        return cls(f"{low:g},{high:g}", low, high)


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    """An independent, reproducible stream per batch (a fixed odd multiplier keeps seeds apart)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + batch_index) % (2**63))


def sample_timesteps(
    size: int, mu: float, sigma: float, focus: TimestepFocus, generator: torch.Generator
) -> torch.Tensor:
    """t per sample, float32 on the CPU. Balanced: the max of two logit-normal(mu, sigma) draws."""
    if focus.balanced:
        first = torch.sigmoid(torch.randn(size, generator=generator) * sigma + mu)
        second = torch.sigmoid(torch.randn(size, generator=generator) * sigma + mu)
        return torch.maximum(first, second)
    return focus.low + (focus.high - focus.low) * torch.rand(size, generator=generator)


@dataclass(frozen=True)
class BatchDraw:
    """The random inputs of one batch: noise like the target latents and one t per sample."""

    noise: torch.Tensor
    timesteps: torch.Tensor


def draw_batch(batch: Batch, mu: float, sigma: float, focus: TimestepFocus, generator: torch.Generator) -> BatchDraw:
    timesteps = sample_timesteps(batch.size, mu, sigma, focus, generator)
    noise = torch.randn(tuple(batch.target_latents.shape), generator=generator)
    return BatchDraw(noise=noise, timesteps=timesteps)


def flow_matching_loss(decoder: AceStepDecoder, batch: Batch, draw: BatchDraw) -> torch.Tensor:
    """MSE between the predicted and true flow (noise - x0), over every element including padding."""
    x0 = batch.target_latents
    noise = draw.noise.to(device=x0.device, dtype=x0.dtype)
    t = draw.timesteps.to(device=x0.device, dtype=x0.dtype)
    x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * x0
    prediction = decoder(
        hidden_states=x_t,
        timestep=t,
        timestep_r=t,
        encoder_hidden_states=batch.encoder_hidden_states,
        context_latents=batch.context_latents,
    )
    return F.mse_loss(prediction.float(), (noise - x0).float())
