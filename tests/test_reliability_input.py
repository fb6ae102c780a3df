"""Bad input through the real ``acetui estimate``: exit code 1 and one ``acetui: <file>: <problem>`` line.

Every case writes the real damaged file (dataset sample, folder, config.json, safetensors) and runs the
CLI's ``main`` in this process; stderr must be exactly one line with no traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from acetui.data import write_dataset
from acetui.model.synthetic import TINY, random_state, write_checkpoint
from tests.support import estimate_args, one_error_line, run_cli, run_records, sample_dict

# --- dataset files --------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this would write the marker file: the loader must refuse it without running it."""

    marker = ""

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _code(path: Path, tmp: Path) -> None:
    payload = _Payload()
    payload.marker = str(tmp / "marker")
    torch.save({**sample_dict(), "metadata": payload}, path)


def _truncated(path: Path, tmp: Path) -> None:
    torch.save(sample_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edited(**changes):
    def write(path: Path, tmp: Path) -> None:
        data = sample_dict()
        for key, value in changes.items():
            if value is None:
                del data[key]
            else:
                data[key] = value
        torch.save(data, path)

    return write


def _with_value(key: str, value: float):
    def write(path: Path, tmp: Path) -> None:
        data = sample_dict()
        data[key][3, 5] = value
        torch.save(data, path)

    return write


BAD_SAMPLES = {
    "code": (_code, "holds code or objects that are not plain tensors"),
    "truncated": (_truncated, "not a valid torch file"),
    "corrupt": (lambda path, tmp: path.write_bytes(bytes(range(256)) * 8), "not a valid torch file"),
    "not-a-dict": (lambda path, tmp: torch.save([torch.zeros(3)], path), "expected a dict of tensors, found list"),
    "missing-key": (_edited(encoder_hidden_states=None), "missing key 'encoder_hidden_states'"),
    "wrong-rank": (
        _edited(target_latents=torch.randn(1, 10, 64)),
        "'target_latents' should be [T, 64], found shape [1, 10, 64]",
    ),
    "wrong-shape": (_edited(target_latents=torch.randn(10, 63)), "'target_latents' has 63 channels, expected 64"),
    "wrong-dtype": (
        _edited(target_latents=torch.ones(10, 64, dtype=torch.int64)),
        "'target_latents' should be floating point",
    ),
    "nan": (_with_value("target_latents", float("nan")), "'target_latents' contains 1 NaN/Inf values"),
    "inf": (_with_value("encoder_hidden_states", float("inf")), "'encoder_hidden_states' contains 1 NaN/Inf values"),
    "encoder-width": (
        _edited(encoder_hidden_states=torch.randn(6, 48), encoder_attention_mask=torch.ones(6)),
        "'encoder_hidden_states' has 48 channels, expected 64 (made for another model?)",
    ),
    "zero-length": (
        _edited(target_latents=torch.zeros(0, 64), attention_mask=torch.ones(0), context_latents=torch.zeros(0, 128)),
        "zero-length sample",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SAMPLES))
def test_folder_of_one_bad_sample_is_a_one_line_error(case, tmp_path, checkpoint_root, capsys, isolated_app_dirs):
    write, reason = BAD_SAMPLES[case]
    folder = tmp_path / "dataset"
    folder.mkdir()
    write(folder / "bad.pt", tmp_path)
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, folder))
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"acetui: {folder}: no valid samples")
    assert f"bad.pt: {reason}" in line
    assert out == ""
    assert run_records(isolated_app_dirs) == {}
    assert not (tmp_path / "marker").exists()  # the pickle payload never ran


def _mixed_dataset(tmp_path: Path) -> tuple[Path, list[Path]]:
    folder = tmp_path / "mixed"
    write_dataset(folder, count=5, condition_width=TINY.condition_width, seed=1, frames=(9, 12))
    _truncated(folder / "broken.pt", tmp_path)
    _with_value("target_latents", float("nan"))(folder / "nan.pt", tmp_path)
    return folder, [folder / "broken.pt", folder / "nan.pt"]


def test_mixed_folder_runs_and_reports_the_skipped_files(tmp_path, checkpoint_root, capsys, isolated_app_dirs):
    folder, bad = _mixed_dataset(tmp_path)
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, folder, "--estimate-batches", "2"))
    assert code == 0, err
    assert err.splitlines() == [  # named by reason before the run, not only counted after it
        f"acetui: warning: {folder}: skipped broken.pt: not a valid torch file (corrupt, truncated or not "
        "written by torch.save)",
        f"acetui: warning: {folder}: skipped nan.pt: 'target_latents' contains 1 NaN/Inf values (failed encode?)",
    ]
    assert "2 batches, 2 bad sample files skipped;" in out
    (record,) = run_records(isolated_app_dirs).values()
    assert record["status"] == "complete"
    skipped = record["metadata"]["dataset"]["skipped_samples"]
    assert [item["path"] for item in skipped] == [str(path) for path in bad]
    assert "not a valid torch file" in skipped[0]["reason"]
    assert "NaN/Inf" in skipped[1]["reason"]
    used = {sample for batch in record["batches"] for sample in batch["samples"]}
    assert used and not used & {str(path) for path in bad}


def test_strict_makes_any_bad_sample_an_error(tmp_path, checkpoint_root, capsys, isolated_app_dirs):
    folder, bad = _mixed_dataset(tmp_path)
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, folder, "--strict"))
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"acetui: {bad[0]}: not a valid torch file")
    assert f"(--strict: 2 bad sample file(s) in {folder})" in line
    assert out == "" and run_records(isolated_app_dirs) == {}


# --- dataset folders ------------------------------------------------------------------------------------


def _unreadable_folder(tmp_path: Path) -> Path:
    """A folder this user cannot list: chmod 000 works for ordinary users; root needs a kernel-guarded one."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0)
        return folder
    for candidate in (Path("/proc/1/map_files"), Path("/proc/1/root")):
        try:
            if candidate.is_dir():
                os.listdir(candidate)
        except PermissionError:
            return candidate
        except OSError:
            continue
    pytest.skip("running as root with no folder that refuses listing")


def _folder_case(case: str, tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "data"
    if case == "missing":
        return folder, "folder not found"
    if case == "file":
        folder.write_text("x")
        return folder, "not a folder"
    if case == "unreadable":
        return _unreadable_folder(tmp_path), "cannot read (permission denied)"
    folder.mkdir()
    if case == "empty":
        return folder, "no .pt files (found 0 other files)"
    (folder / "song.wav").write_bytes(b"RIFF")
    (folder / "notes.txt").write_text("hi")
    (folder / "sub").mkdir()
    (folder / "sub" / "hidden.pt").write_bytes(b"")
    return folder, "no .pt files (found 2 other files)"


@pytest.mark.parametrize("case", ["empty", "missing", "file", "unreadable", "only-other-files"])
def test_unusable_dataset_folder(case, tmp_path, checkpoint_root, capsys):
    folder, problem = _folder_case(case, tmp_path)
    try:
        code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, folder))
    finally:
        if folder.is_relative_to(tmp_path) and folder.is_dir():
            folder.chmod(0o755)
    assert code == 1
    assert one_error_line(err) == f"acetui: {folder}: {problem}"


# --- checkpoints ----------------------------------------------------------------------------------------


def _good_root(tmp_path: Path, shards: int = 1, state=None) -> tuple[Path, Path]:
    root = tmp_path / "checkpoints"
    folder = write_checkpoint(root / "acestep-v15-turbo", TINY, seed=1, dtype=torch.float32, shards=shards, state=state)
    return root, folder


def _edit_config(folder: Path, **changes) -> Path:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    path.write_text(json.dumps(config))
    return path


def _checkpoint_case(case: str, tmp_path: Path) -> tuple[Path, str, str]:
    """(root, variant, expected line after 'acetui: ')."""
    if case == "root-missing":
        root = tmp_path / "nowhere"
        return root, "turbo", f"{root}: checkpoint root not found"
    if case == "variant-missing":
        root, _ = _good_root(tmp_path)
        return root, "xl-sft", f"{root / 'acestep-v15-xl-sft'}: variant 'xl-sft' not found in {root} (found: turbo)"
    if case == "config-not-json":
        root, folder = _good_root(tmp_path)
        (folder / "config.json").write_text('{"hidden_size": 64,')
        return root, "turbo", f"{folder / 'config.json'}: not valid JSON ("
    if case == "config-missing-field":
        root, folder = _good_root(tmp_path)
        path = _edit_config(folder, hidden_size=None)
        return root, "turbo", f"{path}: missing field 'hidden_size'"
    if case == "header-corrupt":
        root, folder = _good_root(tmp_path)
        file = folder / "model.safetensors"
        data = bytearray(file.read_bytes())
        data[8:24] = b"\x00garbage\xff\xfe....."
        file.write_bytes(bytes(data))
        return root, "turbo", f"{file}: corrupt safetensors file (header is not valid JSON)"
    if case == "header-truncated":
        root, folder = _good_root(tmp_path)
        file = folder / "model.safetensors"
        file.write_bytes(file.read_bytes()[:200])
        return root, "turbo", f"{file}: corrupt safetensors file (header length"
    if case == "data-truncated":
        root, folder = _good_root(tmp_path)
        file = folder / "model.safetensors"
        file.write_bytes(file.read_bytes()[:-100])
        return root, "turbo", f"{file}: truncated safetensors file"
    if case == "shard-missing":
        root, folder = _good_root(tmp_path, shards=3)
        shard = folder / "model-00002-of-00003.safetensors"
        shard.unlink()
        return root, "turbo", f"{shard}: shard listed in model.safetensors.index.json is missing"
    if case == "key-missing":
        state = random_state(TINY, seed=1, dtype=torch.float32)
        del state["decoder.layers.2.cross_attn.k_proj.weight"]
        root, folder = _good_root(tmp_path, state=state)
        return (
            root,
            "turbo",
            (f"{folder / 'model.safetensors'}: missing decoder tensor 'decoder.layers.2.cross_attn.k_proj.weight'"),
        )
    if case == "key-unexpected":
        root, folder = _good_root(tmp_path)
        _edit_config(folder, num_hidden_layers=3, layer_types=None)
        return root, "turbo", f"{folder / 'model.safetensors'}: unexpected decoder tensor 'decoder.layers.3."
    assert case == "shape-mismatch"
    root, folder = _good_root(tmp_path)
    _edit_config(folder, intermediate_size=96)
    return root, "turbo", f"{folder / 'model.safetensors'}: tensor 'decoder.layers.0.mlp."


CHECKPOINT_CASES = [
    "root-missing", "variant-missing", "config-not-json", "config-missing-field", "header-corrupt",
    "header-truncated", "data-truncated", "shard-missing", "key-missing", "key-unexpected", "shape-mismatch",
]  # fmt: skip


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_unusable_checkpoint(case, tmp_path, dataset_dir, capsys, isolated_app_dirs):
    root, variant, expected = _checkpoint_case(case, tmp_path)
    code, out, err = run_cli(capsys, *estimate_args(root, dataset_dir, variant=variant))
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"acetui: {expected}"), line
    if case == "shape-mismatch":
        assert "config.json implies" in line
    assert out == ""
    assert run_records(isolated_app_dirs) == {}


def test_progress_lines_do_not_hide_the_error(tmp_path, dataset_dir, capsys):
    """Without -q stage lines come first; the error is still the last line, still without a traceback."""
    root, variant, expected = _checkpoint_case("shard-missing", tmp_path)
    args = [arg for arg in estimate_args(root, dataset_dir) if arg != "-q"]
    code, out, err = run_cli(capsys, *args)
    assert code == 1
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"acetui: {expected}"
