"""Spending a LoRA parameter budget where the gradients are: PEFT ``rank_pattern`` / ``alpha_pattern``.

A LoRA adapter of rank r on a projection W of shape [out, in] adds ``r * (in + out)`` parameters. Given a
ranking, ``assign_ranks`` gives every ranked module a rank proportional to its sensitivity, clamped to
[min_rank, max_rank] and scaled so the adapters' total parameter count fits ``budget_params``. Without a
budget the total is what ``base_rank`` on every one of those modules would cost: the same size as a
uniform LoRA, redistributed.

How: the ranks ``clamp(lambda * s_i, min, max)`` are rounded down to multiples of ``step`` and the
largest lambda whose cost fits is found by bisection; what is left of the budget then goes, ``step``
at a time, to the modules furthest below their unrounded target (ties: the more sensitive first).
Every module gets at least ``min_rank`` (so the budget must cover that), keys never carry ``decoder.``
(PEFT applies LoRA to the decoder itself), and alpha is always 2 x rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import torch

from acetui.errors import AcetuiError
from acetui.estimate.exports import peft_name
from acetui.estimate.request import EstimateRequest
from acetui.estimate.result import EstimateResult
from acetui.estimate.scores import RankedModule, group_name
from acetui.model.checkpoint import DECODER_PREFIX, decoder_config
from acetui.model.config import DecoderConfig
from acetui.model.decoder import AceStepDecoder

Shape = tuple[int, int] | int


def lora_parameters(shape: Shape, rank: int) -> int:
    """LoRA parameters of one adapter: ``rank * (in + out)``. A bare numel is taken as a square matrix
    (an approximation, for records whose shapes are not known)."""
    if isinstance(shape, int):
        return int(round(rank * 2 * math.sqrt(shape)))
    out_features, in_features = shape
    return rank * (in_features + out_features)


def projection_shapes(config: DecoderConfig, include_mlp: bool = True) -> dict[str, tuple[int, int]]:
    """``{layers.N.kind.proj: (out, in)}`` for every projection of a decoder with ``config`` (no memory
    is allocated: the model is built on the meta device)."""
    with torch.device("meta"):
        decoder = AceStepDecoder(config)
    modules = dict(decoder.named_modules())
    return {name: tuple(modules[name].weight.shape) for name in decoder.attention_projection_names(include_mlp)}


def result_shapes(result: EstimateResult) -> dict[str, Shape]:
    """Projection shapes for a run: exact from its checkpoint's config.json when that is still there,
    else the recorded numels (square approximation)."""
    try:
        config = decoder_config(result.request.checkpoint_dir, result.request.variant)
    except (AcetuiError, OSError):
        return {peft_name(name): numel for name, numel in zip(result.modules, result.numels)}
    return dict(projection_shapes(config, include_mlp=True))


def _members(unit: str, shapes: Mapping[str, Shape]) -> list[str]:
    """The PEFT names a ranked unit stands for (a layer-granularity unit: all its projections)."""
    name = peft_name(unit)
    if name in shapes:
        return [name]
    members = [key for key in shapes if key.startswith(name + ".")]
    if not members:
        raise AcetuiError(f"no shape known for {unit}")
    return members


def assign_ranks(
    ranking: list[RankedModule],
    shapes: Mapping[str, Shape],
    *,
    base_rank: int,
    min_rank: int,
    max_rank: int,
    budget_params: int | None = None,
) -> dict[str, int]:
    """``{module name without decoder.: rank}`` for every module in ``ranking`` (pass ``ranking[:k]`` to
    adapt only the top-k), most sensitive first. ``shapes`` maps names (with or without ``decoder.``) to
    ``(out, in)`` or numel. Raises AcetuiError for a budget below ``min_rank`` everywhere or bad limits."""
    if min_rank < 1 or max_rank < min_rank or base_rank < 1:
        raise AcetuiError(f"ranks need 1 <= min ({min_rank}) <= max ({max_rank}) and base >= 1 ({base_rank})")
    shapes = {peft_name(name): shape for name, shape in shapes.items()}
    weights: dict[str, float] = {}
    for item in ranking:
        for member in _members(item.module, shapes):
            weights.setdefault(member, max(item.sensitivity, 0.0))
    if not weights:
        return {}
    cost = {name: lora_parameters(shapes[name], 1) for name in weights}
    budget = budget_params if budget_params is not None else base_rank * sum(cost.values())
    floor_cost = min_rank * sum(cost.values())
    if budget < floor_cost:
        raise AcetuiError(f"a budget of {budget:,} parameters is below {floor_cost:,}, the cost of rank "
                          f"{min_rank} on all {len(weights)} modules")  # fmt: skip
    if max(weights.values()) <= 0:  # no signal: uniform weights
        weights = dict.fromkeys(weights, 1.0)

    def targets(scale: float) -> dict[str, float]:
        return {name: min(max_rank, max(min_rank, scale * weight)) for name, weight in weights.items()}

    def rounded(values: dict[str, float]) -> dict[str, int]:
        return {name: max(min_rank, int(value)) for name, value in values.items()}

    def spent(ranks: dict[str, int]) -> int:
        return sum(ranks[name] * cost[name] for name in ranks)

    positive = [weight for weight in weights.values() if weight > 0]
    low, high = 0.0, max_rank / min(positive)
    if spent(rounded(targets(high))) <= budget:
        low = high
    else:
        for _ in range(100):
            middle = (low + high) / 2
            if spent(rounded(targets(middle))) <= budget:
                low = middle
            else:
                high = middle
    goal = targets(low)
    ranks = rounded(goal)
    left = budget - spent(ranks)
    order = sorted(weights, key=lambda name: (-(goal[name] - ranks[name]), -weights[name]))
    for name in order:
        if ranks[name] < max_rank and cost[name] <= left:
            ranks[name] += 1
            left -= cost[name]
    return ranks


def unit_costs(request: EstimateRequest, config: DecoderConfig) -> list[int]:
    """LoRA parameters at rank 1 of every unit ``request`` ranks on a decoder with ``config`` (a layer
    block: all its projections, as ``assign_ranks`` expands it)."""
    shapes = projection_shapes(config, include_mlp=request.modules == "attention+mlp")
    modules = [DECODER_PREFIX + name for name in shapes]
    units = modules if request.granularity == "module" else list(dict.fromkeys(map(group_name, modules)))
    return [sum(lora_parameters(shapes[member], 1) for member in _members(unit, shapes)) for unit in units]


def check_budget_floor(request: EstimateRequest, budget: int, base_rank: int, min_rank: int) -> None:
    """Refuse, before the run, a ``--rank-budget`` that no ranking can meet (``assign_ranks`` would
    refuse it after the run): below ``min_rank`` on even the cheapest top-k units, or, for 0 (what
    ``base_rank`` on the top-k costs), a base rank below ``min_rank``. The shapes come from the
    variant's config.json; when that cannot be read nothing is refused here (a run says so itself, and
    a stored run's export falls back to its recorded sizes)."""
    if budget == 0:
        if base_rank < min_rank:
            raise AcetuiError(f"--rank-budget 0 spends what --base-rank {base_rank} costs, below --rank-min {min_rank}")
        return
    try:
        config = decoder_config(request.checkpoint_dir, request.variant)
    except (AcetuiError, OSError):
        return
    cheapest = sorted(unit_costs(request, config))[: request.top_k]
    floor = min_rank * sum(cheapest)
    if budget < floor:
        kind = "modules" if request.granularity == "module" else "layer blocks"
        raise AcetuiError(
            f"--rank-budget {budget:,} is below {floor:,}, the cost of --rank-min {min_rank} on even the "
            f"{len(cheapest)} cheapest {kind} of {request.variant}"
        )


def alpha_pattern(ranks: Mapping[str, int]) -> dict[str, int]:
    """alpha = 2 x rank, so every adapter keeps the same scaling alpha / r."""
    return {name: 2 * rank for name, rank in ranks.items()}


def peft_rank_config(ranks: Mapping[str, int], base_rank: int) -> dict:
    """A PEFT LoraConfig fragment: exact ``target_modules`` plus ``rank_pattern``/``alpha_pattern``
    (``r``/``lora_alpha`` are only the defaults for modules the patterns do not name)."""
    return {
        "r": base_rank,
        "lora_alpha": 2 * base_rank,
        "target_modules": list(ranks),
        "rank_pattern": dict(ranks),
        "alpha_pattern": alpha_pattern(ranks),
    }


def peft_rank_json(
    result: EstimateResult,
    ranking: list[RankedModule],
    top_k: int,
    *,
    base_rank: int,
    min_rank: int,
    max_rank: int,
    budget_params: int | None = None,
) -> str:
    """The PEFT export with ``rank_pattern``/``alpha_pattern`` for the top-k of ``ranking`` (a ranking of
    ``result``, whose checkpoint gives the projection shapes), as JSON text."""
    ranks = assign_ranks(ranking[:top_k], result_shapes(result), base_rank=base_rank, min_rank=min_rank,
                         max_rank=max_rank, budget_params=budget_params)  # fmt: skip
    return json.dumps(peft_rank_config(ranks, base_rank), indent=2) + "\n"
