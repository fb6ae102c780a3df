"""Benchmark: acetui's estimator engine against a naive estimator written the way the reference tool works.

Both run in one process on the same checkpoint, dataset, seed and device, batch by batch interleaved
(ours batch i, then the baseline's batch i), so machine noise hits both alike. Per model size and
sequence length it reports checkpoint load time, time per batch (median after a warm-up batch), peak
memory, the ratios ours/baseline and (on CUDA) achieved TFLOP/s and the fraction of the device's peak.
Peak memory is per process on the CPU (peak RSS), so each variant's memory is measured in a fresh
subprocess of this script; on CUDA the same subprocesses read ``max_memory_allocated``.

The naive baseline (the reference ``estimate.py``'s approach):
  * load: read the whole checkpoint file(s) into host memory (every component, not only the decoder),
    then copy the decoder tensors into an allocated model and cast it to the run dtype;
  * per batch: ``requires_grad`` toggled on every parameter, ``zero_grad``, each sample read from disk,
    forward + backward with every attention projection's gradient materialised and kept, then one
    ``.item()`` per parameter and the norms summed on the host;
  * model: the official op structure where ours differs (``use_official_ops``): the unfused RMSNorm,
    a dense [T', T'] mask on sliding-window layers, autograd's SwiGLU, projections that keep their
    normed input, repeated key/value heads and a residual stream stored channels first.
Both variants use the same decoder weights, batch order, noise and timesteps, so the rankings must agree;
the script checks that and says so.

Examples::

    python benchmarks/estimate.py                                  # tiny + mid at 10/60/240 s
    python benchmarks/estimate.py --sizes 2b --lengths 10 --repeats 2
    python benchmarks/estimate.py --sizes tiny --lengths 10 --repeats 2 --json out.json --markdown out.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from acetui.data import batch_plan, collate, write_dataset  # noqa: E402
from acetui.data.samples import LATENT_FRAMES_PER_SECOND, load_sample  # noqa: E402
from acetui.estimate import EstimateRequest, Estimator  # noqa: E402
from acetui.estimate.events import BatchDone, RunFailed, RunStarted  # noqa: E402
from acetui.estimate.objective import TimestepFocus, batch_generator, draw_batch, flow_matching_loss  # noqa: E402
from acetui.estimate.request import CUDA_GRAPHS, resolve_device, resolve_dtype  # noqa: E402
from acetui.model import load_decoder  # noqa: E402
from acetui.model.config import DecoderConfig  # noqa: E402
from acetui.model.decoder import AceStepDecoder, Attention, ChannelsFirst, RMSNorm, SwiGLU, TokensMajor  # noqa: E402
from acetui.model.synthetic import FULL_2B, FULL_XL, TINY, random_state, write_checkpoint  # noqa: E402

MID = DecoderConfig(
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=64,
)
SIZES = {"tiny": TINY, "mid": MID, "2b": FULL_2B, "xl": FULL_XL}
# Stored like the real files: the 2B ships one bf16 file, XL four fp32 shards.
STORAGE = {"tiny": (torch.bfloat16, 1), "mid": (torch.bfloat16, 1), "2b": (torch.bfloat16, 1), "xl": (torch.float32, 4)}
# The non-decoder components (encoder, tokenizers) hold 0.52 x the decoder's parameters in the real 2B
# file and 0.20 x in XL; a filler tensor of that size makes the files as large as the real ones, since
# the reference way of loading reads them whole.
OTHER_COMPONENTS = {"tiny": 0.52, "mid": 0.52, "2b": 818_413_638 / 1_575_458_880, "xl": 818_413_638 / 4_168_897_088}
# Dense peak TFLOP/s by CUDA device name fragment (bf16/fp16 tensor cores, fp32 without TF32).
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp16": 362.0, "fp32": 91.6},
    "4090": {"bf16": 165.0, "fp16": 165.0, "fp32": 82.6},
}
CONDITION_TOKENS = 128
SEED = 42


# ----------------------------------------------------------------------------------------------- setup


def prepare_checkpoint(root: Path, size: str) -> str:
    """Write (once) a random-weight checkpoint of ``size`` under ``root``; return its variant folder name."""
    name = f"bench-{size}"
    folder = root / name
    if (folder / "config.json").is_file():
        return name
    config = SIZES[size]
    dtype, shards = STORAGE[size]
    state = random_state(config, seed=0, dtype=dtype)
    decoder_params = sum(t.numel() for t in state.values())
    filler = int(OTHER_COMPONENTS[size] * decoder_params)
    state["encoder.filler.weight"] = torch.zeros(filler, dtype=dtype)
    write_checkpoint(folder, config, seed=0, dtype=dtype, shards=shards, state=state)
    return name


def prepare_dataset(root: Path, size: str, seconds: float, count: int, spread: float = 0.0) -> Path:
    """``count`` samples of ``seconds`` of audio; with ``spread`` > 0 their lengths are drawn from
    [seconds x (1 - spread), seconds], so batches have different shapes, as real datasets do."""
    folder = root / (f"data-{size}-{seconds:g}s-{count}" + (f"-{spread:g}" if spread else ""))
    if not folder.is_dir():
        frames = round(seconds * LATENT_FRAMES_PER_SECOND)
        write_dataset(
            folder,
            count=count,
            condition_width=SIZES[size].condition_width,
            seed=1,
            frames=(round(frames * (1 - spread)), frames),
            condition_length=(CONDITION_TOKENS, CONDITION_TOKENS),
        )
    return folder


def checkpoint_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    return [folder / "model.safetensors"]


# ------------------------------------------------------------------------------------- naive baseline


class OfficialRMSNorm(RMSNorm):
    """The official modeling code's norm, op by op (seven kernels where ours launches two)."""

    def normalize(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        statistics = x.float()
        normalised = statistics * torch.rsqrt(statistics.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * normalised.to(x.dtype)


class OfficialSwiGLU(SwiGLU):
    """The official MLP: plain autograd, which also keeps silu(gate) for the backward pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class OfficialAttention(Attention):
    """The official attention: projections of the kept normed input, key/value heads repeated
    (``repeat_kv``) before a masked SDPA."""

    def project(self, source, prepare, condition):
        hidden = prepare(*source)
        key_value_source = hidden if condition is None else condition
        return self.q_proj(hidden), self.k_proj(key_value_source), self.v_proj(key_value_source)

    def attend(self, query, key, value, mask):
        group = self.heads // self.key_value_heads
        key, value = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=self.head_dim**-0.5)


OFFICIAL_MODULES = {
    RMSNorm: OfficialRMSNorm,
    SwiGLU: OfficialSwiGLU,
    Attention: OfficialAttention,
    TokensMajor: ChannelsFirst,  # the residual stream as the convolution's transposed view
}


def use_official_ops(model: AceStepDecoder) -> None:
    """Give ``model`` the official modeling code's op structure where ours differs (same maths): the
    dense [T', T'] mask on sliding layers, the unfused norm, autograd's SwiGLU, projections that keep
    their normed input, repeated GQA heads and the residual stream as the patch convolution's
    transposed view."""
    model.banded_attention = False
    for module in model.modules():
        if type(module) in OFFICIAL_MODULES:
            module.__class__ = OFFICIAL_MODULES[type(module)]


class NaiveEstimator:
    """The reference tool's way: whole-file load, every gradient kept, a host sync per parameter."""

    def __init__(
        self, folder: Path, dataset: Path, batches: int, device: torch.device, dtype: torch.dtype, batch_size: int = 1
    ):
        from safetensors.torch import load_file

        started = time.perf_counter()
        self.config = DecoderConfig.from_json_file(folder / "config.json")
        everything: dict[str, torch.Tensor] = {}
        for file in checkpoint_files(folder):
            everything.update(load_file(str(file)))  # the whole model, encoder and tokenizers included
        with torch.device("meta"):
            model = AceStepDecoder(self.config)
        model = model.to_empty(device=device).to(dtype)
        use_official_ops(model)
        state = {key.removeprefix("decoder."): t for key, t in everything.items() if key.startswith("decoder.")}
        model.load_state_dict(state)
        del everything, state
        self.model = model.eval()
        self.device, self.dtype = device, dtype
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.load_seconds = time.perf_counter() - started
        self.names = self.model.attention_projection_names()
        self.targets = {name for name in self.names}
        self.samples = sorted(dataset.glob("*.pt"))
        self.plan = batch_plan(len(self.samples), batches, batch_size, SEED)
        self.focus = TimestepFocus.parse("balanced")
        self.sums = [0.0] * len(self.names)
        self.batches = 0

    def batch(self, index: int) -> float:
        """One batch; returns its loss. Gradients stay in ``.grad`` until the next batch."""
        modules = dict(self.model.named_modules())
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad = name.rsplit(".", 1)[0] in self.targets
        self.model.zero_grad(set_to_none=True)
        samples = [
            load_sample(
                self.samples[i],
                condition_width=self.config.condition_width,
                context_channels=self.config.context_channels,
            )
            for i in self.plan[index]
        ]
        batch = collate(samples)
        draw = draw_batch(
            batch, self.config.timestep_mu, self.config.timestep_sigma, self.focus, batch_generator(SEED, index)
        )
        loss = flow_matching_loss(self.model, batch.to(self.device, self.dtype), draw)
        loss.backward()
        for position, name in enumerate(self.names):
            total = 0.0
            for parameter in modules[name].parameters():
                if parameter.grad is not None:
                    total += parameter.grad.float().norm().item()
            self.sums[position] += total
        self.batches += 1
        return loss.item()

    def norms(self) -> list[float]:
        return [total / self.batches for total in self.sums]


# --------------------------------------------------------------------------------------- our engine


class EngineRun:
    """Our Estimator, driven through its public API; ``between`` runs after each of its batches."""

    def __init__(
        self,
        root: Path,
        variant: str,
        dataset: Path,
        batches: int,
        device: str,
        dtype: str,
        checkpointing: str,
        crop_frames: int | None = None,
        batch_size: int = 1,
        cuda_graphs: str = "auto",
    ):
        self.request = EstimateRequest(
            checkpoint_dir=root,
            variant=variant,
            dataset_dir=dataset,
            batches=batches,
            seed=SEED,
            device=device,
            dtype=dtype,
            activation_checkpointing=checkpointing,
            crop_frames=crop_frames,
            batch_size=batch_size,
            cuda_graphs=cuda_graphs,
        )
        self.info = None
        self.failure = None

    def run(self, *, on_started=None, between=None):
        def on_event(event) -> None:
            if isinstance(event, RunStarted):
                self.info = event.model
                if on_started:
                    on_started()
            elif isinstance(event, BatchDone) and between:
                between(event.index)
            elif isinstance(event, RunFailed):
                self.failure = event.message

        result = Estimator(self.request, on_event=on_event).run()
        if result is None:
            raise RuntimeError(f"engine run failed: {self.failure}")
        return result


def mean_norms(result) -> list[float]:
    kept = [record.norms for record in result.batches if record.norms]
    return [sum(column) / len(kept) for column in zip(*kept)]


def ranking(names: list[str], norms: list[float]) -> list[str]:
    return [name for _, name in sorted(zip(norms, names), key=lambda pair: -pair[0])]


# -------------------------------------------------------------------------------------- FLOP count


def flops_per_batch(config: DecoderConfig, frames: int, condition_tokens: int, batch_size: int = 1) -> float:
    """(2 fwd + 2 input-grad) x per-token params + 2 x attention-projection params (weight grads), plus
    attention scores/values (forward, and twice that in backward), per token of the batch."""
    tokens = math.ceil(frames / config.patch_size)
    width, heads, kv, hd = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim
    q_o = 2 * width * heads * hd
    k_v = 2 * width * kv * hd
    mlp = 3 * width * config.intermediate_size
    per_layer_tokens = q_o + k_v + mlp + q_o  # self q/k/v/o, mlp, cross q/o act on the T' tokens
    per_layer_condition = 2 * config.condition_width * kv * hd  # cross k/v act on the L condition tokens
    attention_params = q_o + k_v + q_o  # weights whose gradient is taken, per token
    attention_params_condition = per_layer_condition
    io = config.in_channels * width * config.patch_size + width * config.audio_acoustic_hidden_dim * config.patch_size
    layers = config.num_hidden_layers
    dense = (4 * (layers * per_layer_tokens + io) + 2 * layers * attention_params) * tokens
    dense += (4 * layers * per_layer_condition + 2 * layers * attention_params_condition) * condition_tokens
    # scores QK^T and the weighted sum PV: 2 x 2 x T' x S x heads x head_dim forward, x3 with backward
    attention = 3 * 4 * layers * heads * hd * tokens * (tokens + condition_tokens)
    return float((dense + attention) * batch_size)


# ----------------------------------------------------------------------------- memory (subprocess)


def _read_status(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class MemoryMeter:
    """Peak memory of this process: CUDA ``max_memory_allocated``, else peak RSS (VmHWM, resettable)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.resettable = self.cuda or _reset_peak_rss()

    def current(self) -> int:
        if self.cuda:
            return torch.cuda.memory_allocated(self.device)
        return _read_status("VmRSS") or 0

    def peak(self) -> int:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device)
        import resource

        return _read_status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _reset_peak_rss()


class CpuTensorPeak:
    """Peak bytes of live CPU tensors between ``start`` and ``stop``, from the profiler's allocation
    events: the CPU's counterpart of CUDA's ``max_memory_allocated``. Peak RSS also counts the freed
    blocks glibc keeps (it ran 1.5-2x the live tensors here), which shifts by 10-20 % between runs."""

    def __init__(self) -> None:
        self.profile = profile(activities=[ProfilerActivity.CPU], profile_memory=True)

    def start(self) -> None:
        self.profile.start()

    def stop(self) -> int:
        self.profile.stop()
        events = [
            event
            for event in self.profile.profiler.kineto_results.events()
            if event.name() == "[memory]" and event.device_type() == DeviceType.CPU
        ]
        live = peak = 0
        for event in sorted(events, key=lambda event: event.start_ns()):
            live += event.nbytes()
            peak = max(peak, live)
        return peak


def measure_worker(args: argparse.Namespace) -> dict:
    """Run one variant alone and report its memory: before load, load peak, resident model, batch peaks."""
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    meter = MemoryMeter(device)
    if device.type == "cuda":
        torch.zeros(1, device=device)  # context first, so it is not counted
    meter.reset()
    before = meter.current()
    marks: dict = {"before": before, "batch_peaks": [], "batch_seconds": []}
    tensors = CpuTensorPeak() if args.tensor_peak and device.type == "cpu" else None
    if args.worker == "ours":
        run = EngineRun(
            Path(args.root),
            args.variant,
            Path(args.dataset),
            args.batches,
            args.device,
            args.dtype,
            args.checkpointing,
            args.crop_frames,
            args.batch_size,
            args.cuda_graphs,
        )

        def started() -> None:
            marks["load_peak"], marks["resident"] = meter.peak(), meter.current()
            meter.reset()
            if tensors is not None:
                tensors.start()

        def batch_done(index: int) -> None:
            marks["batch_peaks"].append(meter.peak())

        result = run.run(on_started=started, between=batch_done)
        marks["batch_seconds"] = [record.seconds for record in result.batches]
        marks["load_seconds"] = run.info.load_seconds
        marks["activation_checkpointing"] = run.info.activation_checkpointing
    else:
        naive = NaiveEstimator(
            Path(args.root) / args.variant, Path(args.dataset), args.batches, device, dtype, args.batch_size
        )
        marks["load_peak"], marks["resident"] = meter.peak(), meter.current()
        marks["load_seconds"] = naive.load_seconds
        meter.reset()
        if tensors is not None:
            tensors.start()
        for index in range(args.batches):
            started = time.perf_counter()
            naive.batch(index)
            marks["batch_seconds"].append(time.perf_counter() - started)
            marks["batch_peaks"].append(meter.peak())
    if tensors is not None:
        marks["tensor_peak"] = tensors.stop()
    marks["peak_resettable"] = meter.resettable
    return marks


def _worker_marks(command: list[str], which: str) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker {which} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_memory(
    args,
    root: Path,
    variant: str,
    dataset: Path,
    which: str,
    batches: int,
    checkpointing: str = "off",
    crop_frames: int | None = None,
) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        which,
        "--root",
        str(root),
        "--variant",
        variant,
        "--dataset",
        str(dataset),
        "--worker-batches",
        str(batches),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--checkpointing",
        checkpointing,
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
        "--cuda-graphs",
        args.cuda_graphs,
    ]
    if crop_frames:
        command += ["--crop-frames", str(crop_frames)]
    marks = _worker_marks(command, which)
    if resolve_device(args.device).type == "cpu":
        # A run of its own: the profiler's event buffers would inflate the resident set measured above.
        marks["tensor_peak"] = _worker_marks(command + ["--tensor-peak"], which)["tensor_peak"]
    above = lambda value: value - marks["before"]  # noqa: E731
    return {
        "load_peak_bytes": above(marks["load_peak"]),
        "model_bytes": above(marks["resident"]),
        "batch_peak_bytes": above(max(marks["batch_peaks"])),
        "batch_peaks_bytes": [above(value) for value in marks["batch_peaks"]],
        "peak_bytes": above(max(marks["load_peak"], max(marks["batch_peaks"]))),
        "batch_seconds": marks["batch_seconds"],
        "peak_resettable": marks["peak_resettable"],
        "activation_checkpointing": marks.get("activation_checkpointing"),
        "tensor_peak_bytes": marks.get("tensor_peak"),
    }


# ------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    size: str
    seconds: float


def parse_cases(args) -> list[Case]:
    if args.cases:
        cases = []
        for item in args.cases:
            size, _, lengths = item.partition(":")
            cases += [Case(size, float(s)) for s in lengths.split(",")]
        return cases
    return [Case(size, float(s)) for size in args.sizes.split(",") for s in args.lengths.split(",")]


def run_case(args, root: Path, case: Case) -> dict:
    config = SIZES[case.size]
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    variant = prepare_checkpoint(root, case.size)
    batches = args.warmup + args.repeats
    # Varied lengths: new samples for every batch, so every batch has a shape of its own.
    count = (batches if args.length_spread else 3) * args.batch_size
    dataset = prepare_dataset(root, case.size, case.seconds, count, args.length_spread)
    frames = round(case.seconds * LATENT_FRAMES_PER_SECOND)
    print(
        f"\n== {case.size} at {case.seconds:g} s ({frames} frames, {math.ceil(frames / 2)} tokens), "
        f"{batches} batches of {args.batch_size} each on {device} {dtype} ==",
        flush=True,
    )

    # Warm the page cache so neither variant pays the first disk read.
    for file in checkpoint_files(root / variant):
        with open(file, "rb") as handle:
            while handle.read(1 << 24):
                pass

    naive = NaiveEstimator(root / variant, dataset, batches, device, dtype, args.batch_size)
    naive_seconds: list[float] = []
    naive_losses: list[float] = []

    def naive_batch(index: int) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        naive_losses.append(naive.batch(index))
        naive_seconds.append(time.perf_counter() - started)

    ours = EngineRun(
        root,
        variant,
        dataset,
        batches,
        args.device,
        args.dtype,
        "off",
        batch_size=args.batch_size,
        cuda_graphs=args.cuda_graphs,
    )
    result = ours.run(between=naive_batch)  # ours batch i, then the baseline's batch i
    ours_seconds = [record.seconds for record in result.batches]
    names = [name.removeprefix("decoder.") for name in result.modules]
    ours_norms, naive_norms = mean_norms(result), naive.norms()
    ours_rank, naive_rank = ranking(names, ours_norms), ranking(names, naive_norms)
    worst = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(ours_norms, naive_norms))
    losses_equal = all(
        math.isclose(record.loss, loss, rel_tol=1e-4, abs_tol=1e-6)
        for record, loss in zip(result.batches, naive_losses)
    )
    top = min(16, len(names))

    # More load timings, alternating, after the first pair above.
    ours_load = [ours.info.load_seconds]
    naive_load = [naive.load_seconds]
    naive = None  # free the baseline's model before the extra load timings
    for _ in range(args.load_repeats - 1):
        naive_load.append(NaiveEstimator(root / variant, dataset, 1, device, dtype, args.batch_size).load_seconds)
        started = time.perf_counter()
        load_decoder(root, variant, dtype=dtype, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ours_load.append(time.perf_counter() - started)

    timed = slice(args.warmup, None)
    entry = {
        "size": case.size,
        "seconds": case.seconds,
        "frames": frames,
        "tokens": math.ceil(frames / config.patch_size),
        "condition_tokens": CONDITION_TOKENS,
        "length_spread": args.length_spread,
        "batch_size": args.batch_size,
        "cuda_graphs": args.cuda_graphs,
        "parameters": ours.info.parameters,
        "batches": batches,
        "warmup": args.warmup,
        "ours": {
            "load_seconds": statistics.median(ours_load),
            "batch_seconds": statistics.median(ours_seconds[timed]),
            "all_batch_seconds": ours_seconds,
        },
        "baseline": {
            "load_seconds": statistics.median(naive_load),
            "batch_seconds": statistics.median(naive_seconds[timed]),
            "all_batch_seconds": naive_seconds,
        },
        "ranking_identical": ours_rank == naive_rank,
        "top_k_identical": ours_rank[:top] == naive_rank[:top],
        "losses_identical": losses_equal,
        "max_norm_relative_difference": worst,
        "top_modules": ours_rank[:5],
    }
    flops = flops_per_batch(config, frames, CONDITION_TOKENS, args.batch_size)
    entry["flops_per_batch"] = flops
    for variant_name in ("ours", "baseline"):
        entry[variant_name]["tflops"] = flops / entry[variant_name]["batch_seconds"] / 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        key = "bf16" if dtype == torch.bfloat16 else "fp16" if dtype == torch.float16 else "fp32"
        peak = next((value[key] for fragment, value in PEAK_TFLOPS.items() if fragment in name), None)
        if peak:
            for variant_name in ("ours", "baseline"):
                entry[variant_name]["peak_fraction"] = entry[variant_name]["tflops"] / peak
    if args.memory:
        memory_batches = min(batches, args.memory_batches)
        for which in ("ours", "baseline"):
            entry[which]["memory"] = measure_memory(args, root, variant, dataset, which, memory_batches)
    if (
        args.memory
        and args.checkpointing_study
        and case.size in args.checkpointing_study_size.split(",")
        and case.seconds == max(c.seconds for c in parse_cases(args) if c.size == case.size)
    ):
        study = {}
        for mode in ("off", "on"):
            study[mode] = measure_memory(args, root, variant, dataset, "ours", min(batches, args.memory_batches), mode)
        crop = round(args.crop_seconds * LATENT_FRAMES_PER_SECOND)
        study[f"crop {crop} frames"] = measure_memory(
            args, root, variant, dataset, "ours", min(batches, args.memory_batches), "off", crop
        )
        entry["activation_checkpointing"] = study
    ratio(entry)
    report_case(entry)
    return entry


def ratio(entry: dict) -> None:
    ours, base = entry["ours"], entry["baseline"]
    entry["ratios"] = {
        "load": ours["load_seconds"] / base["load_seconds"],
        "batch": ours["batch_seconds"] / base["batch_seconds"],
    }
    if "memory" in ours:
        for key in ("peak_bytes", "batch_peak_bytes", "load_peak_bytes", "tensor_peak_bytes"):
            if ours["memory"].get(key) is not None:
                entry["ratios"][key.removesuffix("_bytes")] = ours["memory"][key] / max(base["memory"][key], 1)


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f}" if value >= 2**20 else f"{value / 2**20:.2f}"


def report_case(entry: dict) -> None:
    for name in ("ours", "baseline"):
        row = entry[name]
        text = f"  {name:<8} load {row['load_seconds']:.3f} s   batch {row['batch_seconds'] * 1e3:,.1f} ms"
        text += f"   {row['tflops'] * 1e3:,.1f} GFLOP/s"
        if "peak_fraction" in row:
            text += f" ({row['peak_fraction']:.1%} of peak)"
        if "memory" in row:
            memory = row["memory"]
            text += (
                f"   peak {mib(memory['peak_bytes'])} MiB (load {mib(memory['load_peak_bytes'])}, "
                f"batches {mib(memory['batch_peak_bytes'])}, model {mib(memory['model_bytes'])})"
            )
            if memory.get("tensor_peak_bytes") is not None:
                text += f"   live tensors {mib(memory['tensor_peak_bytes'])} MiB"
        print(text)
    ratios = ", ".join(f"{key} {value:.2f}" for key, value in entry["ratios"].items())
    print(f"  ours/baseline: {ratios}")
    same = (
        "identical" if entry["ranking_identical"] else ("top-16 identical" if entry["top_k_identical"] else "DIFFERENT")
    )
    print(
        f"  ranking {same} (max relative norm difference {entry['max_norm_relative_difference']:.1e}); "
        f"top: {', '.join(entry['top_modules'][:3])}"
    )
    for mode, memory in entry.get("activation_checkpointing", {}).items():
        print(
            f"  ours, activation checkpointing {mode}: batch peak {mib(memory['batch_peak_bytes'])} MiB, "
            f"batch {statistics.median(memory['batch_seconds'][1:] or memory['batch_seconds']) * 1e3:,.0f} ms"
        )


def markdown(results: dict) -> str:
    lines = [
        "| size | audio | tokens | load ours / base (s) | batch ours / base (ms) | ratio | peak mem ours / base (MiB) "
        "| ratio | live tensors ours / base (MiB) | ratio | ranking |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["cases"]:
        ours, base = entry["ours"], entry["baseline"]
        memory = memory_ratio = tensors = tensors_ratio = "n/a"
        if "memory" in ours:
            memory = f"{mib(ours['memory']['peak_bytes'])} / {mib(base['memory']['peak_bytes'])}"
            memory_ratio = f"{entry['ratios']['peak']:.2f}"
        if "tensor_peak" in entry["ratios"]:
            tensors = f"{mib(ours['memory']['tensor_peak_bytes'])} / {mib(base['memory']['tensor_peak_bytes'])}"
            tensors_ratio = f"{entry['ratios']['tensor_peak']:.2f}"
        same = "same" if entry["ranking_identical"] else "top-16 same" if entry["top_k_identical"] else "DIFFERENT"
        lines.append(
            f"| {entry['size']}{batch_label(entry)} | {entry['seconds']:g} s | {entry['tokens']} "
            f"| {ours['load_seconds']:.2f} / "
            f"{base['load_seconds']:.2f} | {ours['batch_seconds'] * 1e3:,.1f} / {base['batch_seconds'] * 1e3:,.1f} "
            f"| {entry['ratios']['batch']:.2f} | {memory} | {memory_ratio} | {tensors} | {tensors_ratio} | {same} |"
        )
    return "\n".join(lines) + "\n"


def batch_label(entry: dict) -> str:
    """How the size column names a case of several samples per batch, and ours run without CUDA graphs
    (older results have neither)."""
    samples = entry.get("batch_size", 1)
    return (f" x{samples}" if samples > 1 else "") + (" (ours eager)" if entry.get("cuda_graphs") == "off" else "")


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    facts = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(ram / 2**30, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return facts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--sizes", default="tiny,mid", help="comma list of tiny, mid, 2b, xl (default tiny,mid)")
    add("--lengths", default="10,60,240", help="seconds of audio, comma list (25 latent frames per second)")
    add("--cases", nargs="+", metavar="SIZE:SECONDS", help="explicit cases, e.g. tiny:10,60 2b:10 (overrides)")
    add("--repeats", type=int, default=5, help="timed batches per variant after the warm-up (median reported)")
    add("--warmup", type=int, default=1, help="untimed batches first")
    add("--batch-size", type=int, default=1, help="samples per batch (both variants)")
    add("--cuda-graphs", choices=CUDA_GRAPHS, default="auto", help="ours: replay recurring batch shapes (CUDA)")
    add("--load-repeats", type=int, default=3, help="checkpoint loads timed per variant (median)")
    add("--device", default="auto")
    add("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), bf16, fp16, fp32")
    add("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    add("--no-memory", dest="memory", action="store_false", help="skip the per-variant memory subprocesses")
    add("--memory-batches", type=int, default=3, help="batches run in each memory subprocess")
    add(
        "--checkpointing-study",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="memory of ours with activation checkpointing off/on and with a crop, at the longest length",
    )
    add("--checkpointing-study-size", default="mid", help="comma list of the sizes to study")
    add("--crop-seconds", type=float, default=30.0, help="crop length in the checkpointing study")
    add(
        "--length-spread",
        type=float,
        default=0.0,
        help="draw sample lengths from [L x (1 - spread), L] so every batch has a new shape (e.g. 0.2)",
    )
    add("--workdir", type=Path, help="keep checkpoints and datasets here (default: a temporary folder)")
    add("--json", type=Path, help="write all results as JSON here")
    add("--markdown", type=Path, help="write the summary table as Markdown here")
    # internal: one variant in a fresh process, for its peak memory
    add("--worker", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    add("--root", help=argparse.SUPPRESS)
    add("--variant", help=argparse.SUPPRESS)
    add("--dataset", help=argparse.SUPPRESS)
    add("--worker-batches", dest="batches", type=int, default=2, help=argparse.SUPPRESS)
    add("--checkpointing", default="off", help=argparse.SUPPRESS)
    add("--crop-frames", type=int, help=argparse.SUPPRESS)
    add("--tensor-peak", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(measure_worker(args)))
        return 0
    args.threads = torch.get_num_threads()
    cases = parse_cases(args)
    for case in cases:
        if case.size not in SIZES:
            raise SystemExit(f"unknown size {case.size!r} (use {', '.join(SIZES)})")
    facts = machine()
    print(
        f"machine: {facts['cpu']}, {facts['cores']} cores ({facts['torch_threads']} torch threads), "
        f"{facts['ram_gib']} GiB RAM, torch {facts['torch']}, CUDA: {facts['cuda'] or 'none'}"
    )
    results = {"machine": facts, "device": str(resolve_device(args.device)), "cases": []}
    with tempfile.TemporaryDirectory(prefix="acetui-bench-") as temporary:
        root = args.workdir or Path(temporary)
        root.mkdir(parents=True, exist_ok=True)
        for case in cases:
            results["cases"].append(run_case(args, root, case))
            if args.json:  # keep what finished if a later case is interrupted
                args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    table = markdown(results)
    print("\n" + table)
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    return 0 if all(case["top_k_identical"] for case in results["cases"]) else 1


if __name__ == "__main__":
    sys.exit(main())
