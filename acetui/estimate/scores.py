"""Turning per-batch gradient norms into rankings, for each score and granularity.

Scores (all from the same pass, so switching needs no re-run):
* ``grad-norm``: ||dL/dW||_F, the reference tool's sensitivity;
* ``fisher``: mean of squared gradient entries, sum(g^2) / numel (Side-Step's Fisher analysis);
* ``relative``: ||dL/dW||_F / ||W||_F, the gradient relative to the weight's size.
Layer granularity groups the projections of ``layers.N.self_attn`` / ``.cross_attn`` (/ ``.mlp``):
grad-norm sums the members' norms (the reference tool sums over a module's parameters), fisher divides
the summed squares by the summed sizes, relative divides the summed norms by the group's weight norm.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from acetui.estimate.request import SCORES
from acetui.estimate.result import EstimateResult

_NAME = re.compile(r"^decoder\.layers\.(\d+)\.(self_attn|cross_attn|mlp)(?:\.(\w+))?$")


@dataclass(frozen=True)
class ModuleParts:
    layer: int
    kind: str
    projection: str


def module_parts(name: str) -> ModuleParts:
    """``decoder.layers.7.cross_attn.k_proj`` -> (7, cross_attn, k_proj); a group has projection ''."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"not a decoder layer module name: {name!r}")
    return ModuleParts(int(match.group(1)), match.group(2), match.group(3) or "")


def group_name(module: str) -> str:
    parts = module_parts(module)
    return f"decoder.layers.{parts.layer}.{parts.kind}"


@dataclass(frozen=True)
class ScoreTable:
    """Per-batch values [included batches, units] of one score at one granularity, with unit names."""

    names: list[str]
    values: torch.Tensor

    @property
    def means(self) -> torch.Tensor:
        if self.values.shape[0] == 0:
            return torch.zeros(len(self.names), dtype=torch.float64)
        return self.values.mean(dim=0)


def score_table(result: EstimateResult, score: str = "grad-norm", granularity: str = "module") -> ScoreTable:
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")
    norms = torch.tensor([batch.norms for batch in result.included_batches], dtype=torch.float64)
    norms = norms.reshape(-1, len(result.modules))
    numels = torch.tensor(result.numels, dtype=torch.float64)
    weights = torch.tensor(result.weight_norms, dtype=torch.float64)
    if granularity == "module":
        if score == "grad-norm":
            return ScoreTable(list(result.modules), norms)
        if score == "fisher":
            return ScoreTable(list(result.modules), norms.square() / numels)
        return ScoreTable(list(result.modules), norms / weights)
    groups: dict[str, list[int]] = {}
    for index, module in enumerate(result.modules):
        groups.setdefault(group_name(module), []).append(index)
    names = list(groups)
    columns = []
    for members in groups.values():
        member_norms = norms[:, members]
        if score == "grad-norm":
            columns.append(member_norms.sum(dim=1))
        elif score == "fisher":
            columns.append(member_norms.square().sum(dim=1) / numels[members].sum())
        else:
            columns.append(member_norms.sum(dim=1) / weights[members].square().sum().sqrt())
    return ScoreTable(names, torch.stack(columns, dim=1) if columns else norms[:, :0])


@dataclass(frozen=True)
class RankedModule:
    rank: int
    module: str
    sensitivity: float
    share: float
    layer: int
    kind: str
    projection: str


def rank_modules(result: EstimateResult, score: str = "grad-norm", granularity: str = "module") -> list[RankedModule]:
    """Every unit, most sensitive first, with its share of the total (ties keep layer order)."""
    table = score_table(result, score, granularity)
    means = table.means.tolist()
    total = sum(means)
    order = sorted(range(len(means)), key=lambda i: -means[i])
    ranked = []
    for position, index in enumerate(order, start=1):
        parts = module_parts(table.names[index])
        share = means[index] / total if total > 0 else math.nan
        ranked.append(
            RankedModule(position, table.names[index], means[index], share, parts.layer, parts.kind, parts.projection)
        )
    return ranked
