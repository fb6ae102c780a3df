"""Benchmark: what the app's Run screen costs a run, against the engine alone, in the same process on the
same tiny model, data and seed (CPU, one thread).

The engine runs in a worker thread and the screen shows its progress on the UI thread; what the UI thread
does per batch holds the interpreter the engine thread also needs, so a fast run slows down when shown.
The ratio printed is the app's batches per second over the engine's alone.

Example::

    python benchmarks/app_progress.py --batches 300
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchtools import temporary_user_folders  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="batches per run (default 300)")
    args = parser.parse_args(argv)
    with temporary_user_folders() as root:
        engine, app = measure(root, args.batches)
    print(f"{args.batches} batches of the tiny model on the CPU (1 thread)")
    print(f"  engine alone    {engine:7.1f} batches/s")
    print(f"  app Run screen  {app:7.1f} batches/s ({app / engine:.2f}x the engine alone)")
    return 0


def measure(root: Path, batches: int) -> tuple[float, float]:
    """Batches per second of the engine alone, then of the same run on the app's Run screen (load included
    in both)."""
    import torch

    from acetui import paths
    from acetui.data import write_dataset
    from acetui.estimate import EstimateRequest, Estimator
    from acetui.model.synthetic import TINY, write_checkpoint

    torch.set_num_threads(1)
    write_checkpoint(root / "checkpoints" / "acestep-v15-turbo", TINY, seed=0)
    write_dataset(root / "dataset", count=8, condition_width=TINY.condition_width, seed=1, frames=(20, 30))
    request = EstimateRequest(root / "checkpoints", "turbo", root / "dataset", batches=batches, device="cpu")
    started = time.perf_counter()
    Estimator(request, record_dir=paths.app_dirs().runs).run()
    engine = batches / (time.perf_counter() - started)
    return engine, batches / asyncio.run(app_seconds(request))


async def app_seconds(request) -> float:
    """Seconds from pushing the Run screen until the run's Results are shown."""
    from acetui.tui.app import make_app
    from acetui.tui.screens.results import ResultsScreen
    from acetui.tui.screens.run import RunScreen

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        started = time.perf_counter()
        await app.push_screen(RunScreen(request))
        while not isinstance(app.screen, ResultsScreen):
            await pilot.pause(0.01)
        seconds = time.perf_counter() - started
        await pilot.pause(0.2)  # let the Results screen finish mounting before the app closes
    return seconds


if __name__ == "__main__":
    raise SystemExit(main())
