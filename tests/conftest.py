"""Shared fixtures: tiny checkpoints in the official layout and real ``.pt`` datasets on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from acetui.model.synthetic import TINY, XL_LIKE, write_checkpoint


@pytest.fixture(scope="session")
def checkpoint_root(tmp_path_factory) -> Path:
    """A checkpoints root with a bf16 single-file turbo, an fp32 3-shard base and an XL-like fp32 variant."""
    root = tmp_path_factory.mktemp("checkpoints")
    write_checkpoint(root / "acestep-v15-turbo", TINY, seed=1, dtype=torch.bfloat16)
    write_checkpoint(root / "acestep-v15-base", TINY, seed=2, dtype=torch.float32, shards=3)
    write_checkpoint(root / "acestep-v15-xl-base", XL_LIKE, seed=3, dtype=torch.float32, shards=3)
    return root
