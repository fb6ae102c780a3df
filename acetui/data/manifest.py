"""A dataset folder's optional ``manifest.json``.

When it exists, Side-Step trains on the samples its ``samples`` list names instead of scanning the
folder, so acetui estimates on the same samples and says so. Entries are normalised as Side-Step does:
non-strings and blanks dropped, backslashes turned into ``/``, relative paths resolved against the
folder. A manifest that is not a readable file, not valid JSON, or has no ``samples`` list, is ignored
with a note and the folder is scanned instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acetui.data.files import read_optional_json
from acetui.errors import DatasetError

MANIFEST = "manifest.json"
_IGNORED = "ignored; the folder was scanned instead"


@dataclass(frozen=True)
class ManifestListing:
    """``paths`` is None when the folder should be scanned; ``note`` tells the user what was used."""

    paths: tuple[Path, ...] | None
    note: str = ""


def read_manifest(folder: Path) -> ManifestListing:
    path = folder / MANIFEST
    paths, note = read_optional_json(path, _listed_paths, _IGNORED)
    if paths is None:
        return ManifestListing(None, note)
    return ManifestListing(paths, f"samples taken from {path} ({len(paths)} listed), as Side-Step does")


def _listed_paths(path: Path, data: Any) -> tuple[Path, ...]:
    """The sample paths a manifest lists, normalised as Side-Step does; DatasetError without a list."""
    entries = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: no 'samples' list")
    paths: list[Path] = []
    for entry in entries:
        if isinstance(entry, str) and entry.strip():
            listed = _expanded(Path(entry.strip().replace("\\", "/")), path)
            resolved = listed if listed.is_absolute() else path.parent / listed
            if resolved not in paths:
                paths.append(resolved)
    return tuple(paths)


def _expanded(listed: Path, manifest: Path) -> Path:
    """``~`` and ``~user`` expanded; DatasetError naming the manifest for a ``~user`` with no home."""
    try:
        return listed.expanduser()
    except RuntimeError:
        raise DatasetError(f"{manifest}: cannot expand {listed} (no such user's home folder)") from None
