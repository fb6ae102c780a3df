"""Effective rank (singular values for 95 % of the squared-singular-value sum) and its per-checkpoint cache."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch

from acetui.estimate import effective_rank as module
from acetui.estimate.effective_rank import UNKNOWN, effective_rank_of, effective_ranks
from acetui.model import load_decoder


def _with_singular_values(values: list[float], rows: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    left, _ = torch.linalg.qr(torch.randn(rows, len(values), generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(len(values), len(values), generator=generator, dtype=torch.float64))
    return (left * torch.tensor(values, dtype=torch.float64)) @ right.T


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([10.0, 1.0, 1.0, 1.0], 1),  # 100 / 103 = 97 %
        ([3.0, 2.0, 1.0, 1.0], 4),  # 9, 13, 14 of 15: 60 %, 87 %, 93 %, 100 %
        ([4.0, 2.0, 1.0, 0.5], 3),  # 16, 20, 21 of 21.25: 75 %, 94 %, 98.8 %
        ([1.0] * 20, 19),  # 19 / 20 is exactly 95 %
        ([1.0] * 8, 8),  # 7 / 8 = 87.5 %
        ([5.0, 0.0, 0.0], 1),
    ],
)
def test_effective_rank_of_known_spectra(values, expected):
    weight = _with_singular_values(values, rows=max(12, len(values)))
    assert effective_rank_of(weight) == expected
    assert effective_rank_of(weight.to(torch.bfloat16)) in (expected, expected + 1)


def test_effective_rank_edge_cases():
    assert effective_rank_of(torch.zeros(4, 6)) == 0
    assert effective_rank_of(torch.eye(10), energy=1.0) == 10
    assert effective_rank_of(torch.eye(10), energy=0.5) == 5
    with pytest.raises(ValueError):
        effective_rank_of(torch.zeros(3))
    with pytest.raises(ValueError):
        effective_rank_of(torch.eye(3), energy=0.0)


@pytest.mark.parametrize("variant", ["turbo", "base"])  # single bf16 file and a 3-shard fp32 checkpoint
def test_every_projection_matches_a_direct_svd(checkpoint_root, variant):
    ranks = effective_ranks(checkpoint_root, variant)
    decoder = load_decoder(checkpoint_root, variant)
    names = decoder.attention_projection_names(include_mlp=True)
    assert sorted(ranks) == sorted(f"decoder.{name}" for name in names)
    for name in names:
        weight = decoder.get_submodule(name).weight.double()
        squares = torch.linalg.svdvals(weight).square()
        fraction = squares.cumsum(0) / squares.sum()
        expected = int((fraction < 0.95 - 1e-12).sum()) + 1
        assert ranks[f"decoder.{name}"] == expected, name
        assert 0 < expected <= min(weight.shape)


def test_cached_per_checkpoint_and_invalidated_by_mtime(checkpoint_root, tmp_path, isolated_app_dirs, monkeypatch):
    root = tmp_path / "checkpoints"
    shutil.copytree(checkpoint_root / "acestep-v15-turbo", root / "acestep-v15-turbo")
    wanted = ["decoder.layers.0.self_attn.q_proj", "decoder.layers.3.mlp.down_proj", "decoder.layers.9.mlp.up_proj"]
    calls = []
    real = module.effective_rank_of
    monkeypatch.setattr(module, "effective_rank_of", lambda w, e=0.95: calls.append(1) or real(w, e))

    first = effective_ranks(root, "turbo", wanted)
    assert first[wanted[2]] == UNKNOWN and first[wanted[0]] > 0 and first[wanted[1]] > 0
    assert len(calls) == 2
    files = list(isolated_app_dirs.effective_rank.glob("*.json"))
    assert len(files) == 1
    cached = json.loads(files[0].read_text())
    assert cached["ranks"] == {wanted[0]: first[wanted[0]], wanted[1]: first[wanted[1]]}

    assert effective_ranks(root, "turbo", wanted) == first and len(calls) == 2  # served from the cache
    everything = effective_ranks(root, "turbo")  # only the missing modules are computed
    assert len(calls) == len(everything) == 44

    weights = root / "acestep-v15-turbo" / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert effective_ranks(root, "turbo", wanted[:1]) == {wanted[0]: first[wanted[0]]}
    assert len(calls) == 45 and len(list(isolated_app_dirs.effective_rank.glob("*.json"))) == 2


def test_a_corrupt_cache_is_rebuilt(checkpoint_root, isolated_app_dirs):
    name = "decoder.layers.1.cross_attn.v_proj"
    expected = effective_ranks(checkpoint_root, "turbo", [name])
    (cache,) = isolated_app_dirs.effective_rank.glob("*.json")
    cache.write_text("{ half")
    assert effective_ranks(checkpoint_root, "turbo", [name]) == expected
    assert math.isfinite(json.loads(cache.read_text())["ranks"][name])
