"""Writing sample files in the exact layout Side-Step's preprocessor produces, with seeded contents.

Used by ``acetui demo`` (a dataset the app can run on anywhere), by the tests and by the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import torch

from acetui.data.samples import LATENT_FRAMES_PER_SECOND


def write_dataset(
    folder: Path,
    *,
    count: int,
    condition_width: int,
    seed: int = 0,
    frames: tuple[int, int] = (20, 60),
    condition_length: tuple[int, int] = (8, 16),
    dtype: torch.dtype = torch.float32,
) -> list[Path]:
    """Write ``sample_000.pt`` ... with T and L drawn uniformly from the inclusive ranges; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    # Stands in for the variant's silence latent: one tensor per dataset, cut to each sample's length.
    silence = 0.1 * torch.randn(frames[1], 64, generator=generator)
    paths = []
    for index in range(count):
        length = _uniform(frames, generator)
        tokens = _uniform(condition_length, generator)
        sample = {
            # The preprocessor saves a transposed view, so real files are often non-contiguous.
            "target_latents": torch.randn(64, length, generator=generator).to(dtype).T,
            "attention_mask": torch.ones(length, dtype=dtype),
            "encoder_hidden_states": torch.randn(tokens, condition_width, generator=generator).to(dtype),
            "encoder_attention_mask": torch.ones(tokens, dtype=dtype),
            "context_latents": torch.cat([silence[:length], torch.ones(length, 64)], dim=1).to(dtype),
            "metadata": {
                "filename": f"sample_{index:03d}.wav",
                "caption": f"synthetic sample {index}",
                "lyrics": "[Instrumental]",
                "duration": round(length / LATENT_FRAMES_PER_SECOND, 2),
                "bpm": None,
                "is_instrumental": True,
                "is_synthetic": True,
            },
        }
        path = folder / f"sample_{index:03d}.pt"
        torch.save(sample, path)
        paths.append(path)
    return paths


def _uniform(bounds: tuple[int, int], generator: torch.Generator) -> int:
    return int(torch.randint(bounds[0], bounds[1] + 1, (1,), generator=generator))
