"""Comparing two rankings, e.g. the same model on two datasets (the reference guide's "run on two datasets
and compare"), or acetui against an imported Side-Step file.

Everything works on plain ``{module: sensitivity}`` maps, so run records, acetui/Side-Step estimate JSON
lists and fisher maps compare alike. Definitions, for the modules present in both maps:

* **rank**: 1 = most sensitive within its own map (ties: the order of the map);
* **rank change** = rank in A - rank in B: positive means the module moved *up* in B;
* **ratio** = sensitivity in B / sensitivity in A (infinite when only A is 0, NaN when both are);
  **share ratio** divides the two shares of each map's total, which removes an overall scale difference
  between the runs (a dataset with a larger loss gives larger gradients everywhere);
* **Spearman** rank correlation: Pearson correlation of the (tie-averaged) ranks over the common modules;
  1 = same order, -1 = reversed, NaN with fewer than two common modules or a constant map;
* **top-k overlap**: |top-k of A & top-k of B| / k over the common modules;
* the modules that **differ most**: largest |rank change|, then largest |log share ratio|
  (``log_distance``: a module zero on one side only differs most, one zero on both sides not at all).

A CLI operand is a ranking file or a run id (or unique prefix) from the run history.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acetui.errors import AcetuiError
from acetui.estimate.exports import decoder_name
from acetui.estimate.imported import ranking_from_data
from acetui.estimate.request import SCORES
from acetui.estimate.result import EstimateResult, is_record, record_from_data
from acetui.estimate.scores import module_parts, rank_modules
from acetui.estimate.sidestep import FISHER_MAP_NAME
from acetui.history import find_run
from acetui.jsonfile import read_json
from acetui.units import figure

_RUN_REFERENCE = re.compile(r"[\w.-]+")  # what a run id (or a prefix of one) can look like


def ranks_of(values: Mapping[str, float]) -> dict[str, int]:
    """1-based ranks, most sensitive first; ties keep the map's order."""
    names, numbers = list(values), list(values.values())
    order = sorted(range(len(numbers)), key=lambda i: -numbers[i])
    return {names[index]: position for position, index in enumerate(order, start=1)}


def _average_ranks(values: list[float]) -> list[float]:
    """Ranks (1 = largest) with tied values sharing their average rank, as Spearman's rho requires."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(first: list[float], second: list[float]) -> float:
    """Spearman's rank correlation of two equally long value lists (NaN when undefined)."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} values against {len(second)}")
    if len(first) < 2:
        return math.nan
    a, b = _average_ranks(first), _average_ranks(second)
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    var_a = sum((x - mean_a) ** 2 for x in a)
    var_b = sum((y - mean_b) ** 2 for y in b)
    if var_a == 0 or var_b == 0:
        return math.nan
    return cov / math.sqrt(var_a * var_b)


def _ratio(numerator: float, denominator: float) -> float:
    if denominator == 0:
        return math.inf if numerator > 0 else math.nan
    return numerator / denominator


def log_distance(ratio: float) -> float:
    """How far a ratio is from 1 on a log scale, so 2x and 0.5x differ alike. A module zero on one side only
    (ratio 0 or inf) differs most; one zero on both sides (0 / 0, NaN: sensitivities are finite and never
    negative) did not change at all, so it differs least rather than heading the list."""
    if math.isnan(ratio):
        return 0.0
    return abs(math.log(ratio)) if 0 < ratio < math.inf else math.inf


@dataclass(frozen=True)
class ModuleChange:
    module: str
    rank_a: int
    rank_b: int
    sensitivity_a: float
    sensitivity_b: float
    share_a: float
    share_b: float

    @property
    def rank_change(self) -> int:
        """Positive: the module ranks higher (more sensitive) in B than in A."""
        return self.rank_a - self.rank_b

    @property
    def ratio(self) -> float:
        return _ratio(self.sensitivity_b, self.sensitivity_a)

    @property
    def share_ratio(self) -> float:
        return _ratio(self.share_b, self.share_a)

    def to_dict(self) -> dict[str, Any]:
        finite = lambda value: value if math.isfinite(value) else None  # noqa: E731
        return {
            "module": self.module, "rank_a": self.rank_a, "rank_b": self.rank_b, "rank_change": self.rank_change,
            "sensitivity_a": self.sensitivity_a, "sensitivity_b": self.sensitivity_b,
            "ratio": finite(self.ratio), "share_ratio": finite(self.share_ratio),
        }  # fmt: skip


def difference(change: ModuleChange) -> tuple[int, float]:
    """How much a module differs between the rankings: its |rank change|, ties broken by the change of share."""
    return (abs(change.rank_change), log_distance(change.share_ratio))


@dataclass(frozen=True)
class Comparison:
    """Two rankings side by side; ``modules`` in A's order, restricted to the common modules."""

    modules: list[ModuleChange]
    spearman: float
    top_k: int
    top_k_overlap: float
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    label_a: str = "A"
    label_b: str = "B"

    def most_different(self, count: int = 10) -> list[ModuleChange]:
        """The modules whose position changed most (ties: the larger change of share first)."""
        return sorted(self.modules, key=difference, reverse=True)[:count]

    def to_dict(self, count: int | None = None) -> dict[str, Any]:
        return {
            "a": self.label_a,
            "b": self.label_b,
            "spearman": self.spearman if math.isfinite(self.spearman) else None,
            "top_k": self.top_k,
            "top_k_overlap": self.top_k_overlap,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "most_different": [change.module for change in self.most_different(count or len(self.modules))],
            "modules": [change.to_dict() for change in self.modules],
        }


def compare_sensitivities(
    first: Mapping[str, float],
    second: Mapping[str, float],
    *,
    top_k: int = 16,
    label_a: str = "A",
    label_b: str = "B",
) -> Comparison:
    """Compare two ``{module: sensitivity}`` maps (names with or without ``decoder.``); AcetuiError for a
    ``top_k`` below 1."""
    positive_count(top_k, "--top-k")
    a = {decoder_name(name): float(value) for name, value in first.items()}
    b = {decoder_name(name): float(value) for name, value in second.items()}
    common = [name for name in a if name in b]
    a_common = {name: a[name] for name in common}
    b_common = {name: b[name] for name in common}
    rank_a, rank_b = ranks_of(a_common), ranks_of(b_common)
    total_a, total_b = sum(a_common.values()), sum(b_common.values())
    modules = [
        ModuleChange(name, rank_a[name], rank_b[name], a[name], b[name],
                     _ratio(a[name], total_a), _ratio(b[name], total_b))
        for name in sorted(common, key=lambda name: rank_a[name])
    ]  # fmt: skip
    k = max(1, min(top_k, len(common))) if common else 0
    top_a = {name for name, rank in rank_a.items() if rank <= k}
    top_b = {name for name, rank in rank_b.items() if rank <= k}
    overlap = len(top_a & top_b) / k if k else math.nan
    rho = spearman([a[name] for name in common], [b[name] for name in common])
    return Comparison(
        modules, rho, k, overlap,
        only_a=[name for name in a if name not in b], only_b=[name for name in b if name not in a],
        label_a=label_a, label_b=label_b,
    )  # fmt: skip


def positive_count(value: int, option: str) -> int:
    """``value`` when it is a whole number of at least 1; AcetuiError naming ``option`` otherwise (a zero or
    negative count would otherwise print a misleading "top-1 overlap" or drop rows silently)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AcetuiError(f"{option} must be a positive integer, got {value}")
    return value


def result_sensitivities(
    result: EstimateResult, score: str = "grad-norm", granularity: str | None = None
) -> dict[str, float]:
    """A run's ``{module: sensitivity}``, most sensitive first."""
    ranking = rank_modules(result, score, granularity or result.request.granularity)
    return {item.module: item.sensitivity for item in ranking}


@dataclass(frozen=True)
class Operand:
    """One side of a comparison: a run record, ranked by whichever score the comparison uses, or a ranking
    file's fixed values, with ``fixed_score`` naming their score when the file says (an acetui export's
    ``scored_by``, a fisher map)."""

    run: EstimateResult | None = None
    granularity: str | None = None
    fixed: dict[str, float] = field(default_factory=dict)
    fixed_score: str | None = None

    def sensitivities(self, score: str) -> dict[str, float]:
        """``{module: sensitivity}``, most sensitive first; a file's values whatever ``score`` is."""
        return self.fixed if self.run is None else result_sensitivities(self.run, score, self.granularity)


def load_operand(path: str | Path, *, granularity: str | None = None) -> Operand:
    """An acetui run record given by its path or run id, an acetui/Side-Step estimate JSON list or a
    Side-Step fisher map, read once. AcetuiError naming the file otherwise."""
    path = ranking_path(path)
    data = read_json(path)
    if is_record(data):
        result = record_from_data(data, path)
        if not result.included_batches:
            raise AcetuiError(f"{path}: run {result.run_id} has no included batches")
        return Operand(run=result, granularity=granularity)
    imported = ranking_from_data(data, path)
    score = imported.score_name if imported.score_name in SCORES else None
    return Operand(fixed=dict(imported.scores), fixed_score=score)


def ranking_path(reference: str | Path) -> Path:
    """The file a compare operand names: the path when something is there (a dataset folder: the
    ``fisher_map.json`` Side-Step or acetui wrote in it), else the record of the run id (or unique prefix)
    in the run history, as ``acetui resume`` takes it."""
    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / FISHER_MAP_NAME).is_file():
            raise AcetuiError(
                f"{path}: a folder without a {FISHER_MAP_NAME} (give a run id, a run record, an estimate JSON, "
                f"or a dataset folder {FISHER_MAP_NAME} was written in)"
            )
        return path / FISHER_MAP_NAME
    if os.path.lexists(path) or not _RUN_REFERENCE.fullmatch(str(reference)):
        return path
    return find_run(str(reference))


def comparison_text(comparison: Comparison, rows: int = 10) -> str:
    """The CLI summary: correlation, overlap and the ``rows`` modules that differ most. AcetuiError when
    ``rows`` is below 1 or the rankings share no module (then there is nothing to compare: two
    granularities, or files naming different modules)."""
    positive_count(rows, "--top")
    if not comparison.modules:
        raise AcetuiError(no_shared_modules(comparison))
    rho = f"{comparison.spearman:+.3f}" if math.isfinite(comparison.spearman) else "n/a"
    lines = [
        f"A: {comparison.label_a}",
        f"B: {comparison.label_b}",
        f"{len(comparison.modules)} common modules; Spearman rank correlation {rho}; "
        f"top-{comparison.top_k} overlap {comparison.top_k_overlap:.0%}",
    ]
    if comparison.only_a or comparison.only_b:
        lines.append(f"only in A: {len(comparison.only_a)}, only in B: {len(comparison.only_b)}")
    changes = comparison.most_different(rows)
    if changes:
        width = max(len(change.module) for change in changes)
        lines += ["", f"{'module':<{width}}  {'rank A':>6}  {'rank B':>6}  {'change':>6}  {'B/A':>8}  {'share B/A':>9}"]
        for change in changes:
            lines.append(
                f"{change.module:<{width}}  {change.rank_a:>6}  {change.rank_b:>6}  {change.rank_change:>+6}  "
                f"{figure(change.ratio):>8}  {figure(change.share_ratio):>9}"
            )
    return "\n".join(lines) + "\n"


CLI_REGROUPING = "acetui compare --granularity ranks a run either way"


def no_shared_modules(comparison: Comparison, regrouping: str | None = CLI_REGROUPING) -> str:
    """Why two rankings cannot be compared at all (two granularities, or files naming other modules); for
    two granularities, ``regrouping`` says how to line them up (a run ranks by either, a file only by its
    own: None where no side is a run)."""
    text = (
        f"the two rankings share no modules (A has {_count_and_first(comparison.only_a)}; "
        f"B has {_count_and_first(comparison.only_b)})"
    )
    first, second = _granularity_of(comparison.only_a), _granularity_of(comparison.only_b)
    if first and second and first != second:
        text += f"; A ranks {first}s and B {second}s" + (f": {regrouping}" if regrouping else "")
    return text


def _granularity_of(names: list[str]) -> str | None:
    """``layer`` or ``module`` when every name is a decoder unit of that kind, else None."""
    try:
        kinds = {"module" if module_parts(name).projection else "layer" for name in names}
    except ValueError:  # not a decoder layer's unit (a file naming other modules)
        return None
    return kinds.pop() if len(kinds) == 1 else None


def _count_and_first(names: list[str]) -> str:
    return f"{len(names)}, e.g. {names[0]}" if names else "0"
