"""DecoderConfig.from_json_file on real files: good ones, and every way a config.json can be wrong."""

from __future__ import annotations

import json

import pytest

from acetui.errors import ModelLoadError
from acetui.model.config import DecoderConfig
from acetui.model.synthetic import TINY, XL_LIKE, write_checkpoint


def _valid() -> dict:
    return {**TINY.to_dict(), "architectures": ["AceStepConditionGenerationModel"], "rope_scaling": None}


def _write(tmp_path, document) -> object:
    path = tmp_path / "config.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def _error(path) -> str:
    with pytest.raises(ModelLoadError) as caught:
        DecoderConfig.from_json_file(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_round_trip_of_a_written_checkpoint(tmp_path):
    write_checkpoint(tmp_path / "v", XL_LIKE)
    assert DecoderConfig.from_json_file(tmp_path / "v" / "config.json") == XL_LIKE


def test_missing_file(tmp_path):
    assert "not found" in _error(tmp_path / "config.json")


def test_not_json(tmp_path):
    assert "not valid JSON" in _error(_write(tmp_path, '{"hidden_size": 64,'))


def test_not_an_object(tmp_path):
    assert "expected a JSON object, found list" in _error(_write(tmp_path, "[1, 2]"))


@pytest.mark.parametrize("name", ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"])
def test_missing_required_field(tmp_path, name):
    document = _valid()
    del document[name]
    assert f"missing field {name!r}" in _error(_write(tmp_path, document))


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("hidden_size", "64", "a positive integer"),
        ("hidden_size", True, "a positive integer"),
        ("num_hidden_layers", 4.0, "a positive integer"),
        ("intermediate_size", 0, "a positive integer"),
        ("head_dim", "16", "a positive integer"),
        ("sliding_window", -1, "a positive integer"),
        ("encoder_hidden_size", False, "a positive integer"),
        ("rms_norm_eps", "1e-6", "a finite number"),
        ("rms_norm_eps", -1.0, "a number above zero"),
        ("rope_theta", 0, "a number above zero"),
        ("timestep_sigma", float("inf"), "a finite number"),
        ("timestep_mu", float("nan"), "a finite number"),
        ("attention_bias", 0, "true or false"),
        ("hidden_act", 1, "a string"),
        ("layer_types", ["sliding_attention"] * 3 + ["global"], "a list of"),
    ],
)
def test_wrong_type(tmp_path, name, value, expected):
    message = _error(_write(tmp_path, {**_valid(), name: value}))
    assert f"field {name!r} should be {expected}" in message
    assert repr(value) in message


def test_layer_types_length_mismatch(tmp_path):
    message = _error(_write(tmp_path, {**_valid(), "layer_types": ["sliding_attention", "full_attention"] * 3}))
    assert "layer_types has 6 entries but num_hidden_layers is 4" in message


def test_unsupported_activation(tmp_path):
    assert "hidden_act 'gelu' is not supported" in _error(_write(tmp_path, {**_valid(), "hidden_act": "gelu"}))


def test_heads_not_a_multiple_of_kv_heads(tmp_path):
    message = _error(_write(tmp_path, {**_valid(), "num_key_value_heads": 3}))
    assert "num_attention_heads (4) is not a multiple of num_key_value_heads (3)" in message


@pytest.mark.parametrize("absent", [True, False])
def test_encoder_hidden_size_absent_or_null_means_hidden_size(tmp_path, absent):
    document = _valid()
    if absent:
        document.pop("encoder_hidden_size")
    else:
        document["encoder_hidden_size"] = None
    config = DecoderConfig.from_json_file(_write(tmp_path, document))
    assert config.encoder_hidden_size is None
    assert config.condition_width == config.hidden_size == 64


def test_encoder_hidden_size_given(tmp_path):
    config = DecoderConfig.from_json_file(_write(tmp_path, {**_valid(), "encoder_hidden_size": 48}))
    assert config.condition_width == 48


def test_optional_fields_absent_take_defaults_and_null_unsets(tmp_path):
    document = _valid()
    for name in ("head_dim", "sliding_window", "layer_types", "rms_norm_eps"):
        document.pop(name)
    config = DecoderConfig.from_json_file(_write(tmp_path, document))
    assert config.head_dim == 64 // 4  # hidden_size / heads
    assert config.sliding_window == DecoderConfig.sliding_window == 128
    assert config.layer_types == ("sliding_attention", "full_attention") * 2
    assert config.rms_norm_eps == 1e-6

    nulls = {**_valid(), "head_dim": None, "sliding_window": None}
    config = DecoderConfig.from_json_file(_write(tmp_path, nulls))
    assert config.head_dim == 16
    assert config.sliding_window is None
    assert config.window_for_layer(0) is None


def test_unknown_fields_are_ignored(tmp_path):
    document = {**_valid(), "lyric_alignment_layers_config": {"3": [1, 2]}, "some_future_field": [1], "vocab_size": "x"}
    assert DecoderConfig.from_json_file(_write(tmp_path, document)) == TINY
