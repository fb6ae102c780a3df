"""Rankings read from other tools' files: Side-Step's estimate JSON list (also what acetui exports) and its
``fisher_map.json``, shown and compared like a run. acetui's own export also gives back its top-k (the
entries marked ``"top_k": true``, which must lead the ranking) and each module's uncertainty figures. A
malformed file is refused with one line naming it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acetui.errors import AcetuiError
from acetui.estimate.exports import UNCERTAINTY_KEYS, decoder_name
from acetui.estimate.request import SCORES
from acetui.estimate.scores import RankedModule, module_parts
from acetui.estimate.sidestep import FISHER_MAP_KEYS
from acetui.estimate.stats import UnitStats
from acetui.jsonfile import read_json


@dataclass(frozen=True)
class ImportedRanking:
    """A ranking read from another tool's file: ``scores`` maps ``decoder.`` module names to values,
    most sensitive first. ``kind``: ``estimate`` (a ``[{module, sensitivity}]`` list) or ``fisher_map``;
    ``score_name``: what the values are (``sensitivity`` when the file does not say, ``grad-norm``,
    ``fisher`` or ``relative`` from an acetui export's ``scored_by``, a fisher map's ``fisher`` or
    ``assigned_rank``). ``top_k``: how
    many entries the file marks ``"top_k": true``, the first ones in ranked order (None when it marks none);
    ``units``: the uncertainty figures of the modules that have any (NaN where the file says null), by module
    name."""

    path: Path
    kind: str
    score_name: str
    scores: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)
    top_k: int | None = None
    units: dict[str, UnitStats] = field(default_factory=dict)

    def ranked(self) -> list[RankedModule]:
        """The same rows the results view shows for a run (layer -1 for names it cannot parse)."""
        total = sum(value for value in self.scores.values() if value > 0)
        rows = []
        for position, (name, value) in enumerate(self.scores.items(), start=1):
            try:
                parts = module_parts(name)
                layer, kind, projection = parts.layer, parts.kind, parts.projection
            except ValueError:
                layer, kind, projection = -1, "", name.rsplit(".", 1)[-1]
            share = value / total if total > 0 else math.nan
            rows.append(RankedModule(position, name, value, share, layer, kind, projection))
        return rows


def _number(value: Any, where: str, what: str = "score") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AcetuiError(f"{where}: {what} {value!r} is not a finite number")
    return float(value)


def _figure(entry: dict[str, Any], key: str, where: str) -> float:
    """An uncertainty figure: null (unknown, e.g. from a one-batch run) or missing is NaN, as in a run."""
    value = entry.get(key)
    return math.nan if value is None else _number(value, where, key)


def _top_k_flag(entry: dict[str, Any], where: str) -> bool:
    """The entry's top-k mark; missing or null is false, as a null figure is unknown."""
    flag = entry.get("top_k")
    if flag is not None and not isinstance(flag, bool):
        raise AcetuiError(f"{where}: top_k {flag!r} is not true or false")
    return bool(flag)


def _top_k(scores: dict[str, float], flagged: dict[str, int], path: Path) -> int | None:
    """How many entries are marked top-k. They must be the first ones in ranked order: marks anywhere else
    (ranks 3 and 10) would silently read as a top-2 of other modules. ``flagged`` gives each one's entry index."""
    leading = set(list(scores)[: len(flagged)])
    for rank, name in enumerate(scores, start=1):
        if name in flagged and name not in leading:
            raise AcetuiError(
                f"{path}: entry {flagged[name]} ({name}) is marked top_k at rank {rank}, below an unmarked "
                "entry: top_k should mark the most sensitive entries"
            )
    return len(flagged) or None


def _unit(entry: dict[str, Any], name: str, value: float, where: str) -> UnitStats | None:
    """The entry's uncertainty figures, None when it has none (a one-batch run exports them all null: nothing
    is known). Figures no run gives (a negative stderr, a probability outside 0 to 1) are refused."""
    if all(entry.get(key) is None for key in UNCERTAINTY_KEYS):
        return None
    unit = UnitStats(name, value, **{key: _figure(entry, key, where) for key in UNCERTAINTY_KEYS})
    if unit.stderr < 0:
        raise AcetuiError(f"{where}: stderr {unit.stderr!r} is negative")
    if not (math.isnan(unit.p_top_k) or 0 <= unit.p_top_k <= 1):
        raise AcetuiError(f"{where}: p_top_k {unit.p_top_k!r} is not between 0 and 1")
    if unit.ci_low > unit.ci_high:
        raise AcetuiError(f"{where}: ci_low {unit.ci_low!r} is above ci_high {unit.ci_high!r}")
    return unit


def _sorted_scores(pairs: list[tuple[str, float]], path: Path) -> dict[str, float]:
    scores: dict[str, float] = {}
    for name, value in pairs:
        if name in scores:
            raise AcetuiError(f"{path}: module {name} appears twice")
        scores[name] = value
    return dict(sorted(scores.items(), key=lambda item: -item[1]))


def load_ranking(path: str | Path) -> ImportedRanking:
    """Read a Side-Step (or acetui) estimate JSON list or a fisher_map.json into a ranking.

    Estimate entries may name the module ``module`` or ``name`` and the value ``sensitivity`` or
    ``score`` (Side-Step's own reader accepts both). A fisher map gives its ``modules`` by
    ``fisher_score``, or, for a map without ``modules``, its ``rank_pattern`` ranks. Names are given the
    ``decoder.`` prefix. Raises AcetuiError naming the file for anything else.
    """
    path = Path(path).expanduser()
    return ranking_from_data(read_json(path), path)


def ranking_from_data(data: Any, path: Path) -> ImportedRanking:
    """``load_ranking`` of JSON already read from ``path`` (a compare operand is read once to tell a run
    record from a ranking file)."""
    if isinstance(data, list):
        return _estimate_ranking(data, path)
    if isinstance(data, dict) and ("rank_pattern" in data or "modules" in data):
        return _fisher_map_ranking(data, path)
    raise AcetuiError(f"{path}: neither an estimate list [{{module, sensitivity}}] nor a fisher_map.json")


def _estimate_ranking(data: list[Any], path: Path) -> ImportedRanking:
    """The entries' scores, how many are marked top-k, and the uncertainty figures of those that have any."""
    pairs, flagged, units, scored_by = [], {}, {}, set()
    for index, entry in enumerate(data):
        where = f"{path}: entry {index}"
        if not isinstance(entry, dict):
            raise AcetuiError(f"{where} is not an object")
        scored_by.add(_scored_by(entry, where))
        name = entry.get("module", entry.get("name"))
        value = entry.get("sensitivity", entry.get("score"))
        if not isinstance(name, str) or value is None:
            raise AcetuiError(f"{where} has no module/name and sensitivity/score")
        name, value = decoder_name(name), _number(value, where)
        pairs.append((name, value))
        if _top_k_flag(entry, where):
            flagged[name] = index
        unit = _unit(entry, name, value, where)
        if unit is not None:
            units[name] = unit
    if not pairs:
        raise AcetuiError(f"{path}: the ranking is empty")
    if len(scored_by) > 1:
        named = ", ".join(sorted(score or "unset" for score in scored_by))
        raise AcetuiError(f"{path}: the entries disagree on scored_by ({named})")
    score_name = scored_by.pop() or "sensitivity"
    scores = _sorted_scores(pairs, path)
    return ImportedRanking(path, "estimate", score_name, scores, top_k=_top_k(scores, flagged, path), units=units)


def _scored_by(entry: dict[str, Any], where: str) -> str | None:
    """The score an acetui export names for its entry (None: not said, as in Side-Step's files)."""
    score = entry.get("scored_by")
    if score is not None and score not in SCORES:
        raise AcetuiError(f"{where}: scored_by {score!r} is not one of {', '.join(SCORES)}")
    return score


def _fisher_map_ranking(data: dict[str, Any], path: Path) -> ImportedRanking:
    """A fisher map ranked by its ``modules``' fisher scores. Only a schema-1 map (no ``version``, or 1) may
    lack ``modules``; its ``rank_pattern`` ranks are used instead. Anything else is refused, never shown."""
    skip = ("modules", "rank_pattern", "alpha_pattern")
    metadata = {key: data[key] for key in FISHER_MAP_KEYS if key in data and key not in skip}
    if "modules" in data:
        return ImportedRanking(path, "fisher_map", "fisher", _module_scores(data["modules"], path), metadata)
    if data.get("version", 1) != 1:
        raise AcetuiError(f"{path}: fisher map version {data['version']!r} has no 'modules' list")
    pattern = data.get("rank_pattern")
    if not isinstance(pattern, dict) or not pattern:
        raise AcetuiError(f"{path}: fisher map has no modules or rank_pattern entries")
    where = f"{path}: rank_pattern"
    pairs = [(decoder_name(str(key)), _number(value, f"{where} {key}")) for key, value in pattern.items()]
    return ImportedRanking(path, "fisher_map", "assigned_rank", _sorted_scores(pairs, path), metadata)


def _module_scores(modules: Any, path: Path) -> dict[str, float]:
    """The fisher score of each entry of a map's ``modules``, which must be a non-empty list of modules."""
    if not isinstance(modules, list) or not modules:
        found = json.dumps(modules)
        found = found if len(found) <= 40 else found[:37] + "..."
        raise AcetuiError(f"{path}: fisher map 'modules' should be a non-empty list of modules, found {found}")
    pairs = []
    for index, entry in enumerate(modules):
        where = f"{path}: modules entry {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise AcetuiError(f"{where} has no name")
        pairs.append((decoder_name(entry["name"]), _number(entry.get("fisher_score"), where)))
    return _sorted_scores(pairs, path)
