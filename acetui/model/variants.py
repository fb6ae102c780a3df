"""Finding model variants inside a checkpoints root by folder name (no file is opened here)."""

from __future__ import annotations

from pathlib import Path

from acetui.errors import ModelLoadError
from acetui.folders import check_folder

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
CONFIG_FILE = "config.json"


def variant_folder_name(name: str) -> str:
    """Short official names map to ``acestep-v15-<name>``; anything else is taken as a folder name."""
    return f"{FOLDER_PREFIX}{name}" if name in OFFICIAL_VARIANTS else name


def short_name(folder_name: str) -> str:
    """The name a user types for a folder: ``acestep-v15-turbo`` -> ``turbo``; custom folders keep theirs."""
    short = folder_name.removeprefix(FOLDER_PREFIX)
    return short if folder_name.startswith(FOLDER_PREFIX) and short in OFFICIAL_VARIANTS else folder_name


def variant_folders(root: Path) -> list[Path]:
    """Every sub-folder of ``root`` holding a config.json, and everything named like an official variant
    folder (``acestep-v15-...``) even when it is not one (a dangling link, a config.json that is a folder),
    so that it is listed with its problem instead of missing without a word; official variants first (in
    their order), then by name."""
    try:
        folders = [
            child
            for child in root.iterdir()
            if (child.name.startswith(FOLDER_PREFIX) and not child.is_file())
            or (child.is_dir() and (child / CONFIG_FILE).is_file())
        ]
    except OSError:
        return []
    order = {name: index for index, name in enumerate(OFFICIAL_VARIANTS)}
    return sorted(folders, key=lambda f: (order.get(short_name(f.name), len(order)), short_name(f.name)))


def own_root(variant: str) -> Path | None:
    """The root a variant given by its absolute path (a fine-tune stored elsewhere) stands in, which needs
    no ``--checkpoint-dir``: its parent folder. None for a variant named under a root."""
    path = Path(variant)
    return path.parent if path.is_absolute() else None


def resolve_variant(root: Path, variant: str) -> Path:
    """The folder of ``variant`` under ``root``; it must hold ``config.json``."""
    check_folder(root, ModelLoadError, "checkpoint root")
    folder = root / variant_folder_name(variant)
    if not folder.is_dir():
        found = ", ".join(short_name(f.name) for f in variant_folders(root)) or "none"
        raise ModelLoadError(f"{folder}: variant {variant!r} not found in {root} (found: {found})")
    if not (folder / CONFIG_FILE).is_file():
        raise ModelLoadError(f"{folder}: no {CONFIG_FILE}, so this is not a model variant folder")
    return folder
