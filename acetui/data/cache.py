"""Loaded samples kept in memory up to a byte budget, since a run revisits the same files."""

from __future__ import annotations

from pathlib import Path

from acetui.data.samples import Sample, load_sample

DEFAULT_BUDGET_BYTES = 2 * 1024**3


class SampleCache:
    """``get`` loads (and validates) a sample once; later batches reuse it while the budget allows."""

    def __init__(self, condition_width: int, context_channels: int, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.condition_width = condition_width
        self.context_channels = context_channels
        self.budget = budget_bytes
        self.used = 0
        self.samples: dict[Path, Sample] = {}

    def get(self, path: Path) -> Sample:
        if path in self.samples:
            return self.samples[path]
        sample = load_sample(path, condition_width=self.condition_width, context_channels=self.context_channels)
        tensors = (sample.target_latents, sample.context_latents, sample.encoder_hidden_states)
        size = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
        if self.used + size <= self.budget:
            self.samples[path] = sample
            self.used += size
        return sample
