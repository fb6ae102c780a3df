"""Odd entries in a real dataset folder: tensors of unusual kinds, names that are not regular files, broken
metadata. Each is listed with a one-line reason or noted, the valid samples are still used, nothing blocks.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from acetui.data import DatasetScan, load_sample, scan_dataset, write_dataset
from acetui.errors import DatasetError
from acetui.model.synthetic import TINY
from tests.support import PYTHON, estimate_args, run_cli, sample_dict, subprocess_env

VALID = 3


@pytest.fixture
def folder(tmp_path) -> Path:
    write_dataset(tmp_path / "data", count=VALID, condition_width=TINY.condition_width, seed=2, frames=(9, 12))
    return tmp_path / "data"


def finishes(call: Callable[[], DatasetScan], seconds: float = 60) -> DatasetScan:
    """``call()`` in a daemon thread: a scan that opened a named pipe would wait forever for a writer."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the scan blocked (did it open a named pipe?)"
    assert outcome, "the scan raised; see the thread's traceback above"
    return outcome[0]


def reasons(scan: DatasetScan) -> dict[str, str]:
    return {problem.path.name: problem.reason for problem in scan.problems}


def _quietly(make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``make`` without torch's warnings about creating beta, prototype or deprecated kinds of tensor (what
    is tested is loading them)."""

    def call(tensor: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return make(tensor)

    return call


KINDS = {
    "sparse-coo": (
        "target_latents",
        lambda t: t.to_sparse(),
        "is a sparse tensor (torch.sparse_coo); expected a dense one",
    ),
    "sparse-csr": ("target_latents", _quietly(lambda t: t.to_sparse_csr()), "is a sparse tensor (torch.sparse_csr)"),
    "sparse-mask": ("attention_mask", lambda t: t.to_sparse(), "is a sparse tensor (torch.sparse_coo)"),
    "meta": ("target_latents", lambda t: torch.empty(t.shape, device="meta"), "is a meta tensor (a shape without"),
    "meta-mask": ("encoder_attention_mask", lambda t: torch.empty(t.shape, device="meta"), "is a meta tensor"),
    "quantized": (
        "context_latents",
        _quietly(lambda t: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8)),
        "is a quantized tensor (torch.qint8); expected plain values",
    ),
    "complex": ("encoder_hidden_states", lambda t: t.to(torch.complex64), "is complex (torch.complex64)"),
    "complex-mask": ("attention_mask", lambda t: t.to(torch.complex64), "is complex (torch.complex64)"),
    "float8": ("target_latents", lambda t: t.to(torch.float8_e4m3fn), "is torch.float8_e4m3fn; expected float16"),
    "float8-mask": ("attention_mask", lambda t: t.to(torch.float8_e4m3fn), "is torch.float8_e4m3fn; expected a"),
    "nested": (
        "encoder_hidden_states",
        _quietly(lambda t: torch.nested.nested_tensor([t[:3], t[:4]])),
        "is a nested tensor; expected a dense one",
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_an_unusual_tensor_is_a_listed_problem(folder, kind):
    key, make, expected = KINDS[kind]
    data = sample_dict()
    data[key] = make(data[key])
    torch.save(data, folder / "odd.pt")
    with warnings.catch_warnings(record=True) as caught:  # what torch says while loading it is not shown
        warnings.simplefilter("always")
        scan = scan_dataset(folder, condition_width=TINY.condition_width)
    assert [str(warning.message) for warning in caught] == []
    assert len(scan.samples) == VALID
    assert reasons(scan)["odd.pt"].startswith(f"{key!r} {expected}")


def test_a_jagged_nested_tensor_is_named(folder, tmp_path):
    """torch loads one only once ``torch._dynamo`` is imported (as making one here does); a fresh
    ``acetui scan`` process has not, so torch refuses the file, and that refusal gets its own reason."""
    data = sample_dict()
    tokens = data["encoder_hidden_states"]
    data["encoder_hidden_states"] = torch.nested.nested_tensor([tokens[:3], tokens[:4]], layout=torch.jagged)
    torch.save(data, folder / "odd.pt")
    assert reasons(scan_dataset(folder))["odd.pt"] == "'encoder_hidden_states' is a nested tensor; expected a dense one"
    done = subprocess.run([*PYTHON, "scan", str(folder)], env=subprocess_env(tmp_path), capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert "  odd.pt: holds a nested (jagged) tensor; expected dense tensors\n" in done.stdout


def test_masks_of_any_integer_width_still_load(tmp_path):
    data = sample_dict()
    data["attention_mask"] = data["attention_mask"].to(torch.uint32)
    torch.save(data, tmp_path / "a.pt")
    assert load_sample(tmp_path / "a.pt").attention_mask.dtype == torch.float32


def test_cli_scan_and_estimate_use_the_valid_samples_beside_a_sparse_one(folder, checkpoint_root, capsys):
    data = sample_dict()
    data["target_latents"] = data["target_latents"].to_sparse()
    torch.save(data, folder / "sparse.pt")
    code, out, err = run_cli(capsys, "scan", folder)
    assert (code, err) == (0, "")
    assert f"{VALID} samples" in out and "sparse.pt: 'target_latents' is a sparse tensor" in out
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, folder, "--estimate-batches", "1"))
    assert code == 0, err
    assert "decoder.layers." in out and "1 bad sample files skipped" in out and "unexpected" not in err


def test_names_that_are_not_regular_files_are_listed_without_opening_them(folder, tmp_path):
    (folder / "dangling.pt").symlink_to(tmp_path / "gone.pt")
    (folder / "folder.pt").mkdir()
    os.mkfifo(folder / "pipe.pt")
    (folder / "loop.pt").symlink_to(folder / "loop.pt")
    scan = finishes(lambda: scan_dataset(folder))
    assert len(scan.samples) == VALID
    assert reasons(scan) == {
        "dangling.pt": f"a link to {tmp_path / 'gone.pt'}, which does not exist",
        "folder.pt": "is a folder, not a file",
        "loop.pt": "cannot read (Too many levels of symbolic links)",
        "pipe.pt": "not a regular file (a named pipe)",
    }
    assert scan.summary().endswith(", 4 problem files")


def test_a_folder_of_only_odd_names_has_no_valid_samples(tmp_path):
    os.mkfifo(tmp_path / "pipe.pt")
    scan = finishes(lambda: scan_dataset(tmp_path))
    with pytest.raises(DatasetError, match="no valid samples .*pipe.pt: not a regular file"):
        scan.require_samples()


def test_a_manifest_listing_a_named_pipe_does_not_block(folder):
    os.mkfifo(folder / "pipe.pt")
    (folder / "manifest.json").write_text(json.dumps({"samples": ["sample_000.pt", "pipe.pt"]}))
    scan = finishes(lambda: scan_dataset(folder))
    assert [info.path.name for info in scan.samples] == ["sample_000.pt"]
    assert reasons(scan) == {"pipe.pt": "not a regular file (a named pipe)"}


def _folder(path: Path) -> None:
    path.mkdir()


def _pipe(path: Path) -> None:
    os.mkfifo(path)


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "elsewhere.json")


def _text(content: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(content)


UNUSABLE = {
    "folder": (_folder, "is a folder, not a file"),
    "pipe": (_pipe, "not a regular file (a named pipe)"),
    "dangling": (_dangling, "a link to {folder}/elsewhere.json, which does not exist"),
    "not-json": (_text("{oops"), "not valid JSON"),
}


@pytest.mark.parametrize("case", UNUSABLE)
def test_an_unusable_manifest_is_noted_and_the_folder_scanned(folder, case):
    make, problem = UNUSABLE[case]
    make(folder / "manifest.json")
    scan = finishes(lambda: scan_dataset(folder))
    assert len(scan.samples) == VALID
    note = f"{folder / 'manifest.json'}: {problem.format(folder=folder)}"
    assert scan.notes == (note + _suffix(case, "the folder was scanned instead"),)


def _suffix(case: str, tail: str) -> str:
    """read_json names the parse error after "not valid JSON"; the note ends the same way in every case."""
    return (" (Expecting property name enclosed in double quotes, line 1)" if case == "not-json" else "") + (
        f", ignored; {tail}"
    )


UNUSABLE_META = {
    **UNUSABLE,
    "array": (_text('["base"]'), "not a JSON object"),
    "number-variant": (_text('{"model_variant": 3}'), "'model_variant' is not a variant name"),
    "blank-variant": (_text('{"model_variant": " "}'), "'model_variant' is not a variant name"),
}


@pytest.mark.parametrize("case", UNUSABLE_META)
def test_an_unusable_preprocess_meta_is_noted(folder, case):
    make, problem = UNUSABLE_META[case]
    make(folder / "preprocess_meta.json")
    scan = finishes(lambda: scan_dataset(folder))
    assert len(scan.samples) == VALID and scan.preprocessed_variant is None
    tail = "the variant the samples were preprocessed with is unknown"
    assert scan.notes == (f"{folder / 'preprocess_meta.json'}: {problem.format(folder=folder)}" + _suffix(case, tail),)


@pytest.mark.parametrize(("content", "variant"), [('{"model_variant": "base"}', "base"), ('{"other": 1}', None)])
def test_a_usable_preprocess_meta_needs_no_note(folder, content, variant):
    (folder / "preprocess_meta.json").write_text(content)
    scan = scan_dataset(folder)
    assert (scan.preprocessed_variant, scan.notes) == (variant, ())


def test_a_plain_pickle_gives_our_reason_and_no_torch_warning(folder):
    with (folder / "plain.pt").open("wb") as handle:
        pickle.dump({"target_latents": [1.0]}, handle, protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = scan_dataset(folder)
    assert [str(warning.message) for warning in caught] == []
    assert reasons(scan)["plain.pt"].startswith("not a valid torch file")
