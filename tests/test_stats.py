"""Uncertainty figures on per-batch matrices whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch

from acetui.estimate.stats import (
    BOOTSTRAP_CHUNK,
    batch_summary,
    bootstrap_means,
    ranking_stats,
    t_quantile_975,
    top_k_mask,
    top_k_probabilities,
    top_k_stability,
)


def separated(batches: int = 8, units: int = 10) -> torch.Tensor:
    """Column j is always about j: separated far beyond the batch noise."""
    noise = torch.rand(batches, units, generator=torch.Generator().manual_seed(1)) * 0.1
    return torch.arange(units, dtype=torch.float64) + noise


def test_mean_stderr_and_interval_match_textbook():
    values = torch.tensor([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [6.0, 10.0]])
    mean, stderr, low, high = batch_summary(values)
    assert mean.tolist() == [3.0, 10.0]
    sd = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3)
    assert stderr[0].item() == pytest.approx(sd / 2)
    assert stderr[1].item() == 0.0
    assert low[0].item() == pytest.approx(3 - 3.182 * sd / 2)
    assert high[0].item() == pytest.approx(3 + 3.182 * sd / 2)
    assert (low[1].item(), high[1].item()) == (10.0, 10.0)


def test_t_quantile_is_continuous_past_the_table():
    assert t_quantile_975(30) == pytest.approx(2.042, abs=1e-3)
    assert t_quantile_975(31) == pytest.approx(2.040, abs=1e-3)
    assert t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)
    assert math.isnan(t_quantile_975(0))


def test_top_k_mask_breaks_ties_by_order():
    assert top_k_mask(torch.tensor([1.0, 3.0, 3.0, 2.0]), 2).tolist() == [False, True, True, False]
    assert top_k_mask(torch.tensor([1.0, 1.0, 1.0]), 2).tolist() == [True, True, False]


def test_bootstrap_is_seeded_and_keeps_the_scale():
    values = separated()
    first, again = bootstrap_means(values, 200, seed=3), bootstrap_means(values, 200, seed=3)
    assert torch.equal(first, again)
    assert not torch.equal(first, bootstrap_means(values, 200, seed=4))
    assert first.shape == (200, 10)
    assert torch.allclose(first.mean(dim=0), values.mean(dim=0), atol=0.01)


def test_bootstrap_of_many_batches_is_taken_in_chunks_with_the_same_draws():
    """20,000 batches drew all resamples at once (480 MB of picks and counts); chunked, each resample still
    gets the generator's draws in order: the means are the one-shot computation's."""
    batches = BOOTSTRAP_CHUNK // 100 + 7  # 99 resamples per chunk: 3 chunks for 250
    values = torch.rand(batches, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(5)
    picks = torch.randint(0, batches, (250, batches), generator=generator)
    counts = torch.zeros(250, batches, dtype=torch.float64).scatter_add_(
        1, picks, torch.ones_like(picks, dtype=torch.float64)
    )
    assert torch.allclose(bootstrap_means(values, 250, seed=5), counts @ values / batches, rtol=1e-12, atol=0)


def test_separated_columns_are_certain():
    probabilities, stability = top_k_probabilities(separated(), k=3)
    assert probabilities.tolist() == [0.0] * 7 + [1.0] * 3
    assert stability == 1.0


def test_exchangeable_columns_give_about_k_over_n():
    values = torch.randn(40, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    probabilities, stability = top_k_probabilities(values, k=5, resamples=2000, seed=1)
    assert probabilities.sum().item() == pytest.approx(5.0)  # every resample has exactly k members
    assert probabilities.mean().item() == pytest.approx(5 / 20)
    # The full-sample winners are favoured a little by the resampling, but far from certain.
    assert 0.2 < stability < 0.7
    assert probabilities.max().item() < 0.95


def test_stability_rises_with_more_batches():
    generator = torch.Generator().manual_seed(2)
    signal = torch.linspace(0.0, 3.0, 12, dtype=torch.float64)
    values = signal + torch.randn(400, 12, generator=generator, dtype=torch.float64)
    few, many = top_k_stability(values[:5], 3), top_k_stability(values, 3)
    assert many > few
    assert many > 0.9


def test_one_batch_says_nothing():
    stats = ranking_stats(torch.tensor([[1.0, 2.0]]), ["a", "b"], k=1)
    assert math.isnan(stats.stability)
    assert all(math.isnan(unit.stderr) and math.isnan(unit.p_top_k) for unit in stats.units)
    assert stats.units[1].mean == 2.0
    assert stats.to_dict()["units"]["a"] == {
        "mean": 1.0,
        "stderr": None,
        "ci_low": None,
        "ci_high": None,
        "p_top_k": None,
    }


def test_ranking_stats_names_and_k_clamped():
    stats = ranking_stats(separated(units=3), ["a", "b", "c"], k=10)
    assert stats.top_k == 3 and stats.stability == 1.0
    assert [unit.p_top_k for unit in stats.units] == [1.0, 1.0, 1.0]
    assert stats.by_name()["c"].mean > stats.by_name()["a"].mean
    with pytest.raises(ValueError):
        ranking_stats(separated(units=3), ["a", "b"], k=1)
