"""Reading decoder tensors out of official ACE-Step 1.5 checkpoints (single file or sharded).

Only keys that start exactly with ``decoder.`` are read; the encoder, tokenizers and the CFG embedding in
the same file are never touched. Tensors are read one at a time and moved straight to the target device
and dtype, so host memory never holds the whole file or an fp32 copy of a bf16 model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from acetui.errors import ModelLoadError
from acetui.model.config import DecoderConfig
from acetui.model.decoder import AceStepDecoder
from acetui.model.variants import resolve_variant

DECODER_PREFIX = "decoder."
SINGLE_FILE = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorEntry:
    """Where a tensor lives and what its header says, read without loading the data."""

    key: str
    file: Path
    shape: tuple[int, ...]
    storage_dtype: str


def weight_files(folder: Path) -> tuple[dict[str, Path], bool]:
    """Map each tensor key to its file, from the shard index when there is one; also return "sharded"."""
    index_path = folder / SHARD_INDEX
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            weight_map = index["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ModelLoadError(f"{index_path}: not a valid shard index ({error})") from None
        files = {key: folder / str(name) for key, name in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.is_file():
                raise ModelLoadError(f"{shard}: shard listed in {index_path.name} is missing")
        return files, True
    single = folder / SINGLE_FILE
    if not single.is_file():
        raise ModelLoadError(f"{folder}: no {SINGLE_FILE} or {SHARD_INDEX} found")
    return {}, False


def _open(file: Path, stack: ExitStack, device: str = "cpu"):
    try:
        return stack.enter_context(safe_open(str(file), framework="pt", device=device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"{file}: corrupt or unreadable safetensors file ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def decoder_entries(folder: Path) -> tuple[list[TensorEntry], bool]:
    """Header facts of every ``decoder.`` tensor in the variant folder, without reading any data."""
    files, sharded = weight_files(folder)
    entries: list[TensorEntry] = []
    with ExitStack() as stack:
        if sharded:
            by_file: dict[Path, list[str]] = {}
            for key, file in files.items():
                if key.startswith(DECODER_PREFIX):
                    by_file.setdefault(file, []).append(key)
            groups = sorted(by_file.items())
        else:
            single = folder / SINGLE_FILE
            handle = _open(single, stack)
            groups = [(single, [k for k in handle.keys() if k.startswith(DECODER_PREFIX)])]
        for file, keys in groups:
            handle = _open(file, stack)
            available = set(handle.keys())
            for key in keys:
                if key not in available:
                    raise ModelLoadError(f"{file}: tensor {key!r} listed in the shard index is not in the file")
                view = handle.get_slice(key)
                entries.append(TensorEntry(key, file, tuple(view.get_shape()), str(view.get_dtype())))
    return entries, sharded


def iter_decoder_tensors(
    entries: list[TensorEntry], device: torch.device, dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name without ``decoder.``, tensor on device in dtype), one tensor in memory at a time."""
    with ExitStack() as stack:
        handles = {}
        for entry in entries:
            if entry.file not in handles:
                handles[entry.file] = _open(entry.file, stack)
            try:
                tensor = handles[entry.file].get_tensor(entry.key)
            except (SafetensorError, OSError, RuntimeError, ValueError) as error:
                raise ModelLoadError(
                    f"{entry.file}: cannot read tensor {entry.key!r} ({_first_line(error)})"
                ) from None
            yield entry.key[len(DECODER_PREFIX):], tensor.to(device=device, dtype=dtype)
            del tensor


def _check_keys(model: AceStepDecoder, entries: list[TensorEntry], folder: Path) -> None:
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    found = {entry.key[len(DECODER_PREFIX):]: entry for entry in entries}
    missing = sorted(set(expected) - set(found))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ModelLoadError(f"{folder}: missing decoder tensor 'decoder.{missing[0]}'{more}")
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise ModelLoadError(
            f"{found[unexpected[0]].file}: unexpected decoder tensor 'decoder.{unexpected[0]}' for this config.json"
        )
    for name, shape in expected.items():
        entry = found[name]
        if entry.shape != shape:
            raise ModelLoadError(
                f"{entry.file}: tensor 'decoder.{name}' has shape {list(entry.shape)}, "
                f"config.json implies {list(shape)}"
            )


def load_decoder(
    checkpoint_dir: str | Path,
    variant: str,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> AceStepDecoder:
    """Build the decoder of ``variant`` under ``checkpoint_dir`` with its official weights, frozen, in eval mode."""
    folder = resolve_variant(Path(checkpoint_dir), variant)
    config = DecoderConfig.from_json_file(folder / "config.json")
    target = torch.device(device)
    with torch.device("meta"):
        model = AceStepDecoder(config)
    entries, _ = decoder_entries(folder)
    _check_keys(model, entries, folder)
    state = dict(iter_decoder_tensors(entries, target, dtype))
    model.load_state_dict(state, assign=True)
    model.requires_grad_(False)
    return model.eval()


def decoder_config(checkpoint_dir: str | Path, variant: str) -> DecoderConfig:
    """The config of a variant, for callers that need geometry before (or without) loading weights."""
    folder = resolve_variant(Path(checkpoint_dir), variant)
    return DecoderConfig.from_json_file(folder / "config.json")
