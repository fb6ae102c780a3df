"""Benchmark: scanning a dataset folder (the app's dataset step, the start of every run, ``acetui scan``)
with what the last scan found kept, against reading every sample each time (the scan before the cache), on
the same folder.

The folder holds SAMPLES samples of SECONDS seconds of audio in the 2B variants' shapes (64 latent and 128
context channels, condition states 2048 wide, 200-400 long), bf16 as Side-Step writes them on a GPU. The
files are in the page cache: the best case for reading every sample; from a disk, and more so from a network
share, each read costs more while the kept scan costs the same. Both scans must find the same samples.

Example::

    python benchmarks/dataset_scan.py --samples 1000 --seconds 60
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchtools import median_seconds, results_parser, temporary_user_folders, write_results  # noqa: E402

from acetui.data import LATENT_FRAMES_PER_SECOND, DatasetScan, scan_dataset, write_dataset  # noqa: E402
from acetui.data.scan_cache import SETTLED_SECONDS, cache_location  # noqa: E402

REPEATS = 3
CONDITION_WIDTH = 2048  # the released variants' condition states
CONTEXT_CHANNELS = 128


def scan_seconds(folder: Path, keep: bool) -> tuple[float, DatasetScan]:
    """The median time of a scan, with or without what the scan before it found."""
    scan_dataset(folder, condition_width=CONDITION_WIDTH)  # as after any earlier scan
    forget = cache_location(folder, CONDITION_WIDTH, CONTEXT_CHANNELS).unlink
    return median_seconds(
        lambda: scan_dataset(folder, condition_width=CONDITION_WIDTH), REPEATS, None if keep else forget
    )


def main(argv: list[str] | None = None) -> int:
    parser = results_parser(__doc__)
    parser.add_argument("--samples", type=int, default=1000, help="samples in the folder (default 1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio seconds per sample (default 60)")
    args = parser.parse_args(argv)
    frames = max(1, round(args.seconds * LATENT_FRAMES_PER_SECOND))
    with temporary_user_folders() as root:
        folder = root / "dataset"
        write_dataset(
            folder,
            count=args.samples,
            condition_width=CONDITION_WIDTH,
            frames=(frames, frames),
            condition_length=(200, 400),
            dtype=torch.bfloat16,
        )
        size = sum(path.stat().st_size for path in folder.iterdir())
        time.sleep(SETTLED_SECONDS)  # a scan keeps only samples written before it by this much
        every, read_all = scan_seconds(folder, keep=False)
        kept, from_cache = scan_seconds(folder, keep=True)
        cache_bytes = cache_location(folder, CONDITION_WIDTH, CONTEXT_CHANNELS).stat().st_size
    if read_all != from_cache or len(read_all.samples) != args.samples:
        raise RuntimeError("the two scans differ")
    print(f"{args.samples} samples of {args.seconds:g} s ({size / 1e6:.0f} MB in all), median of {REPEATS}")
    print(f"  every sample read  {every:8.3f} s")
    print(f"  scan kept          {kept:8.3f} s ({every / kept:.0f}x faster; {cache_bytes / 1e3:.0f} kB kept)")
    write_results(
        args.json,
        {
            "samples": args.samples,
            "seconds": args.seconds,
            "bytes": size,
            "every_sample": every,
            "kept": kept,
            "cache_bytes": cache_bytes,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
