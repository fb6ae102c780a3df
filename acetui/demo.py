"""The embedded demo: a small official-layout checkpoint and a synthetic dataset in the user cache.

Written once (seeded, so every machine gets the same files) and reused; a marker file written last
means a half-written demo from an interrupted first start is rebuilt rather than used.
"""

from __future__ import annotations

import shutil

import torch

from acetui import paths
from acetui.data import write_dataset
from acetui.errors import AcetuiError, first_line
from acetui.estimate import EstimateRequest
from acetui.model.synthetic import DEMO, write_checkpoint

DEMO_VARIANT = "turbo"
DEMO_SAMPLES = 12
_MARKER = "complete-v1"


def ensure_demo() -> tuple[str, str]:
    """Create the demo files if needed; return (checkpoint root, dataset folder)."""
    folder = paths.app_dirs().demo
    checkpoints, dataset = folder / "checkpoints", folder / "dataset"
    if (folder / _MARKER).exists():
        return str(checkpoints), str(dataset)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        write_checkpoint(checkpoints / f"acestep-v15-{DEMO_VARIANT}", DEMO, seed=2026, dtype=torch.bfloat16)
        write_dataset(
            dataset,
            count=DEMO_SAMPLES,
            condition_width=DEMO.condition_width,
            seed=2026,
            frames=(50, 250),
            condition_length=(16, 48),
        )
        (folder / _MARKER).write_text("demo files complete\n", encoding="utf-8")
    except (OSError, RuntimeError) as error:  # torch.save says a full disk with a RuntimeError
        problem = error.strerror if isinstance(error, OSError) and error.strerror else first_line(error)
        raise AcetuiError(
            f"{folder}: cannot write the demo files ({problem}); point XDG_CACHE_HOME at a folder you can write"
        ) from None
    return str(checkpoints), str(dataset)


def demo_request() -> EstimateRequest:
    checkpoints, dataset = ensure_demo()
    return EstimateRequest(checkpoint_dir=checkpoints, variant=DEMO_VARIANT, dataset_dir=dataset, batches=8, top_k=16)
