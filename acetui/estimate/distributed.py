"""One run over several processes (GPUs) with ``torch.distributed``.

Two ways in, same code path:

* ``torchrun --nproc-per-node N -m acetui estimate ...`` (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK,
  MASTER_ADDR and MASTER_PORT; multi-node works the same way);
* ``acetui estimate --nproc N ...``, which starts N local copies of itself with those variables set
  (``spawn_local``).

Every process loads the model and runs the batches whose index satisfies ``index % world == rank``
(the engine's ``batch_indices`` hook). Batches run in rounds of ``world`` (one per process); after each
round the new ``BatchRecord``s and each process's stop flag are exchanged with ``all_gather_object``, so
every process holds the same, complete result: the auto-batch stability decision is taken identically
everywhere, and rank 0 alone reports progress and writes the run record (as the batch records it
adds come in; the record names rank 0 as the run's owner). A batch's noise, timesteps and samples come from
(seed, batch index) only, so the result equals a single-process run with the same seed (per-batch
norms are computed by the same code on the same inputs; only the order of the floating-point sums
inside the model may differ between devices). The backend is nccl when the processes use CUDA and gloo
on the CPU; the record exchange always goes through a gloo group (the records are small Python objects
and this keeps them off the GPU).

Limits: an out-of-memory batch on any rank fails the run on every rank (the failure travels with the
records); a process that dies outright makes the others wait in the exchange until ``timeout``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from acetui.errors import AcetuiError
from acetui.estimate.engine import Estimator
from acetui.estimate.events import EngineEvent
from acetui.estimate.request import EstimateRequest, resolve_device
from acetui.estimate.result import BatchRecord, EstimateResult

DEFAULT_TIMEOUT = timedelta(minutes=30)
FAILURE_GRACE_SECONDS = 10.0  # then the ranks still running after one failed are terminated


@dataclass(frozen=True)
class World:
    """This process's place in the run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """Read torchrun's variables; absent means a single process."""
    env = os.environ if env is None else env
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise AcetuiError("WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None
    if size < 1 or not 0 <= rank < size:
        raise AcetuiError(f"rank {rank} is not within a world of {size} processes")
    return World(rank, size, local_rank)


def rank_request(request: EstimateRequest, world: World) -> EstimateRequest:
    """The request as one rank runs it: on CUDA each process takes the GPU of its local rank."""
    if not world.distributed:
        return request
    device = resolve_device(request.device)
    if device.type != "cuda":
        return request
    if torch.cuda.device_count() <= world.local_rank:
        raise AcetuiError(f"local rank {world.local_rank} has no GPU ({torch.cuda.device_count()} visible)")
    return replace(request, device=f"cuda:{world.local_rank}")


def backend_for(request: EstimateRequest) -> str:
    return "nccl" if resolve_device(request.device).type == "cuda" else "gloo"


def init_process_group(world: World, backend: str, timeout: timedelta = DEFAULT_TIMEOUT):
    """Join the default group (unless already joined) and return the gloo group used for the exchange."""
    if not dist.is_available():
        raise AcetuiError("this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise AcetuiError(f"{name} is not set (start with torchrun or acetui estimate --nproc N)")
        dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=timeout)
    return dist.new_group(backend="gloo", timeout=timeout) if dist.get_backend() != "gloo" else None


def gather_exchange(world: World, group=None) -> Callable[[list[BatchRecord], bool], tuple[list[BatchRecord], bool]]:
    """The engine's ``exchange`` hook: every rank's records of the round, in batch order, and whether
    any rank is stopping."""

    def exchange(records: list[BatchRecord], stopping: bool) -> tuple[list[BatchRecord], bool]:
        gathered: list = [None] * world.size
        dist.all_gather_object(gathered, (records, stopping), group=group)
        merged = sorted((record for part, _ in gathered for record in part), key=lambda record: record.index)
        return merged, any(flag for _, flag in gathered)

    return exchange


def distributed_estimator(
    request: EstimateRequest,
    world: World,
    *,
    on_event: Callable[[EngineEvent], None] | None = None,
    record_dir: Path | None = None,
    resume: EstimateResult | None = None,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Estimator:
    """An Estimator for this rank, after joining the process group. Only rank 0 gets ``on_event`` and
    ``record_dir``; call ``shutdown()`` when the run is over."""
    request = rank_request(request, world)
    backend = backend_for(request)
    group = init_process_group(world, backend, timeout)
    estimator = Estimator(
        request,
        on_event=on_event if world.main else None,
        record_dir=record_dir if world.main else None,
        resume=resume,
        batch_indices=lambda index: index % world.size == world.rank,
        exchange=gather_exchange(world, group),
        round_size=world.size,
    )
    estimator.metadata["distributed"] = {"world_size": world.size, "backend": backend}
    return estimator


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """The command line without ``--nproc N`` / ``--nproc=N`` (what each spawned process runs)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def check_process_count(nproc: int, device: torch.device) -> None:
    """One rank per GPU, or per CPU core for gloo on the CPU: more only compete for the same device (and a
    mistyped ``--nproc 1000`` started a thousand copies of torch, filling the memory)."""
    if device.type == "cuda":
        limit, what = torch.cuda.device_count(), "one per CUDA device"
    else:  # two ranks always, so that a one-core machine still runs (slowly) what runs elsewhere
        limit, what = max(2, os.cpu_count() or 1), "one per CPU core"
    if not 1 <= nproc <= limit:
        raise AcetuiError(f"--nproc must be between 1 and {limit} here ({what}), got {nproc}")


def spawn_local(nproc: int, argv: Sequence[str], *, poll_seconds: float = 0.2) -> int:
    """Run ``python -m acetui <argv>`` as ``nproc`` local ranks (torchrun's environment, one machine) and
    return rank 0's exit status (or the first failing rank's). Rank 0 keeps the terminal's output; the
    others are quiet. The ranks run in a session of their own, so a signal reaches them once, through this
    launcher, whether it came from the terminal (Ctrl-C) or was sent to the launcher alone: a second
    Ctrl-C means abort to every rank, as to a single process."""
    base = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc),
    }
    processes = []
    for rank in range(nproc):
        env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
        args = list(argv) if rank == 0 else [*argv, "--quiet"]
        output = None if rank == 0 else subprocess.DEVNULL
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "acetui", *args], env=env, stdout=output, start_new_session=os.name == "posix"
            )
        )

    def forward(signum, frame) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {}
    for name, handler in (("SIGINT", forward), ("SIGTERM", forward), ("SIGHUP", forward)):
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), handler)
    failed_at = None
    try:
        while any(process.poll() is None for process in processes):
            if failed_at is None and any(p.returncode not in (None, 0) for p in processes):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > FAILURE_GRACE_SECONDS:
                for process in processes:  # a dead rank would leave the others waiting in the exchange
                    if process.poll() is None:
                        process.terminate()
            time.sleep(poll_seconds)
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
    codes = [process.wait() for process in processes]
    return codes[0] if codes[0] != 0 else next((code for code in codes if code != 0), 0)
