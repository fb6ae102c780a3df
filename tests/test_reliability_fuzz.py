"""Fuzz: randomly damaged ``.pt`` samples and safetensors checkpoints fed to the real scanners and loaders.

Each damaged file must either load or fail with an AcetuiError whose message is one line naming the file;
any other exception (or a crash) is a bug. Hypothesis is derandomized so every run checks the same
few hundred files, and damage is aimed at the parts parsers read (zip records, safetensors header).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acetui.data import load_sample, scan_dataset
from acetui.data.samples import SampleFileError
from acetui.errors import AcetuiError, ModelLoadError
from acetui.model import list_variants, load_decoder
from acetui.model.config import DecoderConfig
from acetui.model.synthetic import write_checkpoint
from tests.support import sample_dict

SMALL = DecoderConfig(
    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
    head_dim=16, sliding_window=4,
)  # fmt: skip
FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _damage(data: bytes, operations: list[tuple[str, int, bytes]], hot: int) -> bytes:
    """Apply truncate / flip / insert at positions drawn mostly inside the first ``hot`` bytes."""
    damaged = bytearray(data)
    for kind, where, payload in operations:
        size = len(damaged)
        if size == 0:
            break
        position = where % (hot if where % 4 else size) % size
        if kind == "truncate":
            del damaged[position:]
        elif kind == "flip":
            damaged[position] ^= payload[0] or 0xFF
        else:
            damaged[position:position] = payload
    return bytes(damaged)


OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["truncate", "flip", "flip", "insert"]), st.integers(0, 2**31),
              st.binary(min_size=1, max_size=8)),
    min_size=1, max_size=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def workdir():
    folder = Path(tempfile.mkdtemp(prefix="acetui-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def sample_bytes(workdir) -> bytes:
    path = workdir / "template.pt"
    torch.manual_seed(0)
    torch.save(sample_dict(frames=4, tokens=3), path)
    return path.read_bytes()


@FUZZ
@given(operations=OPERATIONS)
def test_damaged_sample_files(operations, workdir, sample_bytes):
    folder = workdir / "dataset"
    folder.mkdir(exist_ok=True)
    (folder / "a_good.pt").write_bytes(sample_bytes)
    path = folder / "b_damaged.pt"
    path.write_bytes(_damage(sample_bytes, operations, hot=len(sample_bytes)))
    try:
        load_sample(path, condition_width=64)
    except SampleFileError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    scan = scan_dataset(folder, condition_width=64)
    assert [info.path.name for info in scan.samples][:1] == ["a_good.pt"]
    assert len(scan.samples) + len(scan.problems) == 2


@pytest.fixture(scope="module")
def checkpoint_bytes(workdir) -> tuple[bytes, int]:
    folder = write_checkpoint(workdir / "template" / "acestep-v15-turbo", SMALL, seed=1, dtype=torch.float32)
    data = (folder / "model.safetensors").read_bytes()
    return data, 8 + int.from_bytes(data[:8], "little")


@settings(FUZZ, max_examples=300)
@given(operations=OPERATIONS)
def test_damaged_safetensors_files(operations, workdir, checkpoint_bytes):
    data, header_end = checkpoint_bytes
    root = workdir / "checkpoints"
    folder = root / "acestep-v15-turbo"
    if not folder.is_dir():
        shutil.copytree(workdir / "template" / "acestep-v15-turbo", folder)
    file = folder / "model.safetensors"
    file.write_bytes(_damage(data, operations, hot=header_end + 16))
    try:
        model = load_decoder(root, "turbo")
    except ModelLoadError as error:
        assert str(error).startswith(f"{file}: ") and "\n" not in str(error)
    else:
        assert sum(p.numel() for p in model.parameters()) > 0
    (info,) = list_variants(root)
    assert info.name == "turbo" and "\n" not in info.problem


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _header_file(body: bytes) -> bytes:
    return len(body).to_bytes(8, "little") + body


@pytest.mark.parametrize(
    "target, content",
    [
        ("model.safetensors", _header_file(_nested(100_000))),
        (
            "model.safetensors",
            _header_file(b'{"decoder.x": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}'),
        ),
        ("model.safetensors", _header_file(b'{"decoder.x": {"dtype": "F32", "shape": [-1], "data_offsets": [4, 0]}}')),
        ("model.safetensors", _header_file(b'{"decoder.x": {"dtype": "F32", "shape": {"a": 1}, "data_offsets": 7}}')),
        ("model.safetensors", (2**63).to_bytes(8, "little") + b"{}"),
        ("config.json", _nested(100_000)),
        ("config.json", b'{"hidden_size": 1e400}'),
        (
            "config.json",
            b'{"hidden_size": -64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4}',
        ),
        ("model.safetensors.index.json", _nested(100_000)),
        ("model.safetensors.index.json", b'{"weight_map": {"decoder.x": "../../../etc/passwd"}}'),
    ],
    ids=[
        "header-deeply-nested",
        "header-huge-number",
        "header-negative",
        "header-wrong-types",
        "header-length-2^63",
        "config-deeply-nested",
        "config-huge-number",
        "config-negative-size",
        "index-deeply-nested",
        "index-points-outside",
    ],
)
def test_hostile_checkpoint_files(target, content, tmp_path):
    """Hand-made worst cases the random damage is unlikely to reach."""
    root = tmp_path / "checkpoints"
    folder = write_checkpoint(root / "acestep-v15-turbo", SMALL, seed=1, dtype=torch.float32)
    (folder / target).write_bytes(content)
    with pytest.raises(AcetuiError) as caught:
        load_decoder(root, "turbo")
    assert "\n" not in str(caught.value) and str(folder) in str(caught.value)
    (info,) = list_variants(root)
    assert info.problem and "\n" not in info.problem


def test_sample_whose_zip_records_claim_huge_sizes(tmp_path):
    """Local zip headers that claim ~4 GiB entries: refused as corrupt, without allocating that much."""
    path = tmp_path / "liar.pt"
    torch.save(sample_dict(), path)
    data = bytearray(path.read_bytes())
    start = 0
    while (start := data.find(b"PK\x03\x04", start)) >= 0:
        data[start + 18 : start + 26] = (0xFFFFFFF0).to_bytes(4, "little") * 2  # compressed, uncompressed
        start += 4
    path.write_bytes(bytes(data))
    try:
        load_sample(path, condition_width=64)
    except SampleFileError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    scan = scan_dataset(tmp_path, condition_width=64)
    assert len(scan.samples) + len(scan.problems) == 1


def test_json_helper_sanity():
    """The nested helper really exceeds the parser's recursion limit (else the cases above prove nothing)."""
    with pytest.raises(RecursionError):
        json.loads(_nested(100_000))
