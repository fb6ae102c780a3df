"""Shared fixtures: tiny checkpoints in the official layout, real ``.pt`` datasets, isolated app folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from acetui import paths
from acetui.data import write_dataset
from acetui.model.synthetic import TINY, XL_LIKE, write_checkpoint


@pytest.fixture(autouse=True)
def isolated_app_dirs(tmp_path, monkeypatch) -> paths.AppDirs:
    """Profiles, history and caches of every test live in its own temp folder, never the user's."""
    dirs = paths.AppDirs(config=tmp_path / "config", data=tmp_path / "data", cache=tmp_path / "cache")
    monkeypatch.setattr(paths, "app_dirs", lambda: dirs)
    return dirs


@pytest.fixture(scope="session")
def checkpoint_root(tmp_path_factory) -> Path:
    """A checkpoints root with a bf16 single-file turbo, an fp32 3-shard base and an XL-like fp32 variant."""
    root = tmp_path_factory.mktemp("checkpoints")
    write_checkpoint(root / "acestep-v15-turbo", TINY, seed=1, dtype=torch.bfloat16)
    write_checkpoint(root / "acestep-v15-base", TINY, seed=2, dtype=torch.float32, shards=3)
    write_checkpoint(root / "acestep-v15-xl-base", XL_LIKE, seed=3, dtype=torch.float32, shards=3)
    return root


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    """Six valid samples for the tiny 2B-like variants (condition width 64), of mixed lengths."""
    folder = tmp_path_factory.mktemp("dataset")
    write_dataset(folder, count=6, condition_width=TINY.condition_width, seed=5, frames=(9, 30))
    return folder


@pytest.fixture(scope="session")
def xl_dataset_dir(tmp_path_factory) -> Path:
    """Samples for the XL-like variant, whose condition width (48) differs from its hidden size."""
    folder = tmp_path_factory.mktemp("xl-dataset")
    write_dataset(folder, count=4, condition_width=XL_LIKE.condition_width, seed=6, frames=(9, 30))
    return folder
