"""Describing the variants of a checkpoints root for a picker, from config.json and weight headers only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from acetui.errors import ModelLoadError
from acetui.folders import cannot_read, not_found
from acetui.model.checkpoint import SINGLE_FILE, decoder_entries, storage_name, weight_files
from acetui.model.config import DecoderConfig
from acetui.model.variants import CONFIG_FILE, short_name, variant_folders


@dataclass(frozen=True)
class VariantInfo:
    """What a picker shows for one variant; ``problem`` is set instead of the numbers when it is unusable."""

    name: str
    folder: Path
    parameters: int = 0  # decoder parameters only
    storage_dtype: str = ""  # of the decoder tensors: "bf16", "fp32", or e.g. "bf16/fp32" when mixed
    size_bytes: int = 0  # every weight file of the variant (encoder etc. included), as stored on disk
    hidden_size: int = 0
    layers: int = 0
    sharded: bool = False
    problem: str = ""


def describe_variant(folder: Path) -> VariantInfo:
    """Read config.json and the safetensors headers (no tensor data) of one variant folder."""
    name = short_name(folder.name)
    if folder.is_symlink() and not folder.exists():
        return VariantInfo(name, folder, problem=f"{folder}: {not_found(folder, 'folder')}")
    try:
        config = DecoderConfig.from_json_file(folder / CONFIG_FILE)
        entries, sharded = decoder_entries(folder)
        files = set(weight_files(folder)[0].values()) if sharded else {folder / SINGLE_FILE}
        size = sum(file.stat().st_size for file in files)
    except ModelLoadError as error:
        return VariantInfo(name, folder, problem=str(error))
    except OSError as error:
        return VariantInfo(name, folder, problem=f"{error.filename or folder}: {cannot_read(error)}")
    return VariantInfo(
        name=name,
        folder=folder,
        parameters=sum(entry.numel for entry in entries),
        storage_dtype="/".join(sorted({storage_name(entry.storage_dtype) for entry in entries})),
        size_bytes=size,
        hidden_size=config.hidden_size,
        layers=config.num_hidden_layers,
        sharded=sharded,
    )


def list_variants(root: Path) -> list[VariantInfo]:
    """Every folder of ``root`` that ``variant_folders`` finds (a config.json, or an official variant's
    name), described; official names first.

    A broken variant is listed with ``problem`` set; it never hides the others. A missing root gives [].
    """
    return [describe_variant(folder) for folder in variant_folders(Path(root))]
