"""What the engine tells its front ends while it runs. Plain data: no UI code on either side."""

from __future__ import annotations

from dataclasses import dataclass

from acetui.data import DatasetScan
from acetui.estimate.memory import MemoryStats
from acetui.estimate.result import EstimateResult


@dataclass(frozen=True)
class StageChanged:
    """A slow step began (scanning, loading the model); front ends show it so nothing looks frozen."""

    message: str


@dataclass(frozen=True)
class StageProgress:
    """How far the slow step a StageChanged began has got (``files`` scanned, ``bytes`` of weights read),
    a few times a second: a cold disk or a dataset of thousands of files takes minutes to get through."""

    done: int
    total: int
    unit: str


@dataclass(frozen=True)
class RunWarning:
    """Something the user should know that does not stop the run; also kept in the result's metadata."""

    message: str


@dataclass(frozen=True)
class ModelInfo:
    variant: str
    folder: str
    parameters: int
    layers: int
    hidden_size: int
    dtype: str
    device: str
    device_name: str
    scored_modules: int
    activation_checkpointing: bool
    load_seconds: float


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    model: ModelInfo
    dataset: DatasetScan
    total_batches: int
    first_batch: int


@dataclass(frozen=True)
class BatchDone:
    """One batch finished. ``index`` is 0-based; ``loss`` is NaN and ``excluded`` set when it was dropped."""

    index: int
    total: int
    loss: float
    mean_loss: float
    excluded: str
    elapsed: float
    seconds_per_batch: float
    samples_per_second: float
    eta_seconds: float
    memory: MemoryStats
    stability: float | None = None
    saved: bool = True  # the run record now holds this batch (a long run's is saved every few batches)


@dataclass(frozen=True)
class RunFinished:
    result: EstimateResult


@dataclass(frozen=True)
class RunStopped:
    """Cancelled or interrupted: the partial result has been saved and can be resumed. ``result`` is None
    when the run stopped while setting up, before it had a result (a resumed run's record is as it was)."""

    result: EstimateResult | None
    message: str


@dataclass(frozen=True)
class RunFailed:
    """The run could not start or could not go on; ``result`` holds completed batches when there are any."""

    message: str
    result: EstimateResult | None


EngineEvent = StageChanged | StageProgress | RunWarning | RunStarted | BatchDone | RunFinished | RunStopped | RunFailed
