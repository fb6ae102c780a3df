"""load_sample on real files: every way a sample can be unusable gives one line naming file and cause."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from acetui.data import Sample, load_sample
from acetui.errors import DatasetError
from acetui.model.synthetic import TINY
from tests.support import sample_dict


def save(path: Path, data: object) -> Path:
    torch.save(data, path)
    return path


def error_for(path: Path, **options) -> str:
    with pytest.raises(DatasetError) as caught:
        load_sample(path, **options)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message.removeprefix(f"{path}: ")


def test_valid_sample_is_float32_contiguous(tmp_path):
    data = sample_dict(frames=12, tokens=5)
    data["target_latents"] = torch.randn(64, 12).to(torch.bfloat16).T  # non-contiguous, like Side-Step's files
    data["encoder_attention_mask"] = torch.tensor([1, 1, 1, 0, 0])
    sample = load_sample(save(tmp_path / "a.pt", data), condition_width=TINY.condition_width)
    assert isinstance(sample, Sample)
    assert (sample.frames, sample.condition_length) == (12, 5)
    assert len(sample.tensors) == 5
    for tensor in sample.tensors:
        assert tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert torch.equal(sample.target_latents, data["target_latents"].float())
    assert sample.encoder_attention_mask.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_missing_masks_become_ones_and_bool_masks_are_accepted(tmp_path):
    data = sample_dict(frames=7, tokens=3)
    del data["attention_mask"]
    data["encoder_attention_mask"] = torch.tensor([True, True, False])
    sample = load_sample(save(tmp_path / "a.pt", data))
    assert sample.attention_mask.tolist() == [1.0] * 7
    assert sample.encoder_attention_mask.tolist() == [1.0, 1.0, 0.0]


def test_other_context_width_is_accepted_when_configured(tmp_path):
    data = sample_dict()
    data["context_latents"] = torch.randn(10, 65)
    assert load_sample(save(tmp_path / "a.pt", data), context_channels=65).context_latents.shape == (10, 65)


def test_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    path = save(tmp_path / "evil.pt", {**sample_dict(), "metadata": Payload()})
    reason = error_for(path)
    assert "not plain tensors" in reason and "not loaded" in reason and "exec" in reason
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: an unsafe load does run it
    assert marker.exists()


class Opaque:
    """A harmless class: still refused, since unpickling it means importing and building arbitrary objects."""


def test_other_python_objects_are_refused(tmp_path):
    reason = error_for(save(tmp_path / "custom.pt", {**sample_dict(), "extra": Opaque()}))
    assert "not plain tensors" in reason and "Opaque" in reason


def test_refused_names_from_a_file_never_reach_the_terminal_raw(tmp_path):
    hostile_name = "Clear\x1b[2JScreen"
    hostile = type(hostile_name, (), {"__module__": __name__})
    globals()[hostile_name] = hostile  # so pickle can save it by name
    try:
        path = save(tmp_path / "hostile.pt", {**sample_dict(), "extra": hostile()})
    finally:
        del globals()[hostile_name]
    reason = error_for(path)
    assert "not plain tensors" in reason and "Clear\\x1b[2JScreen" in reason and reason.isprintable()


def test_a_pickle_that_would_run_code_is_named_as_such(tmp_path):
    """torch words a blocked function ("unsupported GLOBAL posix.system whose module posix is blocked") unlike
    an unknown class; it was reported as a corrupt file."""
    path = save(tmp_path / "evil.pt", {**sample_dict(), "extra": RunsCode()})
    reason = error_for(path)
    assert "holds code or objects that are not plain tensors" in reason and "system" in reason


class RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("bad\nname.pt", "bad\\nname.pt"),
        ("bad\x1b[31mred.pt", "bad\\x1b[31mred.pt"),
        (os.fsdecode(b"bad\xff.pt"), "bad\\xff.pt"),
    ],
    ids=["newline", "escape", "bytes"],
)
def test_a_file_name_reaches_the_message_escaped(tmp_path, name, shown):
    path = tmp_path / name
    path.write_bytes(b"not a torch file")
    message = str(pytest.raises(DatasetError, load_sample, path, condition_width=TINY.condition_width).value)
    assert message.isprintable() and message.startswith(f"{tmp_path}/{shown}: ")


@pytest.mark.parametrize(
    "content",
    [b"", b"definitely not a torch file\n", bytes(range(256)) * 4],
    ids=["empty", "text", "junk"],
)
def test_corrupt_files(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    assert "not a valid torch file" in error_for(path)


def test_truncated_file(tmp_path):
    path = save(tmp_path / "cut.pt", sample_dict())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "not a valid torch file" in error_for(path)


def test_missing_file_and_folder(tmp_path):
    assert error_for(tmp_path / "nope.pt") == "file not found"
    (tmp_path / "dir.pt").mkdir()
    assert "folder" in error_for(tmp_path / "dir.pt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file(tmp_path):
    path = save(tmp_path / "locked.pt", sample_dict())
    path.chmod(0)
    try:
        assert "permission denied" in error_for(path)
    finally:
        path.chmod(0o644)


def test_pass1_intermediate_has_its_own_reason(tmp_path):
    pass1 = {
        "target_latents": torch.randn(10, 64),
        "attention_mask": torch.ones(10),
        "latent_length": 10,
        "text_hidden_states": torch.randn(1, 4, 32),
        "metadata": {},
    }
    assert error_for(save(tmp_path / "song.tmp.pt", pass1)).startswith("pass-1 intermediate, not a sample")


@pytest.mark.parametrize("data", [torch.randn(10, 64), [1, 2], 3], ids=["tensor", "list", "int"])
def test_not_a_dict(tmp_path, data):
    assert error_for(save(tmp_path / "a.pt", data)).startswith("expected a dict of tensors, found ")


def test_missing_keys_are_all_named(tmp_path):
    data = sample_dict()
    del data["context_latents"], data["encoder_hidden_states"]
    assert error_for(save(tmp_path / "a.pt", data)) == "missing keys 'context_latents', 'encoder_hidden_states'"


def _edit(key: str, value):
    def apply(data: dict) -> None:
        data[key] = value

    return apply


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_edit("target_latents", [[0.0] * 64]), "'target_latents' should be a tensor, found list"),
        (
            _edit("target_latents", torch.randn(1, 10, 64)),
            "'target_latents' should be [T, 64], found shape [1, 10, 64]",
        ),
        (_edit("encoder_hidden_states", torch.randn(6)), "'encoder_hidden_states' should be [L, E], found shape [6]"),
        (_edit("attention_mask", torch.ones(1, 10)), "'attention_mask' should be [10], found shape [1, 10]"),
        (_edit("target_latents", torch.randn(10, 32)), "'target_latents' has 32 channels, expected 64"),
        (_edit("context_latents", torch.randn(10, 65)), "'context_latents' has 65 channels, expected 128"),
        (
            _edit("target_latents", torch.zeros(10, 64, dtype=torch.int64)),
            "'target_latents' should be floating point, found torch.int64",
        ),
        (
            _edit("encoder_hidden_states", torch.ones(6, 32, dtype=torch.bool)),
            "'encoder_hidden_states' should be floating point, found torch.bool",
        ),
        (_edit("context_latents", torch.ones(11, 128)), "'context_latents' has 11 frames but 'target_latents' has 10"),
        (_edit("attention_mask", torch.ones(9)), "'attention_mask' has length 9 but 'target_latents' frames is 10"),
        (
            _edit("encoder_attention_mask", torch.ones(7)),
            "'encoder_attention_mask' has length 7 but 'encoder_hidden_states' length is 6",
        ),
        (_edit("attention_mask", torch.tensor([float("nan")] * 10)), "'attention_mask' contains NaN/Inf values"),
    ],
    ids=[
        "not-tensor",
        "rank-target",
        "rank-condition",
        "rank-mask",
        "width-target",
        "width-context",
        "int-dtype",
        "bool-dtype",
        "t-mismatch",
        "mask-mismatch",
        "condition-mask-mismatch",
        "nan-mask",
    ],
)
def test_shape_and_dtype_problems(tmp_path, edit, expected):
    data = sample_dict()
    edit(data)
    assert error_for(save(tmp_path / "a.pt", data)).startswith(expected)


def test_condition_width_checked_only_when_given(tmp_path):
    path = save(tmp_path / "a.pt", sample_dict(width=48))
    assert load_sample(path).encoder_hidden_states.shape == (6, 48)
    reason = error_for(path, condition_width=2048)
    assert reason.startswith("'encoder_hidden_states' has 48 channels, expected 2048")


@pytest.mark.parametrize(
    ("frames", "tokens", "expected"),
    [(0, 6, "zero-length sample"), (10, 0, "empty condition")],
)
def test_zero_length(tmp_path, frames, tokens, expected):
    assert error_for(save(tmp_path / "a.pt", sample_dict(frames=frames, tokens=tokens))).startswith(expected)


@pytest.mark.parametrize("key", ["target_latents", "context_latents", "encoder_hidden_states"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_name_the_key(tmp_path, key, bad):
    data = sample_dict()
    data[key] = data[key].clone()
    data[key][2, 3] = bad
    data[key][4, 5] = bad
    assert error_for(save(tmp_path / "a.pt", data)).startswith(f"{key!r} contains 2 NaN/Inf values")
