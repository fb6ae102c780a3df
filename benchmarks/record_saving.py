"""Benchmark: what keeping the run record costs a long run, under the save budget against saving after
every batch (the engine's former policy), in the same process on the same model, data and seed.

The record holds each batch's norm of every scored module, and a save rewrites and fsyncs all of it, so
saving after every batch grows quadratically with the batch count. The model has the 2B decoder's 24
layers (192 scored projections, as many numbers per batch as a 2B run records) at a tiny width, so a
batch takes milliseconds on a CPU, as a short sample's batch takes on a GPU; the engine's own batch time
(``BatchRecord.seconds``) is compared with the wall time per batch of the whole run.

Example::

    python benchmarks/record_saving.py --batches 1000 --json out.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchtools import results_parser, write_results  # noqa: E402

from acetui.data import write_dataset  # noqa: E402
from acetui.estimate import BatchDone, EstimateRequest, Estimator  # noqa: E402
from acetui.estimate.saving import SAVE_SHARE  # noqa: E402
from acetui.model.synthetic import TINY, write_checkpoint  # noqa: E402

LAYERS = 24  # the 2B decoder's


def prepare(root: Path) -> tuple[Path, Path]:
    """A 24-layer tiny-width checkpoint in the official layout and a dataset of short samples."""
    checkpoints, dataset = root / "checkpoints", root / "dataset"
    config = replace(TINY, num_hidden_layers=LAYERS, layer_types=())  # () alternates, as the official configs
    write_checkpoint(checkpoints / "acestep-v15-turbo", config, seed=0)
    write_dataset(dataset, count=8, condition_width=config.condition_width, seed=1, frames=(8, 8))
    return checkpoints, dataset


def run(checkpoints: Path, dataset: Path, batches: int, share: float, records: Path) -> dict:
    """One engine run of ``batches`` batches whose record is saved with ``share`` of the run's time."""
    request = EstimateRequest(checkpoints, "turbo", dataset, batches=batches, device="cpu", dtype="fp32")
    done: list[float] = []
    saves = 0

    def on_event(event) -> None:
        nonlocal saves
        if isinstance(event, BatchDone):
            done.append(time.perf_counter())
            saves += event.saved

    result = Estimator(request, on_event=on_event, record_dir=records, save_share=share).run()
    if result is None or result.status != "complete":
        raise RuntimeError("the engine run did not complete")
    record = next(records.glob(f"{result.run_id}.json"))
    return {
        "save_share": share,
        "batches": batches,
        "compute_seconds_per_batch": statistics.median(batch.seconds for batch in result.batches),
        "wall_seconds_per_batch": (done[-1] - done[0]) / (len(done) - 1),
        "saves_after_batches": saves,
        "record_bytes": record.stat().st_size,
        "norms": [batch.norms for batch in result.batches],
    }


def main(argv: list[str] | None = None) -> int:
    parser = results_parser(__doc__)
    parser.add_argument("--batches", type=int, default=1000, help="batches per run (default 1000)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        checkpoints, dataset = prepare(root)
        budget = run(checkpoints, dataset, args.batches, SAVE_SHARE, root / "budget")
        every = run(checkpoints, dataset, args.batches, 1.0, root / "every")
    if budget.pop("norms") != every.pop("norms"):
        raise RuntimeError("the two runs recorded different norms")
    print(f"{args.batches} batches, {LAYERS} layers, record {budget['record_bytes'] / 1e6:.1f} MB at the end")
    for name, row in (("budget", budget), ("every batch", every)):
        overhead = row["wall_seconds_per_batch"] / row["compute_seconds_per_batch"]
        print(
            f"  {name:<12} compute {row['compute_seconds_per_batch'] * 1e3:6.1f} ms/batch, wall "
            f"{row['wall_seconds_per_batch'] * 1e3:6.1f} ms/batch ({overhead:.2f}x), "
            f"{row['saves_after_batches']} saves"
        )
    speedup = every["wall_seconds_per_batch"] / budget["wall_seconds_per_batch"]
    print(f"  wall time per batch, every batch / budget: {speedup:.2f}x (the same norms in both runs)")
    write_results(args.json, {"threads": args.threads, "budget": budget, "every_batch": every, "speedup": speedup})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
