"""How far a ranking can be trusted: per-unit uncertainty and the stability of the top-k set.

Everything here is a pure function of a per-batch value matrix ``values[batches, units]`` (the
``ScoreTable.values`` of any score and granularity), so the CLI, the TUI, the engine's auto-stop and the
tests all compute the same numbers.

Definitions (n = number of included batches):

* **mean**: the plain mean over batches (the sensitivity the ranking uses).
* **stderr**: the standard error of that mean, ``sd / sqrt(n)`` with the n - 1 sample standard deviation.
* **95 % interval**: ``mean +- t(0.975, n - 1) * stderr`` (Student t; batches are i.i.d. draws of data,
  noise and timestep, so a per-unit t interval is the textbook choice).
* **P(top-k)**: the fraction of bootstrap resamples in which the unit is among the k highest means. A
  resample draws n batches with replacement (the same draw for every unit, so correlations between units
  are kept) from a ``torch.Generator`` seeded with ``seed``: same data + same seed = same figures.
* **stability**: the expected fraction of the full-sample top-k set that a resampled top-k set retains,
  ``mean over resamples of |S_b & S| / k``. Both sets have k members, so this equals the mean P(top-k) of
  the full-sample top-k units. 1 means every resample picks the same top-k; for units that are
  indistinguishable (exchangeable noise) it is about k / units, the overlap of a random k-subset.

Ties in a mean are broken by unit order (a stable sort), exactly as ``rank_modules`` breaks them. With
fewer than two batches nothing can be said: stderr, interval, P(top-k) and stability are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from acetui.estimate.result import EstimateResult
from acetui.estimate.scores import SCORES, score_table

DEFAULT_RESAMPLES = 1000
MIN_BATCHES = 2
METHOD = "bootstrap over batches; stability = mean fraction of the top-k set retained"

# Two-sided 95 % Student t quantiles t(0.975, df) for df = 1..30; larger df use a Cornish-Fisher series.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (3 significant digits or better)."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class UnitStats:
    """One unit's figures; the NaN ones are unknown (fewer than two batches)."""

    name: str
    mean: float
    stderr: float
    ci_low: float
    ci_high: float
    p_top_k: float

    def to_dict(self) -> dict[str, float | None]:
        return {key: _finite(getattr(self, key)) for key in ("mean", "stderr", "ci_low", "ci_high", "p_top_k")}


@dataclass(frozen=True)
class RankingStats:
    """Statistics of one score table: ``units`` in table order, plus the top-k stability."""

    units: list[UnitStats]
    top_k: int
    stability: float
    batches: int
    resamples: int
    seed: int

    def by_name(self) -> dict[str, UnitStats]:
        return {unit.name: unit for unit in self.units}

    def to_dict(self) -> dict[str, Any]:
        return {
            "top_k": self.top_k,
            "stability": _finite(self.stability),
            "batches": self.batches,
            "resamples": self.resamples,
            "seed": self.seed,
            "units": {unit.name: unit.to_dict() for unit in self.units},
        }


def _finite(value: float) -> float | None:
    """JSON has no NaN: unknown figures are stored as null."""
    return value if math.isfinite(value) else None


def _as_matrix(values: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.dim() != 2:
        raise ValueError(f"expected a [batches, units] matrix, got shape {tuple(values.shape)}")
    return values


def batch_summary(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, stderr, ci_low, ci_high) per unit; stderr and interval are NaN with fewer than 2 batches."""
    values = _as_matrix(values)
    batches, units = values.shape
    if batches == 0:
        nan = torch.full((units,), math.nan, dtype=torch.float64)
        return nan.clone(), nan.clone(), nan.clone(), nan.clone()
    mean = values.mean(dim=0)
    if batches < MIN_BATCHES:
        nan = torch.full((units,), math.nan, dtype=torch.float64)
        return mean, nan.clone(), nan.clone(), nan.clone()
    stderr = values.std(dim=0, correction=1) / math.sqrt(batches)
    half = t_quantile_975(batches - 1) * stderr
    return mean, stderr, mean - half, mean + half


def top_k_mask(means: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean membership of the k highest values along the last dimension (ties: lower index wins)."""
    k = max(0, min(k, means.shape[-1]))
    order = torch.sort(-means, dim=-1, stable=True).indices[..., :k]
    mask = torch.zeros(means.shape, dtype=torch.bool)
    return mask.scatter_(-1, order, True)


BOOTSTRAP_CHUNK = 1 << 21  # picks per chunk of resamples: 16 MB of picks and 16 MB of counts


def bootstrap_means(values: torch.Tensor, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> torch.Tensor:
    """Column means of ``resamples`` seeded bootstrap resamples of the batches: [resamples, units].

    Implemented as a count matrix times the values, a chunk of resamples at a time: memory stays at
    BOOTSTRAP_CHUNK picks whatever the batch count (all at once, 20,000 batches took 480 MB). The
    generator draws the picks in the same order either way, so the means do not depend on the chunks."""
    values = _as_matrix(values)
    batches = values.shape[0]
    generator = torch.Generator().manual_seed(seed)
    step = max(1, BOOTSTRAP_CHUNK // max(batches, 1))
    means = []
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        picks = torch.randint(0, batches, (rows, batches), generator=generator)
        counts = torch.zeros(rows, batches, dtype=torch.float64)
        counts.scatter_add_(1, picks, torch.ones(rows, batches, dtype=torch.float64))
        means.append(counts @ values / batches)
    return torch.cat(means) if means else values.new_zeros((0, values.shape[1]))


def top_k_probabilities(
    values: torch.Tensor, k: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[torch.Tensor, float]:
    """(P(top-k) per unit, stability of the full-sample top-k set); see the module docstring."""
    values = _as_matrix(values)
    batches, units = values.shape
    if batches < MIN_BATCHES or units == 0:
        return torch.full((units,), math.nan, dtype=torch.float64), math.nan
    k = max(1, min(k, units))
    full = top_k_mask(values.mean(dim=0), k)
    sampled = top_k_mask(bootstrap_means(values, resamples, seed), k)
    probabilities = sampled.double().mean(dim=0)
    stability = float((sampled & full).sum(dim=1).double().mean() / k)
    return probabilities, stability


def top_k_stability(values: torch.Tensor, k: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> float:
    """Only the stability figure (what ``--estimate-batches auto`` watches)."""
    return top_k_probabilities(values, k, resamples, seed)[1]


def ranking_stats(
    values: torch.Tensor, names: list[str], k: int, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> RankingStats:
    """All figures of one score table."""
    values = _as_matrix(values)
    if values.shape[1] != len(names):
        raise ValueError(f"{len(names)} names for {values.shape[1]} columns")
    mean, stderr, low, high = batch_summary(values)
    probabilities, stability = top_k_probabilities(values, k, resamples, seed)
    units = [
        UnitStats(name, float(mean[i]), float(stderr[i]), float(low[i]), float(high[i]), float(probabilities[i]))
        for i, name in enumerate(names)
    ]
    return RankingStats(units, min(k, len(names)), stability, values.shape[0], resamples, seed)


def result_stats(
    result: EstimateResult,
    score: str = "grad-norm",
    granularity: str | None = None,
    *,
    top_k: int | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = None,
) -> RankingStats:
    """Statistics of a run for one score and granularity (defaults: the request's top-k, granularity and
    seed, so the figures stored in the run record are reproduced exactly)."""
    request = result.request
    table = score_table(result, score, granularity or request.granularity)
    return ranking_stats(
        table.values,
        table.names,
        top_k or request.top_k,
        resamples=resamples,
        seed=request.seed if seed is None else seed,
    )


def statistics_record(result: EstimateResult, resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
    """What the run record keeps under ``metadata["statistics"]``: every score at the request granularity."""
    return {
        "method": METHOD,
        "granularity": result.request.granularity,
        "scores": {score: result_stats(result, score, resamples=resamples).to_dict() for score in SCORES},
    }
