"""Turning a ranking into what training tools read: Side-Step's estimate JSON, CSV, a
``--target-modules`` string and PEFT ``target_modules`` lists. Every file is written atomically.

PEFT matches ``target_modules`` entries as name suffixes and LoRA is applied to the decoder itself, so
PEFT names never carry the ``decoder.`` prefix.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from acetui.atomic import write_text_atomic
from acetui.estimate.scores import RankedModule
from acetui.estimate.stats import RankingStats
from acetui.model.checkpoint import DECODER_PREFIX
from acetui.model.decoder import ATTENTION_PROJECTIONS, MLP_PROJECTIONS

TARGET_COVERAGE = 0.75


def estimate_json(
    ranking: list[RankedModule], top_k: int, stats: RankingStats | None = None, scored_by: str | None = None
) -> str:
    """Side-Step's list ``[{"module", "sensitivity"}, ...]``, sorted descending, with extra keys; with
    ``stats`` (``acetui.estimate.stats``) also ``stderr``, ``ci_low``, ``ci_high`` and ``p_top_k``
    (null when unknown, i.e. fewer than two batches); with ``scored_by`` the score the sensitivities are
    (``grad-norm``, ``fisher`` or ``relative``), so that a comparison with a run uses the same score."""
    figures = _uncertainty(stats)
    entries = []
    for item in ranking:
        entry = {
            "module": item.module,
            "sensitivity": item.sensitivity,
            "rank": item.rank,
            "share": item.share if math.isfinite(item.share) else None,  # JSON has no NaN
            "top_k": item.rank <= top_k,
        }
        if scored_by is not None:
            entry["scored_by"] = scored_by
        entry.update(figures.get(item.module, {}))
        entries.append(entry)
    return json.dumps(entries, indent=2, allow_nan=False) + "\n"


UNCERTAINTY_KEYS = ("stderr", "ci_low", "ci_high", "p_top_k")


def _uncertainty(stats: RankingStats | None) -> dict[str, dict[str, float | None]]:
    """Per unit the uncertainty figures of ``stats``; empty without stats, e.g. for an imported file that has
    none (Side-Step's, or an acetui export of a one-batch run)."""
    if stats is None:
        return {}
    return {name: {key: unit.to_dict()[key] for key in UNCERTAINTY_KEYS} for name, unit in stats.by_name().items()}


def ranking_csv(ranking: list[RankedModule], top_k: int, stats: RankingStats | None = None) -> str:
    """One row per unit; with ``stats`` also the uncertainty columns (empty cells when unknown)."""
    figures = _uncertainty(stats)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = list(UNCERTAINTY_KEYS) if figures else []
    writer.writerow(["rank", "module", "layer", "attention", "projection", "sensitivity", "share", "top_k", *extra])
    for item in ranking:
        unit = figures.get(item.module, {})
        row = [item.rank, item.module, item.layer, item.kind, item.projection, repr(item.sensitivity)]
        row += [f"{item.share:.6f}", int(item.rank <= top_k)]
        row += ["" if unit.get(key) is None else repr(unit[key]) for key in extra]
        writer.writerow(row)
    return buffer.getvalue()


def _member_projections(item: RankedModule) -> tuple[str, ...]:
    """The projection names a unit stands for (a layer-granularity unit: all its members)."""
    if item.projection:
        return (item.projection,)
    return MLP_PROJECTIONS if item.kind == "mlp" else ATTENTION_PROJECTIONS


def target_modules_string(ranking: list[RankedModule], top_k: int) -> str:
    """Projection types that dominate the top-k: the most frequent types (ties: the one ranked higher
    first) that together cover at least 75 % of the top-k entries, e.g. ``"q_proj v_proj"``. Types found
    in exactly the same units cannot be told apart, so they are kept or left out together: a layer-level
    ranking gives all four attention projections, not whichever three came first."""
    ranks: dict[str, list[int]] = {}
    for item in ranking[:top_k]:
        for projection in _member_projections(item):
            ranks.setdefault(projection, []).append(item.rank)
    ordered = sorted(ranks.items(), key=lambda pair: (-len(pair[1]), pair[1]))
    total = sum(len(found) for found in ranks.values())
    chosen: list[str] = []
    covered, last = 0, None
    for projection, found in ordered:
        if covered >= TARGET_COVERAGE * total and found != last:
            break
        chosen.append(projection)
        covered, last = covered + len(found), found
    return " ".join(chosen)


def peft_name(module: str) -> str:
    """PEFT's name for a decoder module: no ``decoder.`` prefix, since LoRA is applied to the decoder itself."""
    return module.removeprefix(DECODER_PREFIX)


def decoder_name(name: str) -> str:
    """The inverse of ``peft_name``: PEFT-style ``layers.3.self_attn.q_proj`` and ``decoder.layers.3...``
    name the same module; any other name is left as it is."""
    return DECODER_PREFIX + name if name.startswith("layers.") else name


def _exact_names(item: RankedModule) -> list[str]:
    base = peft_name(item.module)
    if item.projection:
        return [base]
    return [f"{base}.{projection}" for projection in _member_projections(item)]


def peft_exact_modules(ranking: list[RankedModule], top_k: int) -> list[str]:
    """Exact per-layer names of the top-k (``layers.22.self_attn.q_proj``), most sensitive first."""
    return [name for item in ranking[:top_k] for name in _exact_names(item)]


def peft_suffix_modules(ranking: list[RankedModule], top_k: int) -> list[str]:
    """Per-projection suffixes present in the top-k (``self_attn.q_proj``), for uniform targeting."""
    suffixes = {".".join(name.split(".")[-2:]) for name in peft_exact_modules(ranking, top_k)}
    return sorted(suffixes)


def peft_config_json(ranking: list[RankedModule], top_k: int, exact: bool = True) -> str:
    """The ``target_modules`` entry of a PEFT LoraConfig as JSON, ready to paste or load."""
    modules = peft_exact_modules(ranking, top_k) if exact else peft_suffix_modules(ranking, top_k)
    return json.dumps({"target_modules": modules}, indent=2) + "\n"


# Each renderer takes (ranking, top_k, stats, scored_by) and uses what its format holds.
EXPORT_FORMATS = {
    "json": ("Side-Step estimate JSON", estimate_json),
    "csv": ("CSV table", lambda ranking, k, stats, _: ranking_csv(ranking, k, stats)),
    "targets": ("--target-modules string", lambda ranking, k, *_: target_modules_string(ranking, k) + "\n"),
    "peft": ("PEFT target_modules (exact names)", lambda ranking, k, *_: peft_config_json(ranking, k)),
    "peft-suffix": ("PEFT target_modules (suffixes)", lambda ranking, k, *_: peft_config_json(ranking, k, exact=False)),
}
FORMATS_WITH_STATS = ("json", "csv")  # the formats that hold uncertainty figures: worth computing them for


def export(
    path: Path,
    fmt: str,
    ranking: list[RankedModule],
    top_k: int,
    stats: RankingStats | None = None,
    *,
    replace: bool = True,
    scored_by: str | None = None,
) -> Path:
    """Write one export atomically and return its path (``stats`` adds uncertainty to ``json`` and ``csv``,
    ``scored_by`` names the score in ``json``); without ``replace`` an existing file raises OutputExistsError
    (the TUI asks first)."""
    _, render = EXPORT_FORMATS[fmt]
    text = render(ranking, top_k, stats, scored_by)
    write_text_atomic(Path(path).expanduser(), text, replace=replace)
    return Path(path).expanduser()
