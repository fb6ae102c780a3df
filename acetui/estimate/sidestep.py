"""Side-Step interchange: writing its ``fisher_map.json`` (schema version 2); ``imported`` reads its files back.

Side-Step's LoRA/DoRA training loads ``<dataset-dir>/fisher_map.json`` by itself and uses three keys:
``target_modules`` (PEFT suffixes such as ``self_attn.q_proj``), ``rank_pattern`` and ``alpha_pattern``
(keys are module paths without ``decoder.``, e.g. ``layers.7.cross_attn.k_proj``). A module matched by
``target_modules`` but missing from ``rank_pattern`` silently gets Side-Step's minimum rank, so the map
written here gives every targeted module an entry:

* the run's top-k modules (module granularity, by the chosen score) decide which projection suffixes are
  targeted;
* every scored module with one of those suffixes is then "selected" and gets a rank from the rank budget
  (more rank for a higher score and a higher effective rank, median at ``base_rank``, clamped to
  ``rank_budget`` {min, max}); alpha is always 2 x rank;
* the other scored modules are listed in ``excluded_modules``.

The top-k and the budget follow the chosen score (``fisher`` by default, as in Side-Step); ``modules`` is
always listed by descending ``fisher_score``.

``fisher_score`` is acetui's ``fisher`` score (mean of squared gradient entries, Side-Step's definition)
averaged over the included batches; acetui makes one run, so ``num_runs`` is 1 and
``fisher_cross_run_std`` is the standard error of that mean over batches (what the spread of run means
estimates). ``dataset_hash`` is Side-Step's own staleness fingerprint, see ``dataset_hash``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acetui.atomic import write_text_atomic
from acetui.errors import AcetuiError, OutputExistsError, failure_text
from acetui.estimate.effective_rank import UNKNOWN
from acetui.estimate.exports import peft_name
from acetui.estimate.objective import TimestepFocus
from acetui.estimate.result import EstimateResult
from acetui.estimate.scores import module_parts, rank_modules, score_table
from acetui.model.variants import resolve_variant, short_name, variant_folder_name

FISHER_MAP_NAME = "fisher_map.json"
SCHEMA_VERSION = 2
DEFAULT_BASE_RANK = 64  # Side-Step's defaults for --rank / --rank-min / --rank-max
DEFAULT_RANK_MIN = 16
DEFAULT_RANK_MAX = 128
RANK_STEP = 8
DEFAULT_TIMESTEP_PARAMS = {"mu": -0.4, "sigma": 1.0, "data_proportion": 0.5}
FISHER_MAP_KEYS = (
    "version", "model_variant", "timestep_focus", "timestep_range", "timestep_params", "num_runs",
    "batches_per_run", "total_batches", "base_rank", "rank_budget", "dataset_hash", "target_modules",
    "rank_pattern", "alpha_pattern", "modules", "excluded_modules", "num_hidden_layers",
)  # fmt: skip


def dataset_hash(folder: str | Path) -> str:
    """Side-Step's dataset fingerprint: the first 12 hex digits of the MD5 of the UTF-8 text made of
    ``name:size`` for every regular ``*.pt`` file directly in ``folder`` (size in bytes), sorted by
    (name, size), joined with ``|`` and no separator at either end. An empty folder hashes ``""``. A name
    that is not UTF-8 (where Side-Step's own hash fails) counts with its bytes as they are."""
    entries = sorted((file.name, file.stat().st_size) for file in Path(folder).glob("*.pt") if file.is_file())
    payload = "|".join(f"{name}:{size}" for name, size in entries)
    return hashlib.md5(payload.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def projection_suffix(module: str) -> str:
    """``decoder.layers.7.cross_attn.k_proj`` -> ``cross_attn.k_proj`` (PEFT target_modules suffix)."""
    parts = module_parts(module)
    if not parts.projection:
        raise ValueError(f"{module!r} is a block, not a projection")
    return f"{parts.kind}.{parts.projection}"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def budget_ranks(
    scores: dict[str, float],
    effective: dict[str, int] | None = None,
    *,
    base_rank: int = DEFAULT_BASE_RANK,
    rank_min: int = DEFAULT_RANK_MIN,
    rank_max: int = DEFAULT_RANK_MAX,
) -> dict[str, int]:
    """A rank per module: ``base_rank * sqrt(score / median score * eff / median eff)`` rounded to a
    multiple of 8 and clamped to [rank_min, rank_max]. The median module gets ``base_rank``; a module
    without a known effective rank (or when none is known) uses factor 1 for that part. Keys are kept."""
    check_rank_budget(base_rank, rank_min, rank_max)
    score_median = _median([value for value in scores.values() if value > 0])
    known = {name: rank for name, rank in (effective or {}).items() if rank is not None and rank > 0}
    rank_median = _median([known[name] for name in scores if name in known])
    ranks = {}
    for name, score in scores.items():
        score_factor = score / score_median if score_median > 0 else 1.0
        rank_factor = known[name] / rank_median if name in known and rank_median > 0 else 1.0
        raw = base_rank * math.sqrt(max(score_factor, 0.0) * rank_factor)
        ranks[name] = max(rank_min, min(rank_max, int(round(raw / RANK_STEP)) * RANK_STEP))
    return ranks


def check_rank_budget(base_rank: int, rank_min: int, rank_max: int) -> None:
    if rank_min < 1:
        raise AcetuiError(f"minimum rank must be at least 1, got {rank_min}")
    if rank_max < rank_min:
        raise AcetuiError(f"maximum rank {rank_max} is below the minimum rank {rank_min}")
    if base_rank < 1:
        raise AcetuiError(f"base rank must be at least 1, got {base_rank}")


def _timestep_params(result: EstimateResult) -> dict[str, float]:
    """mu, sigma and data_proportion from the variant's config.json; Side-Step's defaults otherwise."""
    params = dict(DEFAULT_TIMESTEP_PARAMS)
    try:
        folder = resolve_variant(result.request.checkpoint_dir, result.request.variant)
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (AcetuiError, OSError, UnicodeDecodeError, json.JSONDecodeError):
        return params
    for key, config_key in (("mu", "timestep_mu"), ("sigma", "timestep_sigma"), ("data_proportion", "data_proportion")):
        value = raw.get(config_key) if isinstance(raw, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            params[key] = float(value)
    return params


def _num_hidden_layers(result: EstimateResult) -> int:
    layers = result.metadata.get("model", {}).get("layers")
    if isinstance(layers, int):
        return layers
    return max(module_parts(name).layer for name in result.modules) + 1


def build_fisher_map(
    result: EstimateResult,
    *,
    score: str = "fisher",
    top_k: int | None = None,
    base_rank: int = DEFAULT_BASE_RANK,
    rank_min: int = DEFAULT_RANK_MIN,
    rank_max: int = DEFAULT_RANK_MAX,
    effective: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The fisher_map dict (schema version 2) for a run with at least one included batch.

    ``score`` ranks the modules for the top-k (``top_k`` defaults to the run's); ``effective`` maps
    ``decoder.`` names to effective ranks (missing: -1, and factor 1 in the budget).
    """
    check_rank_budget(base_rank, rank_min, rank_max)
    if not result.included_batches:
        raise AcetuiError(f"run {result.run_id} has no included batches; nothing to write")
    top_k = result.request.top_k if top_k is None else top_k
    effective = effective or {}
    ranking = rank_modules(result, score, "module")
    suffixes = sorted({projection_suffix(item.module) for item in ranking[:top_k]})
    selected = [item.module for item in ranking if projection_suffix(item.module) in suffixes]
    excluded = [item.module for item in ranking if projection_suffix(item.module) not in suffixes]

    fisher = score_table(result, "fisher", "module")
    fisher_means = dict(zip(fisher.names, fisher.means.tolist()))
    count = fisher.values.shape[0]
    errors = (fisher.values.std(dim=0) / math.sqrt(count)).tolist() if count > 1 else [0.0] * len(fisher.names)
    fisher_errors = dict(zip(fisher.names, errors))

    chosen = set(selected)
    chosen_scores = {item.module: item.sensitivity for item in ranking if item.module in chosen}
    assigned = budget_ranks(chosen_scores, effective, base_rank=base_rank, rank_min=rank_min, rank_max=rank_max)
    rank_pattern = {peft_name(name): assigned[name] for name in selected}
    focus = TimestepFocus.parse(result.request.timestep_focus)
    return {
        "version": SCHEMA_VERSION,
        "model_variant": short_name(variant_folder_name(result.request.variant)),
        "timestep_focus": focus.name,
        "timestep_range": [focus.low, focus.high],
        "timestep_params": _timestep_params(result),
        "num_runs": 1,
        "batches_per_run": count,
        "total_batches": count,
        "base_rank": base_rank,
        "rank_budget": {"min": rank_min, "max": rank_max},
        "dataset_hash": dataset_hash(result.request.dataset_dir),
        "target_modules": suffixes,
        "rank_pattern": rank_pattern,
        "alpha_pattern": {key: 2 * rank for key, rank in rank_pattern.items()},
        "modules": [
            {
                "name": name,
                "fisher_score": fisher_means[name],
                "fisher_cross_run_std": fisher_errors[name],
                "effective_rank": int(effective.get(name, UNKNOWN)),
                "assigned_rank": rank_pattern[peft_name(name)],
            }
            for name in sorted(selected, key=lambda name: -fisher_means[name])
        ],
        "excluded_modules": excluded,
        "num_hidden_layers": _num_hidden_layers(result),
    }


def write_fisher_map(path: Path, fisher_map: dict[str, Any], *, force: bool = False) -> Path:
    """Write atomically to the file ``path`` (``fisher_map_path`` names it); an existing file is only
    replaced with ``force`` (the TUI asks first)."""
    write_text_atomic(path, json.dumps(fisher_map, indent=2) + "\n", replace=force)
    return path


def fisher_map_path(dataset_dir: Path, path: str | Path | None = None) -> Path:
    """The file a map goes to: ``path`` (a folder gets ``fisher_map.json``), by default
    ``<dataset-dir>/fisher_map.json``, where Side-Step's training looks for it."""
    target = Path(path).expanduser() if path is not None else dataset_dir / FISHER_MAP_NAME
    return target / FISHER_MAP_NAME if target.is_dir() else target


def export_fisher_map(
    result: EstimateResult,
    path: str | Path | None = None,
    *,
    force: bool = False,
    score: str = "fisher",
    base_rank: int = DEFAULT_BASE_RANK,
    rank_min: int = DEFAULT_RANK_MIN,
    rank_max: int = DEFAULT_RANK_MAX,
    effective: dict[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Build and write the map (default path: the run's dataset folder). Effective ranks come from the
    per-checkpoint cache (computed on first use, reporting ``progress(done, todo)``) unless given; an
    unreadable checkpoint leaves them -1 and tells ``warn`` why."""
    target = fisher_map_path(result.request.dataset_dir, path)
    if target.exists() and not force:
        raise OutputExistsError(target)
    if effective is None:
        effective = cached_effective_ranks(result, progress, warn)
    fisher_map = build_fisher_map(
        result, score=score, base_rank=base_rank, rank_min=rank_min, rank_max=rank_max, effective=effective
    )
    return write_fisher_map(target, fisher_map, force=force)


def cached_effective_ranks(
    result: EstimateResult,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Cached effective ranks; a first computation runs on the run's CUDA device when there is one.
    When they cannot be had (the checkpoint is gone or unreadable) the map still gets written, with
    effective rank -1 and ranks from the scores alone, and ``warn`` is told why."""
    import torch

    from acetui.estimate.effective_rank import effective_ranks

    device = str(result.metadata.get("model", {}).get("device", "cpu"))
    if not (device.startswith("cuda") and torch.cuda.is_available()):
        device = "cpu"
    try:
        return effective_ranks(
            result.request.checkpoint_dir, result.request.variant, result.modules, device=device, progress=progress
        )
    except (AcetuiError, RuntimeError) as error:
        if warn is not None:
            reason = failure_text(error)
            warn(f"effective ranks unknown ({reason}); effective_rank is -1 and ranks follow the scores alone")
        return {}
