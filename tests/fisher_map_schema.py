"""Side-Step's fisher_map.json schema version 2 (issue 9's field list) as a checker for the tests.

It reads a written map back and names every way it falls short of what Side-Step's trainer needs.
"""

from __future__ import annotations

from typing import Any

from acetui.estimate.exports import peft_name
from acetui.estimate.sidestep import (
    FISHER_MAP_KEYS,
    SCHEMA_VERSION,
    projection_suffix,
)
from acetui.model.checkpoint import DECODER_PREFIX

MODULE_KEYS = ("name", "fisher_score", "fisher_cross_run_std", "effective_rank", "assigned_rank")


def fisher_map_problems(data: Any) -> list[str]:
    """What keeps ``data`` from being a complete schema-2 map that Side-Step trains from as intended."""
    if not isinstance(data, dict):
        return ["not a JSON object"]
    problems = [f"missing key {key!r}" for key in FISHER_MAP_KEYS if key not in data]
    if problems:
        return problems
    if data["version"] != SCHEMA_VERSION:
        problems.append(f"version is {data['version']!r}, not {SCHEMA_VERSION}")
    targets, ranks, alphas = data["target_modules"], data["rank_pattern"], data["alpha_pattern"]
    if not (isinstance(targets, list) and targets == sorted(set(targets))):
        problems.append("target_modules is not a sorted list of unique suffixes")
    if not isinstance(ranks, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in ranks.values()):
        return problems + ["rank_pattern is not an object of integer ranks"]
    if not isinstance(alphas, dict) or alphas != {key: 2 * rank for key, rank in ranks.items()}:
        problems.append("alpha_pattern is not 2 x rank_pattern for exactly the same modules")
    budget = data["rank_budget"] if isinstance(data["rank_budget"], dict) else {}
    if any(not budget.get("min", 0) <= rank <= budget.get("max", 0) for rank in ranks.values()):
        problems.append("a rank lies outside rank_budget")
    for key in ranks:
        if key.startswith(DECODER_PREFIX):
            problems.append(f"rank_pattern key {key!r} carries the decoder. prefix")
    modules = data["modules"]
    names = [entry.get("name") for entry in modules if isinstance(entry, dict)]
    if len(names) != len(modules) or any(set(entry) != set(MODULE_KEYS) for entry in modules):
        problems.append(f"modules entries must have exactly {', '.join(MODULE_KEYS)}")
    scores = [entry.get("fisher_score", 0) for entry in modules if isinstance(entry, dict)]
    if scores != sorted(scores, reverse=True):
        problems.append("modules are not in descending fisher_score order")
    if {peft_name(str(name)) for name in names} != set(ranks):
        problems.append("modules and rank_pattern name different modules")
    if isinstance(targets, list):
        for name in [*names, *data["excluded_modules"]]:
            try:
                targeted = projection_suffix(str(name)) in targets
            except ValueError:
                continue
            if targeted and peft_name(str(name)) not in ranks:
                problems.append(f"{name} is matched by target_modules but has no rank_pattern entry")
    return problems
