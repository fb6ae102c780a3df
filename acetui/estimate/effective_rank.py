"""Effective rank of the pretrained projection weights, the spectral half of a rank budget.

A module's effective rank is the number of singular values of its weight W needed for 95 % of the
"energy" sum(s_i^2) = ||W||_F^2: the smallest k with s_1^2 + ... + s_k^2 >= 0.95 * sum(s_i^2). A weight
with a few dominant directions has a small effective rank; a near-isotropic one has a rank close to
min(out, in). The value depends only on the checkpoint, so it is computed once (one tensor in memory at a
time, read straight from the safetensors files) and cached as JSON in ``app_dirs().effective_rank``. The
cache file is named by a hash of every weight file's resolved path, size and mtime (plus the energy
threshold), so replacing or touching a weight file makes a fresh computation.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from acetui import paths
from acetui.atomic import write_text_atomic
from acetui.errors import AcetuiError
from acetui.model.checkpoint import TensorEntry, decoder_entries, iter_decoder_tensors
from acetui.model.variants import resolve_variant

ENERGY = 0.95
CACHE_FORMAT = "acetui-effective-rank/1"
UNKNOWN = -1  # Side-Step's sentinel for "no spectral data"
_PROJECTION_WEIGHT = re.compile(r"^(decoder\.layers\.\d+\.(?:self_attn|cross_attn|mlp)\.\w+_proj)\.weight$")


def effective_rank_of(weight: torch.Tensor, energy: float = ENERGY) -> int:
    """Singular values of ``weight`` (any float dtype, computed in fp32) needed for ``energy`` of the
    sum of squared singular values; 0 for an all-zero matrix."""
    if weight.ndim != 2:
        raise ValueError(f"effective rank needs a matrix, got shape {list(weight.shape)}")
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    squares = torch.linalg.svdvals(weight.detach().float()).double().square()
    cumulative = squares.cumsum(0)
    total = float(cumulative[-1]) if cumulative.numel() else 0.0
    if total <= 0.0:
        return 0
    # Tolerance so that an exact 95 % split is not lost to rounding in the cumulative sum.
    needed = torch.searchsorted(cumulative, torch.tensor([energy * total * (1 - 1e-12)], dtype=torch.float64))
    return min(int(needed) + 1, squares.numel())


def projection_entries(folder: Path) -> dict[str, TensorEntry]:
    """``decoder.layers.N.<block>.<x>_proj`` -> header entry of its ``.weight``, for every projection."""
    entries, _ = decoder_entries(folder)
    found = {}
    for entry in entries:
        match = _PROJECTION_WEIGHT.match(entry.key)
        if match:
            found[match.group(1)] = entry
    return found


def cache_path(entries: Iterable[TensorEntry], energy: float = ENERGY) -> Path:
    """The cache file for a set of weight files: keyed by each file's resolved path, size and mtime."""
    stamps = []
    for file in sorted({entry.file for entry in entries}):
        stat = file.stat()
        stamps.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
    key = json.dumps({"files": stamps, "energy": energy}, sort_keys=True)
    return paths.app_dirs().effective_rank / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _read_cache(path: Path) -> dict[str, int]:
    """Cached ranks, or {} when the file is missing or unreadable (it is then simply rebuilt)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("ranks"), dict):
        return {}
    return {name: value for name, value in data["ranks"].items() if isinstance(value, int) and value >= 0}


def effective_ranks(
    checkpoint_dir: str | Path,
    variant: str,
    modules: Iterable[str] | None = None,
    *,
    energy: float = ENERGY,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Effective rank of each projection (names with the ``decoder.`` prefix, as in run results).

    ``modules`` defaults to every attention and MLP projection of the variant. Names that are not a
    projection weight of this checkpoint get ``UNKNOWN`` (-1). Only modules missing from the cache are
    computed; ``progress(done, todo)`` is called after each. Raises ModelLoadError for unreadable weights.
    """
    folder = resolve_variant(Path(checkpoint_dir).expanduser(), variant)
    available = projection_entries(folder)
    wanted = list(available) if modules is None else list(modules)
    path = cache_path(available.values(), energy)
    cached = _read_cache(path)
    missing = [name for name in dict.fromkeys(wanted) if name in available and name not in cached]
    if missing:
        target = torch.device(device)
        entries = [available[name] for name in missing]
        for done, (name, weight) in enumerate(iter_decoder_tensors(entries, target, torch.float32), start=1):
            cached[f"decoder.{name.removesuffix('.weight')}"] = effective_rank_of(weight, energy)
            del weight
            if progress is not None:
                progress(done, len(missing))
        ranks = dict(sorted(cached.items()))
        record = {"format": CACHE_FORMAT, "folder": str(folder), "energy": energy, "ranks": ranks}
        try:
            write_text_atomic(path, json.dumps(record, indent=1) + "\n")
        except AcetuiError:
            pass  # an unwritable cache only costs a recomputation next time
    return {name: cached.get(name, UNKNOWN) for name in wanted}
