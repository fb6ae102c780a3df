"""What the user asks the estimator for; shared by the CLI, the TUI, profiles and run records."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from acetui.errors import AcetuiError
from acetui.estimate.objective import TimestepFocus

GRANULARITIES = ("module", "layer")
SCORES = ("grad-norm", "fisher", "relative")
MODULE_SETS = ("attention", "attention+mlp")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
CHECKPOINTING = ("auto", "on", "off")
CUDA_GRAPHS = ("auto", "off")
SEED_LIMIT = 2**63  # 0 <= seed < 2**63 (a torch generator takes 64 bits; larger seeds failed after loading)
# The batch plan is built before the first batch, one entry per sample drawn, so absurd counts filled
# memory (21 GB for 10**22 batches) or never finished (a batch size of 10**12) before any batch. A
# million batches is weeks of a 2B model's backward passes on one GPU (stability settles within
# hundreds); 1024 samples of minutes-long latents in one batch is far past any GPU's memory. At these
# limits the plan takes seconds even for a one-sample dataset (its epochs are one sample long).
MAX_BATCHES = 1_000_000
MAX_BATCH_SIZE = 1024
MAX_SAMPLES_DRAWN = 1_000_000  # batches x batch size: the plan's length


@dataclass(frozen=True)
class EstimateRequest:
    """Every setting of a run. Defaults follow the reference tool (5 batches, top 16, module granularity)."""

    checkpoint_dir: Path
    variant: str
    dataset_dir: Path
    batches: int = 5
    top_k: int = 16
    granularity: str = "module"
    score: str = "grad-norm"
    seed: int = 42
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "auto"
    strict: bool = False
    timestep_focus: str = "balanced"
    modules: str = "attention"
    crop_frames: int | None = None
    activation_checkpointing: str = "auto"
    cuda_graphs: str = "auto"  # auto: replay repeated batch shapes as CUDA graphs (acetui.estimate.graphs)
    auto_batches: bool = False
    max_batches: int = 50
    stability_target: float = 0.9

    def __post_init__(self) -> None:
        """Folders are made absolute: the run record, History, resume and the fisher map's default
        place must not depend on the folder the run was started from."""
        object.__setattr__(self, "checkpoint_dir", absolute_path(self.checkpoint_dir))
        object.__setattr__(self, "dataset_dir", absolute_path(self.dataset_dir))
        self.validate()

    def validate(self) -> None:
        """Reject settings that cannot run, naming the setting."""
        positive = {"batches": self.batches, "top-k": self.top_k, "batch size": self.batch_size}
        positive["max batches"] = self.max_batches
        for name, value in positive.items():
            if value < 1:
                raise AcetuiError(f"{name} must be at least 1, got {value}")
        limits = {"batches": (self.batches, MAX_BATCHES), "max batches": (self.max_batches, MAX_BATCHES)}
        limits["batch size"] = (self.batch_size, MAX_BATCH_SIZE)
        for name, (value, limit) in limits.items():
            if value > limit:
                raise AcetuiError(f"{name} must be at most {limit:,}, got {value:,}")
        drawn = (self.max_batches if self.auto_batches else self.batches) * self.batch_size
        if drawn > MAX_SAMPLES_DRAWN:
            raise AcetuiError(
                f"batches x batch size must be at most {MAX_SAMPLES_DRAWN:,} samples drawn, got {drawn:,}"
            )
        if self.granularity not in GRANULARITIES:
            raise AcetuiError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")
        if self.score not in SCORES:
            raise AcetuiError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if self.modules not in MODULE_SETS:
            raise AcetuiError(f"modules must be one of {', '.join(MODULE_SETS)}, got {self.modules!r}")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise AcetuiError(f"dtype must be auto, {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.activation_checkpointing not in CHECKPOINTING:
            raise AcetuiError(
                f"activation checkpointing must be auto, on or off, got {self.activation_checkpointing!r}"
            )
        if self.cuda_graphs not in CUDA_GRAPHS:
            raise AcetuiError(f"CUDA graphs must be auto or off, got {self.cuda_graphs!r}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise AcetuiError(f"seed must be at least 0 and below 2**63, got {self.seed}")
        if self.crop_frames is not None and self.crop_frames < 2:
            raise AcetuiError(f"crop length must be at least 2 frames, got {self.crop_frames}")
        TimestepFocus.parse(self.timestep_focus)
        if not 0.0 < self.stability_target <= 1.0:
            raise AcetuiError(f"stability target must be in (0, 1], got {self.stability_target}")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["checkpoint_dir"] = str(self.checkpoint_dir)
        values["dataset_dir"] = str(self.dataset_dir)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EstimateRequest:
        """Inverse of ``to_dict``; unknown keys are ignored so older records and profiles still open."""
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


# Each setting's default (the folders and the variant have none): what a profile or form leaves unset.
REQUEST_DEFAULTS = {field.name: field.default for field in fields(EstimateRequest) if field.default is not MISSING}
_ANY_SOURCE = {"checkpoint_dir": "/", "variant": "-", "dataset_dir": "/"}


def check_settings(values: dict[str, Any]) -> None:
    """AcetuiError in the request's own words when one of ``values`` (settings other than the folders and
    the variant, which are checked when a run starts) cannot run: one rule for the form, profiles and the
    CLI."""
    EstimateRequest.from_dict({**values, **_ANY_SOURCE})


def absolute_path(path: str | Path) -> Path:
    """``~`` expanded and relative to the current folder, without resolving symbolic links."""
    return Path(path).expanduser().absolute()


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AcetuiError(f"device {name!r} is not valid (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AcetuiError(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AcetuiError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    elif device.type != "cpu":
        raise AcetuiError(f"device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 on CUDA (what the trainers use) and fp32 on the CPU (exact and fast enough)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)
