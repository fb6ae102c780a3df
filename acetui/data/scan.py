"""Checking a whole dataset folder up front, so every bad file is reported before the model loads.

Each ``.pt`` is validated by ``load_sample`` itself (one code path for scanning and estimating); a bad
file becomes a listed problem rather than an error, so a user sees all of them in one go.
"""

from __future__ import annotations

import statistics
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acetui.data.files import folder_entries, read_optional_json, regular_file
from acetui.data.manifest import MANIFEST, read_manifest
from acetui.data.samples import Sample, SampleFileError, SampleInfo, load_sample
from acetui.data.scan_cache import ScanCache
from acetui.errors import DatasetError, printable
from acetui.file_cache import FileKey
from acetui.pace import Progress
from acetui.units import first_few, format_duration, plural


@dataclass(frozen=True)
class SampleProblem:
    """A ``.pt`` file that cannot be used, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{printable(self.path.name)}: {self.reason}"


FILES_NAMED = 3  # files a one-line note names (bad files of one reason, far longer samples); the rest counted


@dataclass(frozen=True)
class ProblemGroup:
    """The ``.pt`` files that share one reason: 500 truncated files read as one line, not 500."""

    reason: str
    paths: tuple[Path, ...]

    @property
    def label(self) -> str:
        """What the line starts with: the file's name when it is alone (as a SampleProblem), else the count."""
        return printable(self.paths[0].name) if len(self.paths) == 1 else plural(len(self.paths), "file")

    def names(self, limit: int | None = FILES_NAMED) -> str:
        """The first ``limit`` names and "and N more", or every name with None; "" for one file, which
        ``label`` already names."""
        if len(self.paths) == 1:
            return ""
        return first_few([printable(path.name) for path in self.paths], limit)

    def line(self, limit: int | None = FILES_NAMED) -> str:
        names = self.names(limit)
        return f"{self.label}: {self.reason}: {names}" if names else f"{self.label}: {self.reason}"

    def __str__(self) -> str:
        return self.line()


@dataclass(frozen=True)
class DatasetScan:
    """What a dataset folder holds: valid samples, unusable ``.pt`` files and everything else."""

    folder: Path
    samples: tuple[SampleInfo, ...]
    problems: tuple[SampleProblem, ...]
    other_files: tuple[Path, ...]
    preprocessed_variant: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def total_seconds(self) -> float:
        return sum(info.seconds for info in self.samples)

    @property
    def min_seconds(self) -> float:
        return min((info.seconds for info in self.samples), default=0.0)

    @property
    def max_seconds(self) -> float:
        return max((info.seconds for info in self.samples), default=0.0)

    @property
    def condition_lengths(self) -> tuple[int, int]:
        """Shortest and longest condition sequence, (0, 0) without samples."""
        lengths = [info.condition_length for info in self.samples]
        return (min(lengths), max(lengths)) if lengths else (0, 0)

    def problem_groups(self) -> tuple[ProblemGroup, ...]:
        """The problems grouped by reason, for the CLI and the app alike: the largest group first (3,000 files
        made for another model come before two truncated ones), then in order of each reason's first file."""
        groups: dict[str, list[Path]] = {}
        for problem in self.problems:
            groups.setdefault(problem.reason, []).append(problem.path)
        ordered = sorted(groups.items(), key=lambda group: -len(group[1]))  # stable: ties keep file order
        return tuple(ProblemGroup(reason, tuple(paths)) for reason, paths in ordered)

    def require_samples(self) -> None:
        """Raise DatasetError when there is nothing to estimate on, naming the first problem."""
        if self.samples:
            return
        if not self.problems:
            raise DatasetError(f"{self.folder}: no valid samples")
        problems = plural(len(self.problems), "problem file")
        raise DatasetError(f"{self.folder}: no valid samples ({problems}; first: {self.problems[0]})")

    def summary(self) -> str:
        """One line for a status bar or the CLI; zero counts of problems and other files are left out."""
        parts = [plural(len(self.samples), "sample")]
        if self.samples:
            low, high = self.condition_lengths
            parts.append(
                f"{format_duration(self.total_seconds)} total ({self.min_seconds:.1f}-{self.max_seconds:.1f} s)"
            )
            parts.append(f"condition length {low}" if low == high else f"condition length {low}-{high}")
        if self.problems:
            parts.append(plural(len(self.problems), "problem file"))
        if self.other_files:
            parts.append(plural(len(self.other_files), "other file"))
        return ", ".join(parts)


def scan_dataset(
    folder: Path,
    *,
    condition_width: int | None = None,
    context_channels: int = 128,
    on_file: Progress | None = None,
) -> DatasetScan:
    """Validate every top-level ``*.pt`` in name order (or the samples a ``manifest.json`` lists, in its order);
    raise DatasetError only if the folder itself is unusable.
    A sample unchanged since an earlier scan for the same widths is taken from ``ScanCache``, not read.
    ``on_file`` is told (files scanned, files to scan) before each file is looked at."""
    entries = folder_entries(folder)
    # every *.pt name is a candidate whatever it is: load_sample names a link, folder or pipe as a problem
    candidates = [entry for entry in entries if entry.name.endswith(".pt")]
    others = tuple(entry for entry in entries if not entry.name.endswith(".pt") and entry.is_file())
    manifest = read_manifest(folder)
    notes = [manifest.note] if manifest.note else []
    if manifest.paths is not None:
        if not manifest.paths:
            raise DatasetError(f"{folder / MANIFEST}: lists no samples")
        unlisted = [path for path in candidates if path not in manifest.paths]
        if unlisted:
            notes.append(f"{plural(len(unlisted), '.pt file')} in {folder} not listed in {MANIFEST}, not used")
        candidates = list(manifest.paths)
    if not candidates:
        raise DatasetError(f"{folder}: no .pt files (found {plural(len(others), 'other file')})")
    samples: list[SampleInfo] = []
    problems: list[SampleProblem] = []
    cache = ScanCache(folder, condition_width, context_channels)
    try:
        for number, path in enumerate(candidates):
            if on_file is not None:
                on_file(number, len(candidates))
            found = _scan_file(path, cache, condition_width, context_channels)
            if isinstance(found, SampleProblem):
                problems.append(found)
            else:
                samples.append(found)
    finally:  # what a stopped scan read is kept too
        cache.save(candidates)
    variant, meta_note = _preprocessed_variant(folder)
    notes += [meta_note] if meta_note else []
    long_note = _long_samples_note(samples)
    notes += [long_note] if long_note else []
    return DatasetScan(folder, tuple(samples), tuple(problems), others, variant, tuple(notes))


def _scan_file(
    path: Path, cache: ScanCache, condition_width: int | None, context_channels: int
) -> SampleInfo | SampleProblem:
    """The sizes of a valid sample, from ``cache`` while its file is unchanged, or why it cannot be used."""
    found = regular_file(path)
    if isinstance(found, str):
        return SampleProblem(path, found)
    key = FileKey.of(found)  # before the read: a file replaced meanwhile is read again next time
    cached = cache.get(path, key)
    if cached is not None:
        return cached
    try:
        sample = load_sample(path, condition_width=condition_width, context_channels=context_channels, status=found)
    except SampleFileError as error:
        return SampleProblem(path, error.reason)
    width = sample.encoder_hidden_states.shape[1]
    info = SampleInfo(path, sample.frames, sample.condition_length, width, sample.size_bytes, _content_digest(sample))
    cache.put(key, info)
    return info


def _content_digest(sample: Sample) -> str:
    """CRC-32 of every tensor the model reads from ``sample``, as loaded (float32, contiguous, on the CPU):
    a file replaced by one of the same name and sizes is told apart without reading it a second time.
    What it guards against is an accident, not an adversary, so the checksum is CRC-32: 0.8 ms for a
    5.6 MB sample where SHA-256 took 2.7 ms and loading it 1.4 ms."""
    checksum = 0
    for tensor in sample.tensors:
        checksum = zlib.crc32(tensor.numpy(), checksum)
    return f"{checksum:08x}"


# A batch is padded to its longest sample, so a sample far longer than the rest needs that much more
# memory: a mistaken file (a whole album, a "decompression bomb" .pt) then fails with out-of-memory
# batches into the run. Song datasets that mix 30 s clips with 4 min songs stay within 8x the median;
# under a minute a sample's activations stay small (~1.7 GiB on the 2B decoder) whatever the median,
# so a test set of few-second clips does not warn about a 20 s one.
LONG_SAMPLE_RATIO = 8
LONG_SAMPLE_SECONDS = 60


def _long_samples_note(samples: list[SampleInfo]) -> str | None:
    """One line naming the samples far longer than the median (the longest few), or None."""
    if not samples:
        return None
    median = statistics.median(info.seconds for info in samples)
    threshold = max(LONG_SAMPLE_RATIO * median, LONG_SAMPLE_SECONDS)
    long = sorted((info for info in samples if info.seconds > threshold), key=lambda info: -info.frames)
    if not long:
        return None
    of_median = f"the median sample ({format_duration(median)})"
    if len(long) == 1:
        (info,) = long
        return (
            f"{printable(info.path.name)}: {format_duration(info.seconds)}, {info.seconds / median:.0f}x "
            f"{of_median}; its batches need about that much more memory"
        )
    each = [
        f"{printable(info.path.name)} {format_duration(info.seconds)} ({info.seconds / median:.0f}x)" for info in long
    ]
    named = first_few(each, FILES_NAMED)
    return f"{len(long)} samples far longer than {of_median}: {named}; their batches need about that much more memory"


PREPROCESS_META = "preprocess_meta.json"


def _preprocessed_variant(folder: Path) -> tuple[str | None, str]:
    """The ``model_variant`` Side-Step records in ``preprocess_meta.json`` (the condition states in the
    samples come from that variant's encoder), and a note when the file exists but cannot be used.
    Without the file, or without the key, the variant is simply unknown."""
    ignored = "ignored; the variant the samples were preprocessed with is unknown"
    return read_optional_json(folder / PREPROCESS_META, _model_variant, ignored)


def _model_variant(path: Path, meta: Any) -> str | None:
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: not a JSON object")
    variant = meta.get("model_variant")
    if variant is not None and not (isinstance(variant, str) and variant.strip()):
        raise DatasetError(f"{path}: 'model_variant' is not a variant name")
    return variant
