"""What a run does before its first batch: resolve the device and dtype, scan the dataset against the
variant's config, load the decoder, refuse a checkpoint whose scored weights are not finite, and start
a new run's record (or settle the request a resumed one continues with).

Kept apart from the batch loop (``acetui.estimate.engine``), which calls these in this order; the
headless dataset report (``acetui.preflight``) gives the very warnings a run gives from here too.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import datetime, timezone

import torch

from acetui import __version__
from acetui.data import DatasetScan, scan_dataset
from acetui.errors import AcetuiError, DatasetError
from acetui.estimate.events import EngineEvent, ModelInfo, StageChanged
from acetui.estimate.memory import activation_bytes, needs_activation_checkpointing
from acetui.estimate.request import EstimateRequest, dtype_name, resolve_device, resolve_dtype
from acetui.estimate.result import EstimateResult
from acetui.model import AceStepDecoder, load_decoder
from acetui.model.checkpoint import decoder_config
from acetui.model.variants import resolve_variant, variant_folder_name
from acetui.pace import Progress
from acetui.units import first_few, format_bytes

FEW_SAMPLES = 5  # Side-Step warns below this many samples too

Emit = Callable[[EngineEvent], None]
Warn = Callable[[str], None]
ProgressFor = Callable[[str], Progress]  # a stage's progress callback, counting in the unit given


def dataset_warnings(scan: DatasetScan, variant: str) -> list[str]:
    """What the user should know before the run: how the samples were chosen (a manifest), too few
    samples, or condition states made by another variant's encoder (``preprocess_meta.json``)."""
    warnings = list(scan.notes)
    if len(scan.samples) < FEW_SAMPLES:
        warnings.append(
            f"{scan.folder}: only {len(scan.samples)} valid samples; a ranking from fewer than {FEW_SAMPLES} "
            "is unreliable"
        )
    made_by = scan.preprocessed_variant
    if made_by and variant_folder_name(made_by) != variant_folder_name(variant):
        warnings.append(
            f"{scan.folder}: preprocessed with {made_by!r} but estimating {variant!r}; its encoder_hidden_states "
            "come from the other variant's condition encoder"
        )
    return warnings


def prepare(
    request: EstimateRequest, emit: Emit, warn: Warn, progress: ProgressFor
) -> tuple[torch.device, torch.dtype, DatasetScan]:
    """The device, dtype and dataset scan of ``request``; refuses a dataset with no usable sample (or,
    with ``strict``, any bad one) before the model is loaded."""
    device = resolve_device(request.device)
    dtype = resolve_dtype(request.dtype, device)
    emit(StageChanged(f"reading {request.variant} config"))
    config = decoder_config(request.checkpoint_dir, request.variant)
    emit(StageChanged(f"scanning {request.dataset_dir}"))
    scan = scan_dataset(
        request.dataset_dir,
        condition_width=config.condition_width,
        context_channels=config.context_channels,
        on_file=progress("files"),
    )
    scan.require_samples()
    if request.strict and scan.problems:
        raise DatasetError(
            f"{scan.problems[0].path}: {scan.problems[0].reason} "
            f"(--strict: {len(scan.problems)} bad sample file(s) in {scan.folder})"
        )
    for group in scan.problem_groups():  # listed where the run's output is read, not only counted
        warn(f"{scan.folder}: skipped {group}")
    for message in dataset_warnings(scan, request.variant):
        warn(message)
    if request.batch_size > len(scan.samples):
        warn(
            f"batch size {request.batch_size} is more than the {len(scan.samples)} valid samples of "
            f"{scan.folder}: each batch repeats samples"
        )
    return device, dtype, scan


def load_model(
    request: EstimateRequest,
    device: torch.device,
    dtype: torch.dtype,
    scan: DatasetScan,
    emit: Emit,
    warn: Warn,
    progress: ProgressFor,
) -> tuple[AceStepDecoder, ModelInfo]:
    """The decoder on ``device``, activation checkpointing set for the longest batch, and its facts."""
    emit(StageChanged(f"loading {request.variant} decoder to {device} as {dtype_name(dtype)}"))
    started = time.perf_counter()
    decoder = load_decoder(
        request.checkpoint_dir, request.variant, dtype=dtype, device=device, on_bytes=progress("bytes")
    )
    if device.type == "cuda":
        # cuDNN's fused attention builds an execution plan for every new (batch, heads, length)
        # shape, reported at ~0.4-0.5 s per forward and per backward (pytorch 2.11); samples differ in
        # length, so most batches would pay it for each attention shape. Flash and memory-efficient
        # attention need no plan. (Process-wide: the estimator is the only CUDA user of the app.)
        torch.backends.cuda.enable_cudnn_sdp(False)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    load_seconds = time.perf_counter() - started
    longest = max(info.frames for info in scan.samples)
    frames = min(longest, request.crop_frames or longest)
    automatic = request.activation_checkpointing == "auto" and needs_activation_checkpointing(
        decoder.config, frames, request.batch_size, dtype, device
    )
    decoder.activation_checkpointing = request.activation_checkpointing == "on" or automatic
    if automatic:
        needed = format_bytes(activation_bytes(decoder.config, frames, request.batch_size, dtype))
        warn(
            f"activation checkpointing turned on: the longest batch would keep ~{needed} of activations, "
            f"more than {device} has free; batches take ~1.4x longer (--crop-frames is faster)"
        )
    info = ModelInfo(
        variant=request.variant,
        folder=str(resolve_variant(request.checkpoint_dir, request.variant)),
        parameters=sum(p.numel() for p in decoder.parameters()),
        layers=decoder.config.num_hidden_layers,
        hidden_size=decoder.config.hidden_size,
        dtype=dtype_name(dtype),
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU",
        scored_modules=len(decoder.attention_projection_names(request.modules == "attention+mlp")),
        activation_checkpointing=decoder.activation_checkpointing,
        load_seconds=load_seconds,
    )
    return decoder, info


def check_weights(decoder: AceStepDecoder, info: ModelInfo) -> None:
    """A decoder tensor holding NaN or infinity makes the loss or every gradient non-finite: a broken
    checkpoint, refused by name before the first batch rather than every batch excluded without a cause
    (one check per tensor on its device, read back at once)."""
    named = list(decoder.named_parameters())
    finite = torch.stack([torch.isfinite(tensor).all() for _, tensor in named]).tolist()
    broken = [name for (name, _), ok in zip(named, finite) if not ok]
    if broken:
        named = first_few([f"decoder.{name}" for name in broken], 1)
        raise AcetuiError(f"{info.folder}: decoder tensor {named} is not finite (NaN or infinity)")


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a short random suffix."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def package_versions() -> dict[str, str]:
    import safetensors

    return {
        "acetui": __version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def new_result(
    request: EstimateRequest,
    modules: list[str],
    numels: list[int],
    weight_norms: list[float],
    info: ModelInfo,
    scan: DatasetScan,
) -> EstimateResult:
    """The record of a new run, before its first batch: what was asked, the model and dataset it ran on."""
    return EstimateResult(
        run_id=new_run_id(),
        request=request,
        modules=modules,
        numels=numels,
        weight_norms=weight_norms,
        metadata={
            "created": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "model": vars(info),
            "dataset": {
                "folder": str(scan.folder),
                "samples": len(scan.samples),
                "fingerprint": dataset_fingerprint(scan),
                "content_fingerprint": dataset_fingerprint(scan, contents=True),
                "summary": scan.summary(),
                "skipped_samples": [{"path": str(p.path), "reason": p.reason} for p in scan.problems],
            },
            "timestep_focus": request.timestep_focus,
            "versions": package_versions(),
        },
    )


def dataset_fingerprint(scan: DatasetScan, *, contents: bool = False) -> str:
    """The samples' names, lengths and file sizes, with ``contents`` their values' digests too, hashed: what
    a resume must find again for its batches to draw the same samples (the batch plan indexes them in name
    order). Modification times stay out, so a copied dataset still resumes."""
    facts = [
        (info.path.name, info.frames, info.condition_length, info.size_bytes, *([info.content] if contents else []))
        for info in scan.samples
    ]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


WEIGHT_TOLERANCE = 1e-3  # a norm computed on another device or in another dtype moves far less than this


def check_unchanged(result: EstimateResult, scan: DatasetScan, weight_norms: list[float], info: ModelInfo) -> None:
    """A resume continues the batches of the same samples on the same weights, or it is refused: a ranking
    mixing two datasets or two checkpoints would read as one (records from before the fingerprint have the
    sample count only)."""
    recorded = result.metadata.get("dataset", {})
    redo = f"run {result.run_id} cannot be resumed exactly (start a new run)"
    if recorded.get("samples") not in (None, len(scan.samples)):
        raise AcetuiError(
            f"{scan.folder}: now holds {len(scan.samples)} valid samples, run {result.run_id} had "
            f"{recorded['samples']}; it cannot be resumed exactly (start a new run)"
        )
    # records from before the content fingerprint have the names-and-sizes one only, checked as they were
    found = {"fingerprint": dataset_fingerprint(scan), "content_fingerprint": dataset_fingerprint(scan, contents=True)}
    if any(recorded.get(key) not in (None, value) for key, value in found.items()):
        raise AcetuiError(
            f"{scan.folder}: its samples' names, lengths, sizes or contents changed since the run began; {redo}"
        )
    for module, then, now in zip(result.modules, result.weight_norms, weight_norms):
        if not math.isclose(then, now, rel_tol=WEIGHT_TOLERANCE):
            raise AcetuiError(
                f"{info.folder}: the weight of {module} changed since the run began (norm {then:.6g}, now "
                f"{now:.6g}); {redo}"
            )


def resumed_request(asked: EstimateRequest, read: EstimateRequest, current: EstimateRequest) -> EstimateRequest:
    """The request a resume continues with: ``asked`` (the caller's, made from the record as it was
    ``read``) with the settings of the record as it is ``current``ly, once claimed, wherever the caller
    kept the read record's. What the caller set itself (a rank's device) stays; a setting the record
    changed meanwhile follows the record, whose batches were run with it."""
    kept = {item.name for item in fields(EstimateRequest) if getattr(asked, item.name) == getattr(read, item.name)}
    return replace(asked, **{name: getattr(current, name) for name in kept})
