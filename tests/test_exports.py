"""Export formats from rankings with known content."""

from __future__ import annotations

import json

import pytest

from acetui.errors import AcetuiError
from acetui.estimate.exports import (
    estimate_json,
    export,
    peft_exact_modules,
    peft_suffix_modules,
    target_modules_string,
)
from acetui.estimate.scores import RankedModule


def _ranked(*names: str) -> list[RankedModule]:
    items = []
    for rank, name in enumerate(names, start=1):
        parts = name.split(".")
        projection = parts[4] if len(parts) > 4 else ""
        items.append(RankedModule(rank, name, 10.0 - rank, 0.1, int(parts[2]), parts[3], projection))
    return items


RANKING = _ranked(
    "decoder.layers.3.cross_attn.v_proj",
    "decoder.layers.2.self_attn.q_proj",
    "decoder.layers.1.cross_attn.v_proj",
    "decoder.layers.0.self_attn.v_proj",
    "decoder.layers.3.self_attn.k_proj",
    "decoder.layers.0.cross_attn.o_proj",
)


def test_target_modules_are_the_types_covering_most_of_the_top_k():
    assert target_modules_string(RANKING, 4) == "v_proj"
    assert target_modules_string(RANKING, 5) == "v_proj q_proj"
    assert target_modules_string(RANKING, 1) == "v_proj"


def test_peft_names_never_carry_the_decoder_prefix():
    assert peft_exact_modules(RANKING, 3) == [
        "layers.3.cross_attn.v_proj",
        "layers.2.self_attn.q_proj",
        "layers.1.cross_attn.v_proj",
    ]
    assert peft_suffix_modules(RANKING, 3) == ["cross_attn.v_proj", "self_attn.q_proj"]


def test_layer_units_expand_to_their_projections():
    blocks = _ranked("decoder.layers.5.cross_attn", "decoder.layers.1.self_attn")
    assert peft_exact_modules(blocks, 1) == [
        f"layers.5.cross_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    # every block stands for all four projections: none of them can be told apart from the others
    assert target_modules_string(blocks, 2) == "q_proj k_proj v_proj o_proj"


def test_estimate_json_is_side_steps_list():
    entries = json.loads(estimate_json(RANKING, 2))
    assert [set(e) >= {"module", "sensitivity"} for e in entries] == [True] * 6
    assert [e["top_k"] for e in entries] == [True, True, False, False, False, False]


def test_export_to_a_directory_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(AcetuiError, match="is a directory"):
        export(tmp_path, "json", RANKING, 2)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_share_is_written_as_null_so_the_json_stays_valid(tmp_path):
    """A ranking whose values sum to zero (e.g. an imported file of zeros) has no shares: NaN is not JSON."""
    zeros = [RankedModule(rank, item.module, 0.0, float("nan"), item.layer, item.kind, item.projection)
             for rank, item in enumerate(RANKING, start=1)]  # fmt: skip
    path = export(tmp_path / "zeros.json", "json", zeros, 2)
    entries = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert [entry["share"] for entry in entries] == [None] * len(RANKING)
