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


def variant_label(variant: str) -> str:
    """A run's variant where space is short (tables, headings): a fine-tune given by its path goes by its
    folder's name (``/data/ft/acestep-v15-base`` -> ``base``), so its path does not fill the table."""
    return short_name(Path(variant).name) or variant


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


def own_folder(variant: str) -> Path | None:
    """The folder of a variant given by its path (a fine-tune stored elsewhere), which needs no checkpoints
    root: an absolute path, or a relative one through a folder that is there (``ckpt/acestep-v15-base``),
    made absolute. None for a variant named under a root (``turbo``, ``my-finetune``)."""
    path = Path(variant).expanduser()
    if path.is_absolute() or (len(path.parts) > 1 and path.is_dir()):
        return path.absolute()
    return None


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
