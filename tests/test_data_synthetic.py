"""write_dataset makes files the real loader accepts, in the official layout, reproducibly."""

from __future__ import annotations

import torch

from acetui.data import load_sample, scan_dataset, write_dataset


def test_round_trip_through_scan(tmp_path):
    paths = write_dataset(tmp_path, count=5, condition_width=24, seed=2, frames=(10, 30), condition_length=(4, 9))
    assert [path.name for path in paths] == [f"sample_{i:03d}.pt" for i in range(5)]
    scan = scan_dataset(tmp_path, condition_width=24)
    assert scan.problems == () and scan.other_files == ()
    assert [info.path for info in scan.samples] == paths
    assert all(10 <= info.frames <= 30 and 4 <= info.condition_length <= 9 for info in scan.samples)
    assert {info.condition_width for info in scan.samples} == {24}


def test_official_layout(tmp_path):
    (path,) = write_dataset(tmp_path, count=1, condition_width=16, dtype=torch.bfloat16)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {
        "target_latents",
        "attention_mask",
        "encoder_hidden_states",
        "encoder_attention_mask",
        "context_latents",
        "metadata",
    }
    frames = raw["target_latents"].shape[0]
    assert raw["target_latents"].dtype == torch.bfloat16
    assert raw["context_latents"].shape == (frames, 128)
    assert torch.all(raw["context_latents"][:, 64:] == 1)
    assert raw["metadata"]["duration"] == round(frames / 25, 2)
    assert load_sample(path).frames == frames


def test_seeded(tmp_path):
    first = write_dataset(tmp_path / "a", count=2, condition_width=8, seed=5)
    again = write_dataset(tmp_path / "b", count=2, condition_width=8, seed=5)
    other = write_dataset(tmp_path / "c", count=2, condition_width=8, seed=6)
    load = [[load_sample(p).target_latents for p in paths] for paths in (first, again, other)]
    assert all(torch.equal(x, y) for x, y in zip(load[0], load[1]))
    assert not torch.equal(load[0][0], load[2][0])
