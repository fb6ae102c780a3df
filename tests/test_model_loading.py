"""Finding, describing and loading variants from real checkpoint files, good and broken."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from acetui.errors import ModelLoadError
from acetui.model import AceStepDecoder, VariantInfo, list_variants, load_decoder, resolve_variant
from acetui.model.checkpoint import decoder_entries, iter_decoder_tensors, read_header
from acetui.model.config import DecoderConfig
from acetui.model.synthetic import TINY, random_state, write_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _decoder_parameter_count(config: DecoderConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in AceStepDecoder(config).parameters())


def _file_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    """Every tensor of the files, read with the safetensors library (independent of our reader)."""
    tensors = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            tensors.update({key: handle.get_tensor(key) for key in handle.keys()})
    return tensors


def _load_error(root: Path, variant: str) -> str:
    with pytest.raises(ModelLoadError) as caught:
        load_decoder(root, variant)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A healthy root: bf16 single-file turbo, fp32 3-shard base, a custom fine-tune, and a non-variant folder."""
    root = tmp_path_factory.mktemp("root")
    write_checkpoint(root / "acestep-v15-turbo", TINY, seed=1, dtype=torch.bfloat16)
    write_checkpoint(root / "acestep-v15-base", TINY, seed=2, dtype=torch.float32, shards=3)
    write_checkpoint(root / "my-finetune", TINY, seed=3, dtype=torch.bfloat16)
    (root / "vae").mkdir()
    (root / "vae" / "weights.bin").write_bytes(b"not a variant")
    return root


# --- variant resolution ---------------------------------------------------------------------------------


def test_short_official_names_map_to_folders(root):
    assert resolve_variant(root, "turbo") == root / "acestep-v15-turbo"
    assert resolve_variant(root, "base") == root / "acestep-v15-base"
    assert resolve_variant(root, "acestep-v15-turbo") == root / "acestep-v15-turbo"


def test_custom_folder_with_config_is_accepted(root):
    assert resolve_variant(root, "my-finetune") == root / "my-finetune"
    assert load_decoder(root, "my-finetune").config == TINY


def test_fine_tune_stored_elsewhere_by_absolute_path(root, tmp_path):
    elsewhere = tmp_path / "finetunes" / "run-7"
    write_checkpoint(elsewhere, TINY, seed=4, dtype=torch.bfloat16)
    assert resolve_variant(root, str(elsewhere)) == elsewhere
    assert load_decoder(root, str(elsewhere)).config == TINY


def test_missing_root(tmp_path):
    with pytest.raises(ModelLoadError, match="checkpoint root not found") as caught:
        resolve_variant(tmp_path / "nowhere", "turbo")
    assert str(tmp_path / "nowhere") in str(caught.value)


def test_root_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelLoadError, match="file: not a folder"):
        resolve_variant(tmp_path / "file", "turbo")


def test_missing_variant_lists_the_variants_found(root):
    with pytest.raises(ModelLoadError) as caught:
        resolve_variant(root, "xl-turbo")
    message = str(caught.value)
    assert str(root / "acestep-v15-xl-turbo") in message
    assert "(found: turbo, base, my-finetune)" in message


def test_missing_variant_in_an_empty_root(tmp_path):
    with pytest.raises(ModelLoadError, match=r"\(found: none\)"):
        resolve_variant(tmp_path, "turbo")


def test_folder_without_config_is_not_a_variant(root):
    with pytest.raises(ModelLoadError, match="no config.json") as caught:
        load_decoder(root, "vae")
    assert str(root / "vae") in str(caught.value)


# --- list_variants --------------------------------------------------------------------------------------


def test_list_variants_describes_each_variant(root):
    infos = {info.name: info for info in list_variants(root)}
    assert list(infos) == ["turbo", "base", "my-finetune"]
    parameters = _decoder_parameter_count(TINY)

    turbo = infos["turbo"]
    single = root / "acestep-v15-turbo" / "model.safetensors"
    assert turbo == VariantInfo(
        name="turbo",
        folder=root / "acestep-v15-turbo",
        parameters=parameters,
        storage_dtype="bf16",
        size_bytes=single.stat().st_size,
        hidden_size=64,
        layers=4,
        sharded=False,
    )

    base = infos["base"]
    shards = sorted((root / "acestep-v15-base").glob("model-*-of-00003.safetensors"))
    assert len(shards) == 3
    assert base.parameters == parameters
    assert base.storage_dtype == "fp32"
    assert base.sharded is True
    assert base.size_bytes == sum(shard.stat().st_size for shard in shards)
    assert base.problem == ""

    assert infos["my-finetune"].folder == root / "my-finetune"


def test_parameter_count_matches_a_loaded_model(root):
    model = load_decoder(root, "turbo")
    assert list_variants(root)[0].parameters == sum(p.numel() for p in model.parameters())


def test_list_variants_of_a_missing_root_is_empty(tmp_path):
    assert list_variants(tmp_path / "nowhere") == []


def test_broken_variants_are_listed_with_a_problem_and_hide_nothing(tmp_path):
    write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, seed=1)
    write_checkpoint(tmp_path / "acestep-v15-sft", TINY, seed=2)
    (tmp_path / "acestep-v15-sft" / "config.json").write_text("{oops", encoding="utf-8")
    write_checkpoint(tmp_path / "acestep-v15-base", TINY, seed=3)
    _overwrite_start(tmp_path / "acestep-v15-base" / "model.safetensors")
    write_checkpoint(tmp_path / "acestep-v15-xl-base", TINY, seed=4, dtype=torch.float32, shards=3)
    _truncate(tmp_path / "acestep-v15-xl-base" / "model-00002-of-00003.safetensors")

    infos = {info.name: info for info in list_variants(tmp_path)}
    assert list(infos) == ["turbo", "base", "sft", "xl-base"]
    assert infos["turbo"].problem == ""
    assert infos["turbo"].parameters == _decoder_parameter_count(TINY)
    assert "config.json: not valid JSON" in infos["sft"].problem
    assert "model.safetensors: corrupt safetensors file" in infos["base"].problem
    assert "model-00002-of-00003.safetensors: truncated safetensors file" in infos["xl-base"].problem
    for name in ("sft", "base", "xl-base"):
        assert infos[name].parameters == 0
        assert "\n" not in infos[name].problem


# --- loading --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "stored", "dtype"),
    [
        ("turbo", torch.bfloat16, torch.bfloat16),
        ("turbo", torch.bfloat16, torch.float32),
        ("base", torch.float32, torch.float32),
        ("base", torch.float32, torch.bfloat16),
    ],
)
def test_loaded_values_equal_the_file(root, variant, stored, dtype):
    folder = root / f"acestep-v15-{variant}"
    model = load_decoder(root, variant, dtype=dtype)
    state = model.state_dict()
    assert all(t.dtype == dtype and t.device == torch.device("cpu") for t in state.values())
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())

    in_file = _file_tensors(sorted(folder.glob("*.safetensors")))
    decoder_keys = {key.removeprefix("decoder.") for key in in_file if key.startswith("decoder.")}
    assert set(state) == decoder_keys
    assert {key.split(".")[0] for key in in_file} >= {"encoder", "tokenizer", "detokenizer", "null_condition_emb"}
    for name, tensor in state.items():
        expected = in_file[f"decoder.{name}"]
        assert expected.dtype == stored
        assert torch.equal(tensor, expected.to(dtype)), name


def test_only_decoder_keys_are_read(tmp_path):
    """Non-decoder tensors of any dtype are ignored, as are keys that merely contain 'decoder.'."""
    state = random_state(TINY, seed=5, dtype=torch.bfloat16)
    state["encoder.step_counter"] = torch.arange(5, dtype=torch.int64)
    state["audio_decoder.weight"] = torch.ones(3, 3, dtype=torch.bfloat16)
    write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, state=state)
    model = load_decoder(tmp_path, "turbo", dtype=torch.bfloat16)
    assert torch.equal(model.proj_in[1].weight, state["decoder.proj_in.1.weight"])


# --- broken weight files --------------------------------------------------------------------------------


def _overwrite_start(file: Path, garbage: bytes = b"\xff" * 8, at: int = 0) -> None:
    with file.open("r+b") as handle:
        handle.seek(at)
        handle.write(garbage)


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def test_missing_decoder_key(tmp_path):
    state = random_state(TINY, seed=0, dtype=torch.bfloat16)
    del state["decoder.layers.2.cross_attn.k_proj.weight"]
    write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, state=state)
    message = _load_error(tmp_path, "turbo")
    assert str(tmp_path / "acestep-v15-turbo" / "model.safetensors") in message
    assert "missing decoder tensor 'decoder.layers.2.cross_attn.k_proj.weight'" in message


def test_unexpected_shape(tmp_path):
    state = random_state(TINY, seed=0, dtype=torch.bfloat16)
    state["decoder.layers.1.mlp.up_proj.weight"] = torch.zeros(100, 64, dtype=torch.bfloat16)
    write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, state=state)
    message = _load_error(tmp_path, "turbo")
    assert str(tmp_path / "acestep-v15-turbo" / "model.safetensors") in message
    assert "'decoder.layers.1.mlp.up_proj.weight' has shape [100, 64], config.json implies [128, 64]" in message


def test_more_layers_in_config_than_in_the_weights_is_refused_before_building_them(tmp_path):
    """10**7 layers asked for by a mistyped config.json used to be built (meta tensors, 24 GB of Python
    objects) before the weights were compared with them."""
    folder = write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, state=random_state(TINY, 0, torch.bfloat16))
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"], config["layer_types"] = 10**6, None
    (folder / "config.json").write_text(json.dumps(config))
    message = _load_error(tmp_path, "turbo")
    expected = "num_hidden_layers is 1,000,000 but model.safetensors has decoder tensors of layers 0-3 only"
    assert message == f"{folder / 'config.json'}: {expected}"


def test_unexpected_decoder_key(tmp_path):
    state = random_state(TINY, seed=0, dtype=torch.bfloat16)
    state["decoder.layers.9.extra.weight"] = torch.zeros(2, dtype=torch.bfloat16)
    write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, state=state)
    assert "unexpected decoder tensor 'decoder.layers.9.extra.weight'" in _load_error(tmp_path, "turbo")


def test_integer_decoder_tensor_is_rejected(tmp_path):
    state = random_state(TINY, seed=0, dtype=torch.bfloat16)
    state["decoder.norm_out.weight"] = torch.ones(64, dtype=torch.int32)
    write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, state=state)
    assert "'decoder.norm_out.weight' is stored as I32" in _load_error(tmp_path, "turbo")


def test_shard_listed_in_the_index_is_missing(tmp_path):
    folder = write_checkpoint(tmp_path / "acestep-v15-base", TINY, dtype=torch.float32, shards=3)
    (folder / "model-00003-of-00003.safetensors").unlink()
    message = _load_error(tmp_path, "base")
    assert (
        f"{folder / 'model-00003-of-00003.safetensors'}: shard listed in model.safetensors.index.json is missing"
        in message
    )


def test_index_not_json(tmp_path):
    folder = write_checkpoint(tmp_path / "acestep-v15-base", TINY, dtype=torch.float32, shards=3)
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {', encoding="utf-8")
    message = _load_error(tmp_path, "base")
    assert f"{folder / 'model.safetensors.index.json'}: not valid JSON" in message


def test_index_without_weight_map(tmp_path):
    folder = write_checkpoint(tmp_path / "acestep-v15-base", TINY, dtype=torch.float32, shards=3)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}), encoding="utf-8")
    assert "no 'weight_map' object" in _load_error(tmp_path, "base")


def test_tensor_listed_in_the_index_missing_from_its_shard(tmp_path):
    folder = write_checkpoint(tmp_path / "acestep-v15-base", TINY, dtype=torch.float32, shards=3)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["decoder.norm_out.weight"] = next(
        shard
        for shard in sorted(set(index["weight_map"].values()))
        if "decoder.norm_out.weight" not in _file_tensors([folder / shard])
    )
    index_path.write_text(json.dumps(index))
    message = _load_error(tmp_path, "base")
    assert "tensor 'decoder.norm_out.weight' listed in the shard index is not in the file" in message


def test_no_weight_files(tmp_path):
    folder = write_checkpoint(tmp_path / "acestep-v15-turbo", TINY)
    (folder / "model.safetensors").unlink()
    assert "no model.safetensors or model.safetensors.index.json found" in _load_error(tmp_path, "turbo")


@pytest.mark.parametrize(
    ("garbage", "at", "expected"),
    [
        (b"\xff" * 8, 0, "corrupt safetensors file (header length"),
        (b"\x00\x01garbage", 8, "corrupt safetensors file (header is not valid JSON)"),
        (b"\x02\x00", 0, "corrupt safetensors file (header is not valid JSON)"),
    ],
)
def test_corrupt_safetensors_header(tmp_path, garbage, at, expected):
    folder = write_checkpoint(tmp_path / "acestep-v15-turbo", TINY)
    _overwrite_start(folder / "model.safetensors", garbage, at)
    message = _load_error(tmp_path, "turbo")
    assert f"{folder / 'model.safetensors'}: {expected}" in message


def test_tiny_file(tmp_path):
    folder = write_checkpoint(tmp_path / "acestep-v15-turbo", TINY)
    (folder / "model.safetensors").write_bytes(b"abc")
    assert "corrupt safetensors file (only 3 bytes long)" in _load_error(tmp_path, "turbo")


@pytest.mark.parametrize("shards", [1, 3])
def test_truncated_file(tmp_path, shards):
    folder = write_checkpoint(tmp_path / "acestep-v15-base", TINY, dtype=torch.float32, shards=shards)
    victim = sorted(folder.glob("*.safetensors"))[-1]
    _truncate(victim)
    message = _load_error(tmp_path, "base")
    assert f"{victim}: truncated safetensors file (tensor '" in message
    assert f"the file has {victim.stat().st_size} bytes" in message


@pytest.mark.parametrize("shards", [1, 3])
def test_loading_tells_the_bytes_read_before_each_tensor(tmp_path, shards):
    """A 4.8 GB checkpoint on a cold disk takes minutes: the run shows how much of it was read."""
    folder = write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, shards=shards)
    entries, _ = decoder_entries(folder)
    told = []
    load_decoder(tmp_path, "turbo", on_bytes=lambda done, total: told.append((done, total)))
    total = sum(entry.nbytes for entry in entries)
    stored = _file_tensors(sorted(folder.glob("*.safetensors")))
    assert total == sum(t.numel() * t.element_size() for key, t in stored.items() if key.startswith("decoder."))
    assert [done for done, _ in told] == [sum(entry.nbytes for entry in entries[:n]) for n in range(len(entries))]
    assert {whole for _, whole in told} == {total}


def test_file_truncated_after_its_header_was_read(tmp_path):
    """A file that shrinks between reading the header and reading the data still gives a ModelLoadError."""
    folder = write_checkpoint(tmp_path / "acestep-v15-turbo", TINY)
    entries, _ = decoder_entries(folder)
    _truncate(folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match="truncated safetensors file") as caught:
        dict(iter_decoder_tensors(entries, torch.device("cpu"), torch.float32))
    assert str(folder / "model.safetensors") in str(caught.value)


# --- peak host memory -----------------------------------------------------------------------------------

# ru_maxrss survives fork+exec (a child of a big pytest process starts with the parent's peak), so the
# child resets its own peak (VmHWM) through /proc/self/clear_refs after its imports and reads it back.
_MEASURE = textwrap.dedent(
    """
    import json, sys
    import torch
    from acetui.model import load_decoder

    def kib(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

    dtype = getattr(torch, sys.argv[2])
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = kib("VmRSS")
    assert kib("VmHWM") <= before + 1024, "peak RSS was not reset"
    model = load_decoder(sys.argv[1], "turbo", dtype=dtype)
    touched = sum(float(p.float().sum()) for p in model.parameters())  # every page really in memory
    after = kib("VmHWM")
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"peak_increase": (after - before) * 1024, "model_bytes": model_bytes}))
    """
)


@pytest.fixture(scope="module")
def big_root(tmp_path_factory) -> Path:
    config = DecoderConfig(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=128,
    )
    root = tmp_path_factory.mktemp("big")
    write_checkpoint(root / "acestep-v15-turbo", config, dtype=torch.bfloat16)
    return root


def _peak(root: Path, dtype: str) -> tuple[int, int, int]:
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(root), dtype],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
    )  # fmt: skip
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    file_size = (root / "acestep-v15-turbo" / "model.safetensors").stat().st_size
    return numbers["peak_increase"], numbers["model_bytes"], file_size


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_bf16_load_does_not_hold_the_file_and_an_fp32_copy(big_root):
    peak, model_bytes, file_size = _peak(big_root, "bfloat16")
    assert file_size > 100_000_000
    assert model_bytes > 0.9 * file_size  # the decoder is most of the file, so a copy would show
    assert peak < 1.5 * file_size, (peak, file_size)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_bf16_into_fp32_holds_one_tensor_at_a_time(big_root):
    peak, model_bytes, file_size = _peak(big_root, "float32")
    assert model_bytes > 1.8 * file_size
    assert peak < model_bytes + 0.5 * file_size, (peak, model_bytes, file_size)


def test_tensors_that_share_bytes_are_refused(tmp_path):
    """A header pointing two tensors at overlapping bytes loaded both, one with the other's values."""
    body = (
        b'{"decoder.a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
        b'"decoder.b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}'
    )
    file = tmp_path / "model.safetensors"
    file.write_bytes(len(body).to_bytes(8, "little") + body + bytes(12))
    with pytest.raises(ModelLoadError) as caught:
        read_header(file)
    assert str(caught.value) == f"{file}: corrupt safetensors file (tensors 'decoder.a' and 'decoder.b' share bytes)"
