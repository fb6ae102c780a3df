"""Memory figures for progress displays (CUDA allocator statistics, or the process RSS on the CPU) and the
estimates behind automatic activation checkpointing and the parameters hint."""

from __future__ import annotations

import ctypes
import math
import os
import sys
from dataclasses import dataclass

import torch

try:
    import resource
except ImportError:  # Windows has no getrusage
    resource = None


@dataclass(frozen=True)
class MemoryStats:
    """Bytes. On CUDA: allocated/reserved/peak from the caching allocator, total/free from the driver.
    On the CPU: ``allocated`` is the resident set size and ``peak`` the peak RSS; total is the machine's RAM."""

    device: str
    allocated: int
    reserved: int
    peak: int
    total: int
    free: int

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def process_rss() -> int:
    """Current resident set size of this process (Linux /proc, falling back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _page_size()
    except (OSError, ValueError, IndexError):
        return peak_rss()


def peak_rss() -> int:
    """Peak resident set size of this process; 0 where the platform does not say (Windows)."""
    if resource is None:
        return 0
    return maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, sys.platform)


def maxrss_bytes(maxrss: int, platform: str) -> int:
    """``ru_maxrss`` in bytes: macOS reports bytes, Linux and the BSDs KiB."""
    return maxrss if platform == "darwin" else maxrss * 1024


def _available_from_meminfo() -> int | None:
    """MemAvailable: free RAM plus what the kernel can reclaim (page cache), unlike SC_AVPHYS_PAGES."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _machine_memory() -> tuple[int, int]:
    """(total, available) RAM in bytes; (0, 0) where the platform does not say."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * _page_size()
        available = _available_from_meminfo()
        if available is None:
            available = os.sysconf("SC_AVPHYS_PAGES") * _page_size()
        return total, available
    except (ValueError, OSError, AttributeError):  # AttributeError: no os.sysconf (Windows)
        return 0, 0


def memory_stats(device: torch.device, *, query_driver: bool = True) -> MemoryStats:
    """Current memory use on ``device``.

    ``query_driver=False`` reads only the allocator's host-side counters, so a UI thread can poll it
    while the worker thread owns the CUDA context.
    """
    if device.type == "cuda":
        total = free = 0
        if query_driver:
            free, total = torch.cuda.mem_get_info(device)
        return MemoryStats(
            device=str(device),
            allocated=torch.cuda.memory_allocated(device),
            reserved=torch.cuda.memory_reserved(device),
            peak=torch.cuda.max_memory_allocated(device),
            total=total,
            free=free,
        )
    total, free = _machine_memory()
    rss = process_rss()
    # The kernel updates the high-water mark lazily, so it can trail the current RSS by a few pages.
    return MemoryStats(device="cpu", allocated=rss, reserved=rss, peak=max(peak_rss(), rss), total=total, free=free)


def release_freed_memory() -> bool:
    """Hand the memory a finished run freed back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere), whether it could. glibc keeps freed blocks in the arena of the thread that freed them,
    and the app runs each estimate on a thread of its own: an app session grew by ~400 MB with each of
    its first CPU runs of a 109 M-parameter model while nothing of them was alive (a 2B model's ~10 GB).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process already has loaded
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return False
    trim(0)
    return True


def activation_bytes(config, frames: int, batch_size: int, dtype: torch.dtype) -> int:
    """Rough bytes of activations kept for backward: 12 D + 4 I values per token and layer.

    The decoder now keeps 10.5 D + 2 I (tests/test_decoder_memory.py; 1 D more on CUDA, which repeats
    key/value heads), but the one GPU measurement predates that saving (2B at 240 s kept 7.2 GiB with
    6.6 GiB estimated), so the estimate stays on the side that turns checkpointing on too early.
    """
    tokens = math.ceil(frames / config.patch_size) * batch_size
    per_token_layer = 12 * config.hidden_size + 4 * config.intermediate_size
    element = torch.finfo(dtype).bits // 8
    return tokens * per_token_layer * config.num_hidden_layers * element


def activations_fit(activations: int, free: int, on_cuda: bool) -> bool:
    """Whether activations fit next to the weights: in 80 % of the free CUDA memory, or in half the
    available RAM on the CPU, where the allocator holds on to freed activations (peak RSS ran ~1.7x the
    saved tensors in the benchmark) and running out ends in the OOM killer, not an exception."""
    return activations <= (0.8 if on_cuda else 0.5) * free


def needs_activation_checkpointing(
    config, frames: int, batch_size: int, dtype: torch.dtype, device: torch.device
) -> bool:
    """Recompute activations when keeping them would not fit in the memory free after loading."""
    needed = activation_bytes(config, frames, batch_size, dtype)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return not activations_fit(needed, free, on_cuda=True)
    _, available = _machine_memory()
    return available > 0 and not activations_fit(needed, available, on_cuda=False)


@dataclass(frozen=True)
class MemoryNeed:
    """What a run keeps in device memory before checkpointing: the weights and the longest batch's activations."""

    weights: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.activations


def memory_need(config, parameters: int, frames: int, batch_size: int, dtype: torch.dtype) -> MemoryNeed:
    """Estimate for a run of a decoder with ``parameters`` weights (activations as ``activation_bytes``)."""
    element = torch.finfo(dtype).bits // 8
    return MemoryNeed(parameters * element, activation_bytes(config, frames, batch_size, dtype))
