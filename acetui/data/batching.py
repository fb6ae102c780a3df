"""Batches in the official layout and a seeded, resumable order of samples.

Collation right-pads with zeros exactly as Side-Step's collate does (the decoder ignores the masks, so
padding is part of what the official objective sees). The order is a pure function of the seed, so a
resumed run can skip the batches it already did and see the same data afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from acetui.data.samples import Sample


@dataclass(frozen=True, eq=False)
class Batch:
    """B samples stacked and zero-padded to the longest T and L of the batch."""

    target_latents: torch.Tensor  # [B, T, 64]
    context_latents: torch.Tensor  # [B, T, C]
    encoder_hidden_states: torch.Tensor  # [B, L, E]
    attention_mask: torch.Tensor  # [B, T]
    encoder_attention_mask: torch.Tensor  # [B, L]
    paths: tuple[Path, ...]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Batch:
        """Every tensor, masks included, on ``device`` in ``dtype`` (consumers feed masks as floats)."""
        moved = {
            item.name: getattr(self, item.name).to(device=device, dtype=dtype)
            for item in fields(self)
            if item.name != "paths"
        }
        return Batch(**moved, paths=self.paths)

    @property
    def size(self) -> int:
        return self.target_latents.shape[0]


def collate(
    samples: Sequence[Sample],
    *,
    crop_frames: int | None = None,
    crop_offsets: Sequence[int] | None = None,
) -> Batch:
    """Stack samples; with ``crop_frames``, cut T to that window from each ``crop_offsets[i]`` (default 0).

    Only the frame axis is cropped; the condition always stays whole, as in Side-Step's training crop.
    A sample shorter than the window is kept whole and padded.
    """
    if not samples:
        raise ValueError("collate needs at least one sample")
    offsets = list(crop_offsets) if crop_offsets is not None else [0] * len(samples)
    if len(offsets) != len(samples):
        raise ValueError(f"{len(offsets)} crop offsets for {len(samples)} samples")
    windows = [_window(sample, crop_frames, offset) for sample, offset in zip(samples, offsets)]
    return Batch(
        target_latents=_pad_stack([s.target_latents[w] for s, w in zip(samples, windows)]),
        context_latents=_pad_stack([s.context_latents[w] for s, w in zip(samples, windows)]),
        encoder_hidden_states=_pad_stack([s.encoder_hidden_states for s in samples]),
        attention_mask=_pad_stack([s.attention_mask[w] for s, w in zip(samples, windows)]),
        encoder_attention_mask=_pad_stack([s.encoder_attention_mask for s in samples]),
        paths=tuple(s.path for s in samples),
    )


def _window(sample: Sample, crop_frames: int | None, offset: int) -> slice:
    if crop_frames is None:
        return slice(None)
    if crop_frames <= 0:
        raise ValueError(f"crop_frames must be positive, got {crop_frames}")
    if not 0 <= offset <= max(sample.frames - crop_frames, 0):
        raise ValueError(f"crop offset {offset} does not fit {crop_frames} frames into {sample.frames}")
    return slice(offset, offset + crop_frames)


def _pad_stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack along a new batch axis, right-padding the first axis with zeros."""
    longest = max(t.shape[0] for t in tensors)
    out = tensors[0].new_zeros((len(tensors), longest, *tensors[0].shape[1:]))
    for row, tensor in zip(out, tensors):
        row[: tensor.shape[0]] = tensor
    return out


def batch_plan(sample_count: int, batches: int, batch_size: int, seed: int) -> list[list[int]]:
    """Sample indices for each batch: seeded permutations, one per epoch, concatenated and cut.

    A batch that straddles two epochs is completed with samples it does not hold yet (the new epoch's
    first fresh ones, the rest of its order kept), so no batch weighs one sample twice while the
    dataset has at least ``batch_size`` samples. Asking for more batches only appends to the plan (the
    prefix never changes), which is what lets a resumed run continue with exactly the batches it had
    not done yet.
    """
    if sample_count < 1 or batch_size < 1 or batches < 0:
        raise ValueError(f"bad batch plan: {sample_count} samples, {batches} batches of {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < batches * batch_size:
        permutation = torch.randperm(sample_count, generator=generator).tolist()
        open_batch = set(order[len(order) - len(order) % batch_size :])
        if open_batch and sample_count >= batch_size:
            completion = [index for index in permutation if index not in open_batch][: batch_size - len(open_batch)]
            permutation = completion + [index for index in permutation if index not in completion]
        order.extend(permutation)
    return [order[start : start + batch_size] for start in range(0, batches * batch_size, batch_size)]
