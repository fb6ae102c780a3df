"""What the user asks the estimator for; shared by the CLI, the TUI, profiles and run records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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
    auto_batches: bool = False
    max_batches: int = 50
    stability_target: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint_dir", Path(self.checkpoint_dir).expanduser())
        object.__setattr__(self, "dataset_dir", Path(self.dataset_dir).expanduser())
        self.validate()

    def validate(self) -> None:
        """Reject settings that cannot run, naming the setting."""
        positive = {"batches": self.batches, "top-k": self.top_k, "batch size": self.batch_size}
        positive["max batches"] = self.max_batches
        for name, value in positive.items():
            if value < 1:
                raise AcetuiError(f"{name} must be at least 1, got {value}")
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
