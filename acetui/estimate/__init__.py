"""The gradient sensitivity estimator: engine, events, scores, results and exports (no UI code)."""

from acetui.estimate.engine import Estimator
from acetui.estimate.events import (
    BatchDone,
    EngineEvent,
    ModelInfo,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    RunWarning,
    StageChanged,
    StageProgress,
)
from acetui.estimate.request import EstimateRequest
from acetui.estimate.result import BatchRecord, EstimateResult
from acetui.estimate.scores import SCORES, RankedModule, rank_modules, score_table

__all__ = [
    "SCORES",
    "BatchDone",
    "BatchRecord",
    "EngineEvent",
    "EstimateRequest",
    "EstimateResult",
    "Estimator",
    "ModelInfo",
    "RankedModule",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "RunStopped",
    "RunWarning",
    "StageChanged",
    "StageProgress",
    "rank_modules",
    "score_table",
]
