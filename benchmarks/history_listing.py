"""Benchmark: listing the run history (the app's History, ``acetui runs``) with the summaries kept from the
last listing, against reading and ranking every record each time (the former listing), on the same history.

The history is RUNS records of BATCHES batches each, recorded from a real engine run on the 2B decoder's 24
layers (192 scored projections: a 2B run's numbers per batch) at a tiny width, its batches repeated to the
length asked. Both listings must give the same runs.

Example::

    python benchmarks/history_listing.py --runs 60 --batches 3000
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent, HERE):  # acetui, and record_saving's model and dataset
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from benchtools import median_seconds, results_parser, temporary_user_folders, write_results  # noqa: E402

REPEATS = 3


def write_history(root: Path, runs: int, batches: int) -> None:
    """``runs`` complete records of ``batches`` batches in the history of the XDG folders under ``root``."""
    from record_saving import prepare

    from acetui import paths
    from acetui.estimate import EstimateRequest, Estimator

    checkpoints, dataset = prepare(root)
    request = EstimateRequest(checkpoints, "turbo", dataset, batches=4, device="cpu", dtype="fp32")
    folder = paths.app_dirs().runs
    recorded = Estimator(request, record_dir=folder).run()
    template = json.loads((folder / f"{recorded.run_id}.json").read_text())
    (folder / f"{recorded.run_id}.json").unlink()
    measured = template["batches"]
    template["batches"] = [{**measured[index % len(measured)], "index": index} for index in range(batches)]
    template["request"]["batches"] = batches
    for number in range(runs):
        run_id = f"20260101-{number // 3600:02d}{number // 60 % 60:02d}{number % 60:02d}-{number:06x}"
        record = {**template, "run_id": run_id, "metadata": {**template["metadata"], "created": run_id}}
        (folder / f"{run_id}.json").write_text(json.dumps(record, indent=1))


def listing_seconds(keep_summaries: bool) -> tuple[float, list]:
    """The median time of listing the history, with or without the summaries of the listing before."""
    from acetui.history import list_runs
    from acetui.summary_cache import cache_file

    list_runs()  # the summaries exist, as after any earlier listing
    seconds, (listed, problems) = median_seconds(list_runs, REPEATS, None if keep_summaries else cache_file().unlink)
    if problems:
        raise RuntimeError(f"unlisted records: {problems}")
    return seconds, listed


def main(argv: list[str] | None = None) -> int:
    parser = results_parser(__doc__)
    parser.add_argument("--runs", type=int, default=60, help="records in the history (default 60)")
    parser.add_argument("--batches", type=int, default=3000, help="batches per record (default 3000)")
    args = parser.parse_args(argv)
    with temporary_user_folders() as root:
        write_history(root, args.runs, args.batches)
        size = sum(path.stat().st_size for path in root.glob("xdg_data_home/acetui/runs/*.json"))
        every, read_all = listing_seconds(keep_summaries=False)
        kept, from_cache = listing_seconds(keep_summaries=True)
    if read_all != from_cache:
        raise RuntimeError("the two listings differ")
    print(f"{args.runs} records of {args.batches} batches ({size / 1e6:.0f} MB in all), median of {REPEATS}")
    print(f"  every record read  {every:8.3f} s")
    print(f"  summaries kept     {kept:8.3f} s ({every / kept:.0f}x faster)")
    results = {"runs": args.runs, "batches": args.batches, "bytes": size, "every_record": every, "kept": kept}
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
