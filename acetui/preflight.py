"""Headless looks at the inputs before a run: the variants of a checkpoints root, the samples of a dataset.

The same facts the app's first two screens show, for a shell on a server (``acetui variants ROOT``,
``acetui scan DATASET``); nothing here loads model weights.
"""

from __future__ import annotations

from pathlib import Path

from acetui.data import DatasetScan, scan_dataset
from acetui.data.scan import FILES_NAMED
from acetui.errors import ModelLoadError, printable
from acetui.estimate.preparation import dataset_warnings
from acetui.folders import check_folder
from acetui.model import list_variants
from acetui.model.checkpoint import decoder_config
from acetui.pace import Progress
from acetui.units import format_bytes


def variants_report(root: Path) -> tuple[str, bool]:
    """A table of the variants under ``root`` and whether any of them is usable."""
    check_folder(root, ModelLoadError, "checkpoint root")
    infos = list_variants(root)
    if not infos:
        return f"{root}: no variant folders (sub-folders holding config.json)\n", False
    lines = [f"{'variant':<18} {'decoder params':>14}  {'dtype':<6} {'on disk':>10}  {'layers x hidden':<15} files"]
    for info in infos:
        if info.problem:
            lines.append(f"{printable(info.name):<18} unusable: {info.problem}")
            continue
        shape = f"{info.layers} x {info.hidden_size}"
        files = "sharded" if info.sharded else "single"
        lines.append(
            f"{printable(info.name):<18} {info.parameters / 1e6:>12.1f} M  {info.storage_dtype:<6} "
            f"{format_bytes(info.size_bytes):>10}  {shape:<15} {files}"
        )
    return "\n".join(lines) + "\n", any(not info.problem for info in infos)


def dataset_report(
    folder: Path,
    root: Path | None = None,
    variant: str | None = None,
    *,
    every_file: bool = False,
    on_file: Progress | None = None,
) -> tuple[str, DatasetScan]:
    """The scan of ``folder`` (checked against ``variant``'s widths when given) as text, and the scan.
    Bad files are grouped by reason, a few named per reason, or ``every_file``. With a variant, the
    warnings are the ones ``estimate`` gives before its run (same function). ``on_file``: the scan's."""
    width, channels = None, 128
    if root is not None and variant is not None:
        config = decoder_config(root, variant)
        width, channels = config.condition_width, config.context_channels
    scan = scan_dataset(folder, condition_width=width, context_channels=channels, on_file=on_file)
    lines = [f"{folder}: {scan.summary()}"]
    limit = None if every_file else FILES_NAMED
    lines += [f"  {group.line(limit)}" for group in scan.problem_groups()]
    if variant is None:
        lines += [f"  note: {note}" for note in scan.notes]
    else:
        lines += [f"  warning: {warning}" for warning in dataset_warnings(scan, variant)]
    if width is None:
        lines.append("  (give --checkpoint-dir and --model-variant to also check the condition width)")
    return "\n".join(lines) + "\n", scan
