"""The outcome of a run: every scored module's per-batch gradient norms, losses and metadata.

The result keeps the full data (not a top-k truncation) so any score, granularity or statistic can be
derived later without re-running, and so a partial run can be resumed and saved as it grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from acetui.errors import AcetuiError
from acetui.estimate.request import EstimateRequest
from acetui.jsonfile import read_json

RECORD_FAMILY = "acetui-run/"
RECORD_FORMAT = RECORD_FAMILY + "1"
STATUSES = ("running", "complete", "cancelled", "interrupted", "failed")
RECORD_SUFFIX = ".json"


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRecord:
        """Inverse of ``to_dict``; a null loss (and the bare NaN of older records) reads as NaN."""
        unknown = sorted(data.keys() - _BATCH_KEYS)
        if unknown:
            raise ValueError(f"batch record has unknown key {unknown[0]!r}")
        loss = data["loss"]
        index = int(data["index"])
        return cls(
            index=index,
            loss=math.nan if loss is None else _number(loss, f"batch {index} loss", finite=False),
            timesteps=[_number(t, f"batch {index} timesteps") for t in data["timesteps"]],
            samples=[str(s) for s in data["samples"]],
            seconds=_number(data["seconds"], f"batch {index} seconds"),
            norms=_measures(data.get("norms", []), f"batch {index} norms"),
            excluded=str(data.get("excluded", "")),
        )


_BATCH_KEYS = frozenset(item.name for item in fields(BatchRecord))


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
    def graph_replays(self) -> int:
        """Batches this process replayed as CUDA graphs since it started the run (``acetui.estimate.graphs``)."""
        return self.metadata.get("cuda_graph_replays", 0)

    @property
    def partial(self) -> bool:
        return self.status != "complete"

    @property
    def mean_loss(self) -> float:
        losses = [batch.loss for batch in self.included_batches]
        return sum(losses) / len(losses) if losses else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON content: NaN and infinity (an excluded batch's loss) are written as null, as bare
        NaN is not JSON (jq and other strict readers reject the file)."""
        return _finite_or_null(
            {
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
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EstimateResult:
        """Rebuild from ``to_dict`` output; raises KeyError/TypeError/ValueError on malformed records,
        including per-module lists that do not match the modules (ranking them would fail later)."""
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"not an acetui run record (format {data.get('format')!r})")
        if data.get("status") not in STATUSES:
            raise ValueError(f"unknown status {data.get('status')!r}")
        result = cls(
            run_id=str(data["run_id"]),
            request=EstimateRequest.from_dict(data["request"]),
            modules=[str(name) for name in data["modules"]],
            numels=[int(n) for n in _measures(data["numels"], "numels")],
            weight_norms=_measures(data["weight_norms"], "weight_norms"),
            batches=[BatchRecord.from_dict(batch) for batch in data["batches"]],
            status=str(data["status"]),
            message=str(data.get("message", "")),
            metadata=dict(data.get("metadata", {})),
        )
        result.check_shapes()
        return result

    def check_shapes(self) -> None:
        """ValueError when a module is listed twice or a per-module list (numels, weight norms, an included
        batch's norms) does not have one entry per module."""
        count = len(self.modules)
        if len(set(self.modules)) != count:
            twice = next(name for name in self.modules if self.modules.count(name) > 1)
            raise ValueError(f"module {twice} is listed twice")
        for name, values in (("numels", self.numels), ("weight_norms", self.weight_norms)):
            if len(values) != count:
                raise ValueError(f"{len(values)} {name} for {count} modules")
        for batch in self.included_batches:
            if len(batch.norms) != count:
                raise ValueError(f"batch {batch.index} has {len(batch.norms)} norms for {count} modules")


def _number(value: Any, what: str, *, finite: bool = True) -> float:
    """A JSON number of a record (a NaN loss is allowed, not ``finite``); ValueError naming ``what`` for
    anything else: a quoted number, or the NaN or 1e999 a hand edit can leave, would fail far later."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (finite and not math.isfinite(value)):
        raise ValueError(f"{what} holds {value!r}, not a finite number")
    return float(value)


def _measures(values: Any, what: str) -> list[float]:
    """Norms and sizes as read from a record: finite numbers of at least 0, in a list. Checked in bulk
    (a long run's record holds half a million), each value only when the bulk check fails, to name it."""
    if not isinstance(values, list):
        raise ValueError(f"{what} is not a list")
    if set(map(type, values)) <= {float, int}:
        numbers = list(map(float, values))
        if not numbers or (math.isfinite(sum(numbers)) and min(numbers) >= 0):
            return numbers
    numbers = [_number(value, what) for value in values]
    negative = next((value for value in numbers if value < 0), None)
    if negative is not None:
        raise ValueError(f"{what} holds {negative!r}, below 0")
    return numbers


def _finite_or_null(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, in nested dicts and lists too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def record_file(folder: Path, run_id: str) -> Path:
    """The record of run ``run_id`` in a run history ``folder``: one ``<run id>.json`` per run."""
    return folder / f"{run_id}{RECORD_SUFFIX}"


class OtherVersionRecord(AcetuiError):
    """A run record in a format this acetui does not read (a newer one's): left alone, not broken."""


def read_record(path: Path) -> EstimateResult:
    """Read one run record; AcetuiError naming the file when it does not parse or does not fit together."""
    data = read_json(path)
    if isinstance(data, list):
        raise AcetuiError(f"{path}: a ranking export, not a run record (compare and the app's Open file take it)")
    return record_from_data(data, path)


def is_record(data: Any) -> bool:
    """Whether parsed JSON says it is a run record, of this acetui version or another."""
    return isinstance(data, dict) and isinstance(data.get("format"), str) and data["format"].startswith(RECORD_FAMILY)


def record_from_data(data: Any, path: Path) -> EstimateResult:
    """The run record ``data`` read from ``path``; OtherVersionRecord for another version's, AcetuiError
    naming the file for anything that does not fit together."""
    if is_record(data) and data["format"] != RECORD_FORMAT:
        raise OtherVersionRecord(
            f"{path}: a run record of another acetui version ({data['format']}; this one reads {RECORD_FORMAT})"
        )
    try:
        return EstimateResult.from_dict(data)
    except RecursionError:
        raise AcetuiError(f"{path}: not a valid run record (nested too deeply)") from None
    except (KeyError, TypeError, ValueError, AttributeError, AcetuiError) as error:
        raise AcetuiError(f"{path}: not a valid run record ({error})") from None
