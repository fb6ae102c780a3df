"""The outcome of a run: every scored module's per-batch gradient norms, losses and metadata.

The result keeps the full data (not a top-k truncation) so any score, granularity or statistic can be
derived later without re-running, and so a partial run can be resumed and saved as it grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from acetui.estimate.request import EstimateRequest

RECORD_FORMAT = "acetui-run/1"
STATUSES = ("running", "complete", "cancelled", "interrupted", "failed")


@dataclass
class BatchRecord:
    """One batch: its loss, timesteps, samples and each module's gradient norm (empty when excluded)."""

    index: int
    loss: float
    timesteps: list[float]
    samples: list[str]
    seconds: float
    norms: list[float] = field(default_factory=list)
    excluded: str = ""

    @property
    def included(self) -> bool:
        return not self.excluded


@dataclass
class EstimateResult:
    run_id: str
    request: EstimateRequest
    modules: list[str]
    numels: list[int]
    weight_norms: list[float]
    batches: list[BatchRecord] = field(default_factory=list)
    status: str = "running"
    message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def included_batches(self) -> list[BatchRecord]:
        return [batch for batch in self.batches if batch.included]

    @property
    def excluded_batches(self) -> list[BatchRecord]:
        return [batch for batch in self.batches if not batch.included]

    @property
    def completed_batches(self) -> int:
        return len(self.batches)

    @property
    def partial(self) -> bool:
        return self.status != "complete"

    @property
    def mean_loss(self) -> float:
        losses = [batch.loss for batch in self.included_batches]
        return sum(losses) / len(losses) if losses else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "run_id": self.run_id,
            "status": self.status,
            "message": self.message,
            "request": self.request.to_dict(),
            "metadata": self.metadata,
            "modules": self.modules,
            "numels": self.numels,
            "weight_norms": self.weight_norms,
            "batches": [vars(batch) for batch in self.batches],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EstimateResult:
        """Rebuild from ``to_dict`` output; raises KeyError/TypeError/ValueError on malformed records."""
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"not an acetui run record (format {data.get('format')!r})")
        if data.get("status") not in STATUSES:
            raise ValueError(f"unknown status {data.get('status')!r}")
        return cls(
            run_id=str(data["run_id"]),
            request=EstimateRequest.from_dict(data["request"]),
            modules=list(data["modules"]),
            numels=[int(n) for n in data["numels"]],
            weight_norms=[float(n) for n in data["weight_norms"]],
            batches=[BatchRecord(**batch) for batch in data["batches"]],
            status=str(data["status"]),
            message=str(data.get("message", "")),
            metadata=dict(data.get("metadata", {})),
        )
