"""Finding model variants inside a checkpoints root and describing them for a picker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from acetui.errors import ModelLoadError

OFFICIAL_VARIANTS = (
    "turbo",
    "base",
    "sft",
    "xl-base",
    "xl-sft",
    "xl-turbo",
    "turbo-shift1",
    "turbo-shift3",
    "turbo-continuous",
)
FOLDER_PREFIX = "acestep-v15-"


def variant_folder_name(name: str) -> str:
    """Short official names map to ``acestep-v15-<name>``; anything else is taken as a folder name."""
    return f"{FOLDER_PREFIX}{name}" if name in OFFICIAL_VARIANTS else name


def resolve_variant(root: Path, variant: str) -> Path:
    """The folder of ``variant`` under ``root``; it must hold ``config.json``."""
    if not root.exists():
        raise ModelLoadError(f"{root}: checkpoint root does not exist")
    if not root.is_dir():
        raise ModelLoadError(f"{root}: checkpoint root is not a directory")
    folder = root / variant_folder_name(variant)
    if not folder.is_dir():
        found = ", ".join(info.name for info in list_variants(root)) or "none"
        raise ModelLoadError(f"{folder}: variant {variant!r} not found in {root} (found: {found})")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder}: no config.json, so this is not a model variant folder")
    return folder


@dataclass(frozen=True)
class VariantInfo:
    """What a picker shows for one variant; ``problem`` is set instead of the numbers when it is unusable."""

    name: str
    folder: Path
    parameters: int = 0
    storage_dtype: str = ""
    size_bytes: int = 0
    hidden_size: int = 0
    layers: int = 0
    sharded: bool = False
    problem: str = ""


def _short_name(folder_name: str) -> str:
    short = folder_name.removeprefix(FOLDER_PREFIX)
    return short if short in OFFICIAL_VARIANTS and folder_name.startswith(FOLDER_PREFIX) else folder_name


def describe_variant(folder: Path) -> VariantInfo:
    """Read config.json and the safetensors headers (no tensor data) of one variant folder."""
    from acetui.model.checkpoint import decoder_entries
    from acetui.model.config import DecoderConfig

    name = _short_name(folder.name)
    try:
        config = DecoderConfig.from_json_file(folder / "config.json")
        entries, sharded = decoder_entries(folder)
    except ModelLoadError as error:
        return VariantInfo(name, folder, problem=str(error))
    files = {entry.file for entry in entries} or set(folder.glob("*.safetensors"))
    dtypes = sorted({entry.storage_dtype for entry in entries})
    return VariantInfo(
        name=name,
        folder=folder,
        parameters=sum(_numel(entry.shape) for entry in entries),
        storage_dtype="/".join(STORAGE_NAMES.get(d, d.lower()) for d in dtypes),
        size_bytes=sum(file.stat().st_size for file in files),
        hidden_size=config.hidden_size,
        layers=config.num_hidden_layers,
        sharded=sharded,
    )


STORAGE_NAMES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64"}


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def list_variants(root: Path) -> list[VariantInfo]:
    """Every sub-folder of ``root`` that holds a config.json, described; official names first."""
    if not root.is_dir():
        return []
    try:
        folders = [child for child in root.iterdir() if child.is_dir() and (child / "config.json").is_file()]
    except OSError:
        return []
    infos = [describe_variant(folder) for folder in folders]
    order = {name: index for index, name in enumerate(OFFICIAL_VARIANTS)}
    return sorted(infos, key=lambda info: (order.get(info.name, len(order)), info.name))
