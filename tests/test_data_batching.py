"""collate padding and cropping, and the seeded batch order that resume depends on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from acetui.data import Sample, batch_plan, collate


def make_sample(name: str, frames: int, tokens: int, width: int = 8) -> Sample:
    """A sample whose values encode their frame index, so crops and padding are easy to check."""
    steps = torch.arange(1, frames + 1, dtype=torch.float32)[:, None]
    return Sample(
        path=Path(name),
        target_latents=steps.expand(frames, 64).contiguous(),
        context_latents=(steps + 1000).expand(frames, 128).contiguous(),
        encoder_hidden_states=torch.full((tokens, width), 7.0),
        attention_mask=torch.ones(frames),
        encoder_attention_mask=torch.ones(tokens),
        size_bytes=0,
    )


def test_collate_right_pads_with_zeros():
    short, long = make_sample("a.pt", 3, 5), make_sample("b.pt", 6, 2)
    batch = collate([short, long])
    assert batch.size == 2
    assert batch.target_latents.shape == (2, 6, 64)
    assert batch.context_latents.shape == (2, 6, 128)
    assert batch.encoder_hidden_states.shape == (2, 5, 8)
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert batch.encoder_attention_mask.tolist() == [[1] * 5, [1, 1, 0, 0, 0]]
    assert batch.target_latents[0, :, 0].tolist() == [1, 2, 3, 0, 0, 0]
    assert batch.context_latents[0, :, 5].tolist() == [1001, 1002, 1003, 0, 0, 0]
    assert batch.encoder_hidden_states[1, :, 0].tolist() == [7, 7, 0, 0, 0]
    assert torch.equal(batch.target_latents[1], long.target_latents)
    assert batch.paths == (Path("a.pt"), Path("b.pt"))


def test_crop_cuts_frames_only():
    samples = [make_sample("a.pt", 10, 4), make_sample("b.pt", 8, 6), make_sample("c.pt", 2, 3)]
    batch = collate(samples, crop_frames=4, crop_offsets=[6, 1, 0])
    assert batch.target_latents.shape == (3, 4, 64)
    assert batch.target_latents[:, :, 0].tolist() == [[7, 8, 9, 10], [2, 3, 4, 5], [1, 2, 0, 0]]
    assert batch.context_latents[0, :, 0].tolist() == [1007, 1008, 1009, 1010]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.encoder_hidden_states.shape == (3, 6, 8)


def test_crop_defaults_to_the_start():
    batch = collate([make_sample("a.pt", 10, 4)], crop_frames=3)
    assert batch.target_latents[0, :, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("crop", "offsets", "message"),
    [(4, [7], "does not fit"), (4, [-1], "does not fit"), (0, [0], "positive"), (4, [0, 0], "2 crop offsets")],
)
def test_bad_crop_requests(crop, offsets, message):
    with pytest.raises(ValueError, match=message):
        collate([make_sample("a.pt", 10, 4)], crop_frames=crop, crop_offsets=offsets)


def test_collate_needs_samples():
    with pytest.raises(ValueError):
        collate([])


def test_to_moves_and_casts_every_tensor():
    batch = collate([make_sample("a.pt", 3, 2)]).to("cpu", torch.bfloat16)
    for tensor in (
        batch.target_latents,
        batch.context_latents,
        batch.encoder_hidden_states,
        batch.attention_mask,
        batch.encoder_attention_mask,
    ):
        assert tensor.dtype == torch.bfloat16
    assert batch.paths == (Path("a.pt"),)


def test_batch_plan_is_deterministic_and_seeded():
    assert batch_plan(7, 6, 2, seed=3) == batch_plan(7, 6, 2, seed=3)
    assert batch_plan(7, 6, 2, seed=3) != batch_plan(7, 6, 2, seed=4)


def test_batch_plan_shapes_and_epochs():
    plan = batch_plan(5, 6, 3, seed=0)
    assert len(plan) == 6 and all(len(batch) == 3 for batch in plan)
    order = [index for batch in plan for index in batch]
    for epoch in range(3):  # 18 draws: three full permutations, then a partial one
        assert sorted(order[epoch * 5 : epoch * 5 + 5]) == list(range(5))
    assert batch_plan(3, 0, 2, seed=0) == []


def test_batch_plan_cycles_when_more_batches_than_samples():
    plan = batch_plan(3, 10, 1, seed=1)
    assert [sorted(sum(plan[i : i + 3], [])) for i in (0, 3, 6)] == [[0, 1, 2]] * 3


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_batch_plan_prefix_is_stable(batch_size):
    longer = batch_plan(6, 10, batch_size, seed=11)
    assert batch_plan(6, 5, batch_size, seed=11) == longer[:5]
    assert batch_plan(6, 1, batch_size, seed=11) == longer[:1]


@pytest.mark.parametrize(("sample_count", "batch_size"), [(5, 2), (5, 3), (7, 4), (4, 4), (9, 5)])
def test_no_batch_holds_a_sample_twice_across_epoch_boundaries(sample_count, batch_size):
    plan = batch_plan(sample_count, 40, batch_size, seed=2)
    assert all(len(set(batch)) == batch_size for batch in plan)
    order = [index for batch in plan for index in batch]
    for start in range(0, len(order) - sample_count + 1, sample_count):  # still one permutation per epoch
        assert sorted(order[start : start + sample_count]) == list(range(sample_count))


def test_a_batch_larger_than_the_dataset_holds_every_sample_and_repeats():
    plan = batch_plan(2, 4, 3, seed=0)
    assert all(len(batch) == 3 and set(batch) == {0, 1} for batch in plan)


def test_batch_plan_rejects_nonsense():
    with pytest.raises(ValueError):
        batch_plan(0, 3, 1, seed=0)
    with pytest.raises(ValueError):
        batch_plan(3, 3, 0, seed=0)
