"""What the results and compare screens show: a recorded run (every score, statistics, the exports that
need its checkpoint) or a ranking imported from a Side-Step file (one fixed score, no per-batch data; acetui's
own JSON export keeps its top-k and per-module statistics)."""

from __future__ import annotations

import math
from pathlib import Path

from rich.text import Text

from acetui.atomic import write_text_atomic
from acetui.estimate import SCORES, EstimateResult, RankedModule, rank_modules
from acetui.estimate.compare import result_sensitivities
from acetui.estimate.exports import EXPORT_FORMATS, export
from acetui.estimate.imported import ImportedRanking
from acetui.estimate.rank_budget import peft_rank_json
from acetui.estimate.request import REQUEST_DEFAULTS
from acetui.estimate.sidestep import (
    DEFAULT_BASE_RANK,
    DEFAULT_RANK_MAX,
    DEFAULT_RANK_MIN,
    export_fisher_map,
    fisher_map_path,
)
from acetui.estimate.stats import RankingStats, result_stats
from acetui.history import shown_status
from acetui.model.variants import variant_label

SUFFIXES = {"json": ".json", "csv": ".csv", "targets": ".txt", "peft": "-peft.json", "peft-suffix": "-peft-suffix.json"}
RUN_FORMATS = {"fisher-map": "fisher_map.json (Side-Step v2)", "peft-ranks": "PEFT with rank_pattern"}
DEFAULT_TOP_K = REQUEST_DEFAULTS["top_k"]

# (title, default path) per export format
ExportFormats = dict[str, tuple[str, str]]


def ranking_formats(stem: str) -> ExportFormats:
    """The exports every ranking has, with default file names from ``stem``."""
    return {fmt: (title, stem + SUFFIXES[fmt]) for fmt, (title, _) in EXPORT_FORMATS.items()}


def stability_text(stats: RankingStats) -> str:
    figure = f"{stats.stability:.2f}" if math.isfinite(stats.stability) else "n/a (1 batch)"
    return f"top-{stats.top_k} stability {figure}"


def stop_text(result: EstimateResult) -> str:
    """Why an auto run stopped ("" for a fixed batch count)."""
    request = result.request
    if not request.auto_batches:
        return ""
    reason = result.metadata.get("stop_reason")
    if reason == "stable":
        return f"auto: stable at {request.stability_target:g}"
    if reason == "max_batches":
        return f"auto: max {request.max_batches}, target {request.stability_target:g} not reached"
    return f"auto: {reason or result.status}"


def stability_phrases(result: EstimateResult, score: str, stats: RankingStats) -> list[Text]:
    """The shown score's top-k stability and, for an auto run, why it stopped. The auto stop watched the run's
    own score: when another one is shown, both name their score, so they cannot seem to disagree."""
    stability, stop = stability_text(stats), stop_text(result)
    if stop and score != result.request.score:
        stability, stop = f"{stability} on {score}", f"{stop} on {result.request.score}"
    return [Text(stability, style="bold"), *([Text(stop, style="dim")] if stop else [])]


class RunRanking:
    """A recorded run: rankings for every score at the request's granularity."""

    def __init__(self, result: EstimateResult) -> None:
        self.result = result
        self.scores = SCORES
        self.top_k = result.request.top_k
        variant = variant_label(result.request.variant)
        self.label = f"{result.run_id} ({variant}, {Path(result.request.dataset_dir).name})"
        self.stem = f"acetui-{result.run_id}"
        # what the engine warned about while running (few samples, checkpointing turned on, ...)
        self.warnings: tuple[str, ...] = tuple(str(warning) for warning in result.metadata.get("warnings", ()))

    def ranking(self, score: str) -> list[RankedModule]:
        return rank_modules(self.result, score, self.result.request.granularity)

    def stats(self, score: str) -> RankingStats | None:
        return result_stats(self.result, score)

    def sensitivities(self, score: str, granularity: str | None = None) -> dict[str, float]:
        """By ``granularity``, or the run's own."""
        return result_sensitivities(self.result, score, granularity)

    def heading(self, score: str, stats: RankingStats) -> list[Text]:
        """The run in phrases (see ``widgets.phrases``): id, model and data, batches, score, stability."""
        result, request = self.result, self.result.request
        batches = Text(f"{len(result.included_batches)} batches")
        if result.partial:
            planned = f"at most {request.max_batches}" if request.auto_batches else str(request.batches)
            done = f"{len(result.included_batches)} of {planned} batches"
            batches = Text(f"{done} ({shown_status(result)})", style="yellow")
        return [
            Text(result.run_id, style="bold"),
            Text(f"{variant_label(request.variant)} on {Path(request.dataset_dir).name}"),
            batches,
            Text(f"{score} · {request.granularity}", style="dim"),
            *stability_phrases(result, score, stats),
        ]

    def export_formats(self) -> ExportFormats:
        formats = ranking_formats(self.stem)
        formats["fisher-map"] = (RUN_FORMATS["fisher-map"], str(fisher_map_path(self.result.request.dataset_dir)))
        formats["peft-ranks"] = (RUN_FORMATS["peft-ranks"], f"{self.stem}-peft-ranks.json")
        return formats

    def write(self, fmt: str, path: Path, score: str, effective: dict[str, int] | None, *, force: bool) -> Path:
        """Write one export; OutputExistsError for an existing file unless ``force`` (the screen asks first)."""
        ranking = self.ranking(score)
        if fmt == "fisher-map":
            return export_fisher_map(self.result, path, force=force, score=score, effective=effective)
        if fmt == "peft-ranks":
            text = peft_rank_json(self.result, ranking, self.top_k, base_rank=DEFAULT_BASE_RANK,
                                  min_rank=DEFAULT_RANK_MIN, max_rank=DEFAULT_RANK_MAX)  # fmt: skip
            write_text_atomic(path, text, replace=force)
            return path
        return export(path, fmt, ranking, self.top_k, self.stats(score), replace=force, scored_by=score)


class ImportedFile:
    """A Side-Step estimate JSON or fisher_map.json: one score, ranking exports only. acetui's own estimate JSON
    brings back its top-k and per-module statistics; other files fall back to the default top-k (a fisher
    map's every module) and show no statistics."""

    result = None
    warnings: tuple[str, ...] = ()

    def __init__(self, imported: ImportedRanking) -> None:
        self.imported = imported
        self.scores = (imported.score_name,)
        rows = len(imported.scores)
        self.top_k = imported.top_k or (rows if imported.kind == "fisher_map" else min(DEFAULT_TOP_K, rows))
        self.label = f"{imported.path.name} ({imported.kind})"
        self.stem = f"acetui-{imported.path.stem}"

    def ranking(self, score: str) -> list[RankedModule]:
        return self.imported.ranked()

    def stats(self, score: str) -> RankingStats | None:
        """The file's per-module figures (stability, batches and seed are not in it: NaN and 0), or None."""
        units = self.imported.units
        if not units:
            return None
        return RankingStats(list(units.values()), self.top_k, math.nan, batches=0, resamples=0, seed=0)

    def sensitivities(self, score: str, granularity: str | None = None) -> dict[str, float]:
        """The file's own values: its modules or layer blocks cannot be regrouped without their batches."""
        return dict(self.imported.scores)

    def heading(self, score: str, stats: RankingStats | None) -> list[Text]:
        imported = self.imported
        variant = imported.metadata.get("model_variant")
        details = [imported.kind, *([str(variant)] if variant else []), score, f"top-{self.top_k}"]
        phrases = [Text("imported", style="bold"), Text(str(imported.path)), Text(" · ".join(details), style="dim")]
        note = "statistics from the file" if stats is not None else "no per-batch data"
        phrases.append(Text(note, style="dim" if stats is not None else "yellow"))
        return phrases

    def export_formats(self) -> ExportFormats:
        return ranking_formats(self.stem)

    def write(self, fmt: str, path: Path, score: str, effective: dict[str, int] | None, *, force: bool) -> Path:
        scored_by = score if score in SCORES else None  # a Side-Step file's "sensitivity" is not one of ours
        return export(path, fmt, self.ranking(score), self.top_k, self.stats(score), replace=force, scored_by=scored_by)


RankingSource = RunRanking | ImportedFile
Shown = EstimateResult | ImportedRanking


def ranking_source(shown: Shown) -> RankingSource:
    return ImportedFile(shown) if isinstance(shown, ImportedRanking) else RunRanking(shown)
