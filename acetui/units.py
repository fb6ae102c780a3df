"""Human-readable sizes and durations shared by the CLI and the TUI."""

from __future__ import annotations

import math
from collections.abc import Sequence


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def progress_text(done: int, total: int, unit: str) -> str:
    """``1,200 of 5,000 files``, or with the unit ``bytes`` ``1.2 GiB of 3.0 GiB``."""
    if unit == "bytes":
        return f"{format_bytes(done)} of {format_bytes(total)}"
    return f"{done:,} of {total:,} {unit}"


def plural(count: int, noun: str) -> str:
    """``1 valid sample``, ``3,000 valid samples``: the count with its noun, pluralised in English's regular
    way (thousands separated, as the scan's progress counts them)."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def format_duration(seconds: float) -> str:
    """``42.0 s``, ``3m 20s`` or ``1h 05m 00s``; ``--`` when unknown."""
    if not math.isfinite(seconds):
        return "--"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


EIGHTHS = " ▏▎▍▌▋▊▉"


def block_bar(fraction: float, width: int) -> str:
    """``fraction`` (clamped to 0..1) of ``width`` cells filled at eighth-block resolution, padded to width."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[part] if part else "")).ljust(width)


def first_few(names: Sequence[str], limit: int | None) -> str:
    """``a, b, c and 4 more``: the first ``limit`` of ``names`` (every one with None) and a count of the rest,
    for a one-line message that must not grow with the number of files or tensors it is about."""
    shown = names if limit is None else names[:limit]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def session_timing(ran: int, resumed_at: int, elapsed: float | None) -> str:
    """`` in 3.2 s``, or for a resumed run `` (16 now, 384 before) in 0.8 s``: the time is this session's."""
    before = f" ({ran} now, {resumed_at} before)" if resumed_at else ""
    return before + (f" in {format_duration(elapsed)}" if elapsed is not None else "")


def replays_text(replays: int) -> str:
    """``; 180 of them replayed as CUDA graphs``: why a GPU run's batches sped up ('' when none were)."""
    return f"; {replays:,} of them replayed as CUDA graphs" if replays else ""


def aligned_lines(rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table for the CLI: each column but the last padded to its widest cell, two spaces
    apart; the last column runs on (a long module name or reason), and no line ends in spaces."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def figure(value: float) -> str:
    """Three significant figures, or "n/a" for a NaN or infinite ratio, correlation or score."""
    return f"{value:.3g}" if math.isfinite(value) else "n/a"
