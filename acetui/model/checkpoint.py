"""Reading decoder tensors out of official ACE-Step 1.5 checkpoints (single file or sharded).

Only keys that start exactly with ``decoder.`` are read; the encoder, tokenizers and the CFG embedding in
the same file are never touched. The safetensors header is parsed and checked here (every tensor's byte
range must lie inside the file, so a truncated download is reported before any data is read), and each
tensor is then read with a plain file read into a staging buffer and converted to the target device and
dtype (on CUDA, uploaded while the next one is read). Nothing is memory-mapped, so host memory holds the
finished model plus one or two staging buffers the size of the largest tensor: never the whole file, nor
an fp32 copy of a bf16 model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from acetui.errors import ModelLoadError
from acetui.jsonfile import read_json
from acetui.model.config import DecoderConfig
from acetui.model.decoder import AceStepDecoder
from acetui.model.variants import resolve_variant
from acetui.pace import Progress
from acetui.units import first_few

DECODER_PREFIX = "decoder."
SINGLE_FILE = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"

# safetensors dtype code -> (torch dtype, short name shown to users). Decoder tensors must use one of these.
STORAGE_DTYPES: dict[str, tuple[torch.dtype, str]] = {
    "BF16": (torch.bfloat16, "bf16"),
    "F16": (torch.float16, "fp16"),
    "F32": (torch.float32, "fp32"),
    "F64": (torch.float64, "fp64"),
}
# Bytes per element of every safetensors dtype, so byte ranges of non-decoder tensors are checked too.
_ITEM_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip
_MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
_LAYER_KEY = re.compile(re.escape(DECODER_PREFIX) + r"layers\.(\d+)\.")


def storage_name(code: str) -> str:
    """``bf16``/``fp32``/... for a safetensors dtype code; unknown codes are shown lower-cased."""
    known = STORAGE_DTYPES.get(code)
    return known[1] if known else code.lower()


@dataclass(frozen=True)
class TensorEntry:
    """Where a tensor lives and what its header says, read without loading the data."""

    key: str
    file: Path
    shape: tuple[int, ...]
    storage_dtype: str
    offset: int = 0  # absolute byte offset of the data in ``file``
    nbytes: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def weight_files(folder: Path) -> tuple[dict[str, Path], bool]:
    """Map each tensor key to its file, from the shard index when there is one; also return "sharded".

    For a single-file checkpoint the map is empty: the keys are in ``model.safetensors``'s header.
    """
    index_path = folder / SHARD_INDEX
    if index_path.is_file():
        index = read_json(index_path, ModelLoadError)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ModelLoadError(f"{index_path}: shard index has no 'weight_map' object of tensor -> file name")
        files = {key: folder / name for key, name in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.is_file():
                raise ModelLoadError(f"{shard}: shard listed in {index_path.name} is missing")
        return files, True
    single = folder / SINGLE_FILE
    if not single.is_file():
        raise ModelLoadError(f"{folder}: no {SINGLE_FILE} or {SHARD_INDEX} found")
    return {}, False


def read_header(file: Path) -> dict[str, TensorEntry]:
    """Every tensor described by the safetensors header of ``file``, each checked to lie inside the file."""

    def corrupt(reason: str) -> ModelLoadError:
        return ModelLoadError(f"{file}: corrupt safetensors file ({reason})")

    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise corrupt(f"only {len(prefix)} bytes long")
            header_bytes = int.from_bytes(prefix, "little")
            if header_bytes > min(_MAX_HEADER_BYTES, size - 8):
                raise corrupt(f"header length {header_bytes} does not fit in a {size}-byte file")
            raw = handle.read(header_bytes)
    except OSError as error:
        raise ModelLoadError(f"{file}: cannot read ({error})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise corrupt("header is not valid JSON") from None
    if not isinstance(header, dict):
        raise corrupt("header is not a JSON object")
    data_start = 8 + header_bytes
    entries = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        entries[key] = _entry(file, key, info, data_start, size, corrupt)
    _check_no_overlap(entries, corrupt)
    return entries


def _check_no_overlap(entries: dict[str, TensorEntry], corrupt) -> None:
    """Two tensors sharing bytes would both load, one with the other's values: the safetensors library
    refuses such a header, and so do we."""
    ordered = sorted(entries.values(), key=lambda entry: entry.offset)
    for before, after in zip(ordered, ordered[1:]):
        if before.offset + before.nbytes > after.offset:
            raise corrupt(f"tensors {before.key!r} and {after.key!r} share bytes")


def _entry(file: Path, key: str, info: Any, data_start: int, size: int, corrupt) -> TensorEntry:
    try:
        code = info["dtype"]
        shape = tuple(info["shape"])
        begin, end = info["data_offsets"]
        valid = (
            isinstance(code, str)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (*shape, begin, end))
            and begin <= end
        )
    except (TypeError, KeyError, ValueError):
        valid = False
    if not valid:
        raise corrupt(f"malformed header entry for tensor {key!r}")
    item = _ITEM_SIZES.get(code)
    if item is not None and (end - begin) != math.prod(shape) * item:
        raise corrupt(
            f"tensor {key!r} has {end - begin} bytes, its shape {list(shape)} {code} needs {math.prod(shape) * item}"
        )
    if data_start + end > size:
        raise ModelLoadError(
            f"{file}: truncated safetensors file (tensor {key!r} ends at byte {data_start + end}, "
            f"the file has {size} bytes)"
        )
    return TensorEntry(key, file, shape, code, data_start + begin, end - begin)


def decoder_entries(folder: Path) -> tuple[list[TensorEntry], bool]:
    """Header facts of every ``decoder.`` tensor in the variant folder, without reading any data."""
    files, sharded = weight_files(folder)
    if sharded:
        by_file: dict[Path, list[str]] = {}
        for key, file in files.items():
            if key.startswith(DECODER_PREFIX):
                by_file.setdefault(file, []).append(key)
    else:
        single = folder / SINGLE_FILE
        by_file = {single: [key for key in read_header(single) if key.startswith(DECODER_PREFIX)]}
    entries: list[TensorEntry] = []
    for file, keys in sorted(by_file.items()):
        header = read_header(file)
        for key in keys:
            if key not in header:
                raise ModelLoadError(f"{file}: tensor {key!r} listed in the shard index is not in the file")
            entry = header[key]
            if entry.storage_dtype not in STORAGE_DTYPES:
                raise ModelLoadError(
                    f"{file}: tensor {key!r} is stored as {entry.storage_dtype}, not a floating-point type "
                    f"({', '.join(STORAGE_DTYPES)})"
                )
            entries.append(entry)
    return entries, sharded


def _read_tensor(handle: BinaryIO, entry: TensorEntry, staging: torch.Tensor | None = None) -> torch.Tensor:
    """The tensor's bytes, viewed as its stored dtype: read into the front of ``staging`` (a reusable
    uint8 buffer at least ``entry.nbytes`` long, so the result is only valid until the next read) or,
    without one, into a fresh buffer of exactly its size."""
    stored = STORAGE_DTYPES[entry.storage_dtype][0]
    if entry.nbytes == 0:
        return torch.empty(entry.shape, dtype=stored)
    buffer = bytearray(entry.nbytes) if staging is None else staging[: entry.nbytes]
    handle.seek(entry.offset)
    count = handle.readinto(buffer if staging is None else buffer.numpy())
    if count != entry.nbytes:
        raise ModelLoadError(
            f"{entry.file}: truncated safetensors file (tensor {entry.key!r} has {count} of {entry.nbytes} bytes)"
        )
    if staging is not None:
        return buffer.view(stored).reshape(entry.shape)
    return torch.frombuffer(buffer, dtype=stored).reshape(entry.shape)


def iter_decoder_tensors(
    entries: list[TensorEntry], device: torch.device, dtype: torch.dtype, on_bytes: Progress | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name without ``decoder.``, tensor on device in dtype), one stored tensor in memory at a time;
    ``on_bytes`` is told (stored bytes read, stored bytes to read) before each tensor is read.

    Every tensor is read into a staging buffer the size of the largest, so there is no per-tensor host
    allocation. On the CPU it is converted from there into its final tensor. On CUDA two pinned buffers
    alternate: the stored bytes go to the GPU asynchronously while the next tensor is read from disk,
    and any dtype conversion (fp32 shards to bf16) runs on the GPU, not in a host-side temporary.
    """
    handles: dict[Path, BinaryIO] = {}
    largest = max((entry.nbytes for entry in entries), default=0)
    cuda = device.type == "cuda"
    stagings = [torch.empty(largest, dtype=torch.uint8, pin_memory=cuda and largest > 0) for _ in range(1 + cuda)]
    uploads: list[torch.cuda.Event | None] = [None] * len(stagings)
    total = sum(entry.nbytes for entry in entries)
    done = 0
    try:
        for number, entry in enumerate(entries):
            if on_bytes is not None:
                on_bytes(done, total)
            done += entry.nbytes
            if entry.file not in handles:
                try:
                    handles[entry.file] = entry.file.open("rb")
                except OSError as error:
                    raise ModelLoadError(f"{entry.file}: cannot read ({error})") from None
            slot = number % len(stagings)
            if uploads[slot] is not None:
                uploads[slot].synchronize()  # the buffer's previous upload must finish before it is refilled
            try:
                stored = _read_tensor(handles[entry.file], entry, stagings[slot])
            except OSError as error:
                raise ModelLoadError(f"{entry.file}: cannot read tensor {entry.key!r} ({error})") from None
            if cuda:
                tensor = stored.to(device, non_blocking=True).to(dtype)
                uploads[slot] = torch.cuda.Event()
                uploads[slot].record()
            else:
                tensor = torch.empty(entry.shape, dtype=dtype)
                tensor.copy_(stored)  # the stored bytes, converted once, into the tensor's final place
            del stored
            yield entry.key[len(DECODER_PREFIX) :], tensor
    finally:
        for upload in uploads:
            if upload is not None:
                upload.synchronize()
        for handle in handles.values():
            handle.close()


def _check_layer_count(config: DecoderConfig, entries: list[TensorEntry], source: Path, config_file: Path) -> None:
    """No more layers than the weights have tensors for, checked before the model is built: a mistyped
    ``num_hidden_layers`` (10**7) would otherwise fill the memory with empty layers first. Fewer layers, or
    gaps, are named tensor by tensor once the model is built (``_check_keys``)."""
    layers = {int(found.group(1)) for entry in entries if (found := _LAYER_KEY.match(entry.key))}
    held = max(layers) + 1 if layers else 0
    if config.num_hidden_layers > held:
        has = f"decoder tensors of layers 0-{held - 1} only" if held else "no decoder layer tensors"
        raise ModelLoadError(
            f"{config_file}: num_hidden_layers is {config.num_hidden_layers:,} but {source.name} has {has}"
        )


def _check_keys(model: AceStepDecoder, entries: list[TensorEntry], source: Path) -> None:
    """Names and shapes in the file(s) must be exactly the decoder's; ``source`` names the weights."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    found = {entry.key[len(DECODER_PREFIX) :]: entry for entry in entries}
    missing = sorted(set(expected) - set(found))
    if missing:
        named = first_few([f"'decoder.{name}'" for name in missing], 1)
        raise ModelLoadError(f"{source}: missing decoder tensor {named}")
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
    on_bytes: Progress | None = None,
) -> AceStepDecoder:
    """Build the decoder of ``variant`` under ``checkpoint_dir`` with its official weights, frozen, in eval mode;
    ``on_bytes`` follows the reading of the weights (``iter_decoder_tensors``)."""
    folder = resolve_variant(Path(checkpoint_dir), variant)
    config = DecoderConfig.from_json_file(folder / "config.json")
    target = torch.device(device)
    entries, sharded = decoder_entries(folder)
    source = folder / (SHARD_INDEX if sharded else SINGLE_FILE)
    _check_layer_count(config, entries, source, folder / "config.json")
    with torch.device("meta"):
        model = AceStepDecoder(config)
    _check_keys(model, entries, source)
    state = dict(iter_decoder_tensors(entries, target, dtype, on_bytes))
    model.load_state_dict(state, assign=True)
    model.requires_grad_(False)
    return model.eval()


def decoder_config(checkpoint_dir: str | Path, variant: str) -> DecoderConfig:
    """The config of a variant, for callers that need geometry before (or without) loading weights."""
    folder = resolve_variant(Path(checkpoint_dir), variant)
    return DecoderConfig.from_json_file(folder / "config.json")
