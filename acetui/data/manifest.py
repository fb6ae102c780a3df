"""A dataset folder's optional ``manifest.json``.

When it exists, Side-Step trains on the samples its ``samples`` list names instead of scanning the
folder, so acetui estimates on the same samples and says so. Entries are normalised as Side-Step does:
non-strings and blanks dropped, backslashes turned into ``/``, relative paths resolved against the
folder. A manifest that is not valid JSON, or has no ``samples`` list, is ignored with a note and the
folder is scanned instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ManifestListing:
    """``paths`` is None when the folder should be scanned; ``note`` tells the user what was used."""

    paths: tuple[Path, ...] | None
    note: str = ""


def read_manifest(folder: Path) -> ManifestListing:
    path = folder / MANIFEST
    if not path.is_file():
        return ManifestListing(None)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return ManifestListing(None, f"{path}: not valid JSON, ignored; the folder was scanned instead")
    entries = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return ManifestListing(None, f"{path}: no 'samples' list, ignored; the folder was scanned instead")
    paths: list[Path] = []
    for entry in entries:
        if isinstance(entry, str) and entry.strip():
            listed = Path(entry.strip().replace("\\", "/")).expanduser()
            resolved = listed if listed.is_absolute() else folder / listed
            if resolved not in paths:
                paths.append(resolved)
    return ManifestListing(tuple(paths), f"samples taken from {path} ({len(paths)} listed), as Side-Step does")
