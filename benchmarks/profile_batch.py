"""Where a batch's time goes: torch.profiler over a few of our engine's batches on one benchmark case.

Prints the operators with the most host (CPU) and device (CUDA) self time, and the wall time per batch
against the device's busy time, which says whether a batch is bound by the GPU or by the host that
launches its kernels. Uses the benchmark's random-weight checkpoints and datasets.

    python benchmarks/profile_batch.py --size 2b --seconds 10 --device cuda --trace trace.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))

from estimate import SIZES, EngineRun, prepare_checkpoint, prepare_dataset  # noqa: E402

LAUNCH_CALLS = {"cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernelExC"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--active", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--length-spread", type=float, default=0.0, help="as in estimate.py: every batch a new length")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--trace", type=Path, help="write a Chrome trace (gzipped when the name ends in .gz)")
    args = parser.parse_args(argv)

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available() and args.device != "cpu":
        activities.append(ProfilerActivity.CUDA)
    with tempfile.TemporaryDirectory(prefix="acetui-profile-") as temporary:
        root = args.workdir or Path(temporary)
        root.mkdir(parents=True, exist_ok=True)
        variant = prepare_checkpoint(root, args.size)
        batches = args.warmup + args.active
        count = batches if args.length_spread else 3
        dataset = prepare_dataset(root, args.size, args.seconds, count, args.length_spread)
        run = EngineRun(root, variant, dataset, batches, args.device, args.dtype, "off")
        plan = schedule(wait=0, warmup=args.warmup, active=args.active, repeat=1)
        with profile(activities=activities, schedule=plan, acc_events=True) as profiler:
            result = run.run(between=lambda index: profiler.step())

    seconds = [record.seconds for record in result.batches[args.warmup :]]
    events = profiler.key_averages()
    # Device time as the table's footer counts it: kernels and copies only, not the CPU-side operators
    # they are also attributed to, nor user annotations such as the profiler's step markers.
    kernels = [event for event in events if event.device_type == DeviceType.CUDA and not event.is_user_annotation]
    device_busy = sum(event.self_device_time_total for event in kernels) / 1e6 / args.active
    launches = sum(event.count for event in events if event.key in LAUNCH_CALLS) / args.active
    print(f"{args.size} at {args.seconds:g} s on {run.info.device} {run.info.dtype}")
    warmup = ", ".join(f"{record.seconds * 1e3:.0f}" for record in result.batches[: args.warmup])
    print(f"warm-up batches (one-off costs: kernel loading, attention plans, allocator growth): {warmup} ms")
    print(
        f"wall per batch {sum(seconds) / len(seconds) * 1e3:.1f} ms, device busy {device_busy * 1e3:.1f} ms, "
        f"{launches:.0f} kernel launches"
    )
    for key in ("self_cpu_time_total", "self_device_time_total"):
        print(events.table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
    if args.trace:
        if args.trace.suffix == ".gz":
            plain = args.trace.with_suffix("")
            profiler.export_chrome_trace(str(plain))
            with plain.open("rb") as source, gzip.open(args.trace, "wb") as target:
                shutil.copyfileobj(source, target)
            plain.unlink()
        else:
            profiler.export_chrome_trace(str(args.trace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
