"""The gradient sensitivity estimator: request in, events out, result saved as batches complete.

Per batch: the flow-matching loss of the decoder, one backward, and the Frobenius norm of every scored
projection's weight gradient, read on the device by ``GradientProbe`` (on a GPU, a batch shape that
recurs is replayed as a CUDA graph by ``BatchSteps``). The run can be cancelled from another thread
(honoured between batches, and while setting up between files and tensors); completed batches are
written to the run record atomically, after each one unless saving would take more than a tenth of the
run's time (``SaveBudget``), and whenever the run stops, so an interrupted run keeps every batch and a
killed one loses at most the batch in flight or the last few seconds'; either can be resumed exactly.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from acetui.atomic import write_text_atomic
from acetui.data import DatasetScan, SampleCache, batch_plan, collate
from acetui.errors import AcetuiError, DatasetError, failure_text
from acetui.estimate.events import (
    BatchDone,
    EngineEvent,
    ModelInfo,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    RunWarning,
    StageProgress,
)
from acetui.estimate.gradients import GradientProbe
from acetui.estimate.graphs import BatchShape, BatchSteps, batch_shapes, shapes_to_graph
from acetui.estimate.memory import memory_stats, release_freed_memory
from acetui.estimate.objective import TimestepFocus, batch_generator, draw_batch
from acetui.estimate.ownership import RunClaim, claim_run, process_owner
from acetui.estimate.preparation import (
    check_unchanged,
    check_weights,
    load_model,
    new_result,
    prepare,
    resumed_request,
)
from acetui.estimate.request import EstimateRequest
from acetui.estimate.result import BatchRecord, EstimateResult, record_file
from acetui.estimate.saving import SAVE_SHARE, SaveBudget
from acetui.estimate.scores import group_name, score_table
from acetui.estimate.stats import MIN_BATCHES, statistics_record, top_k_stability
from acetui.model import AceStepDecoder
from acetui.pace import Paced, Progress

OOM_ADVICE = (
    "out of memory on batch {index}: lower --batch-size, use --dtype bf16, set --crop-frames, "
    "or turn on --activation-checkpointing{graphs}; {done} completed batches were kept"
)
GRAPHS_ADVICE = ", or --cuda-graphs off (this run's CUDA graphs hold memory of their own)"
OUT_OF_MEMORY = "out of memory"
# Every scored gradient exactly zero: the loss does not reach the projections (e.g. a zeroed output
# projection, as an untrained DiT has); ranking such a batch would rank nothing.
ZERO_GRADIENTS = "every scored gradient is zero (does the loss reach the decoder's layers?)"
AUTO_MIN_BATCHES = 3  # --estimate-batches auto never stops before this many included batches
STABILITY_EVERY_BATCH = 20
STABILITY_GROWTH = 1.05


class _SetupCancelled(Exception):
    """The run was cancelled before its first batch: setting up stops at the next file or tensor."""


def stability_due(included: int) -> bool:
    """Whether the top-k stability is computed at this many included batches: at every count up to
    STABILITY_EVERY_BATCH, then at counts growing by STABILITY_GROWTH. It bootstraps every included batch
    (26 ms at 1,000 batches of 192 modules on one CPU core, against a 90 ms GPU batch), so a long run
    computed it ever more slowly after every batch. A function of the count alone, so that an auto run
    stops at the same batch whether or not it was resumed."""
    point = STABILITY_EVERY_BATCH
    while point < included:
        point = max(point + 1, math.ceil(point * STABILITY_GROWTH))
    return included <= STABILITY_EVERY_BATCH or included == point


def out_of_memory(error: RuntimeError) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's plain RuntimeError ("can't allocate memory"), which
    a sample far longer than the rest meets: both get the same advice instead of a bug report."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def all_excluded_text(result: EstimateResult) -> str:
    """Why a run whose every batch was excluded has no ranking (a mean over no batches is undefined)."""
    reasons = sorted({batch.excluded for batch in result.batches})
    count = len(result.batches)
    return f"all {count} batch{'es' if count != 1 else ''} excluded ({'; '.join(reasons)}): no ranking"


@dataclass
class _Session:
    """What the batches of one run share once the model is loaded."""

    decoder: AceStepDecoder
    probe: GradientProbe
    steps: BatchSteps
    scan: DatasetScan
    plan: list[list[int]]
    device: torch.device
    dtype: torch.dtype
    focus: TimestepFocus
    cache: SampleCache
    started: float = field(default_factory=time.perf_counter)
    measured_batches: int = 0
    first_round: int = 0  # batches of the first round (it also pays kernel loading and planning)
    first_done: float = 0.0  # when the first round finished
    included: int = 0  # the result's included batches, counted as they come: a long run must not walk
    loss_total: float = 0.0  # every batch after each one (at 8,000 batches that was a quarter of the time)

    def count(self, record: BatchRecord) -> None:
        if record.included:
            self.included += 1
            self.loss_total += record.loss

    @property
    def mean_loss(self) -> float:
        """The result's ``mean_loss``, summed in the same order."""
        return self.loss_total / self.included if self.included else math.nan

    def add_round(self, batches: int, now: float) -> None:
        """Count a round's batches, all finished at ``now`` (several processes finish theirs together)."""
        self.measured_batches += batches
        if not self.first_round:
            self.first_round, self.first_done = batches, now

    def seconds_per_batch(self, now: float) -> float:
        """Average batch time for progress and ETA, per round's wall time (a round of N processes runs N
        batches at once): after the first round, the rounds after it, whose one-off costs (CUDA kernel
        loading, allocator growth) reached 4 s for a batch that then took 0.15 s on an H100, and would
        inflate the ETA of a short run many times over."""
        if self.measured_batches <= self.first_round:
            return (now - self.started) / max(self.measured_batches, 1)
        return (now - self.first_done) / (self.measured_batches - self.first_round)


class Estimator:
    """Runs one request. ``on_event`` is called from the thread that calls ``run``; with ``record_dir``
    the run record is rewritten there as batches complete; ``resume`` continues a saved partial result."""

    def __init__(
        self,
        request: EstimateRequest,
        *,
        on_event: Callable[[EngineEvent], None] | None = None,
        record_dir: Path | None = None,
        resume: EstimateResult | None = None,
        batch_indices: Callable[[int], bool] | None = None,
        exchange: Callable[[list[BatchRecord], bool], tuple[list[BatchRecord], bool]] | None = None,
        round_size: int = 1,
        save_share: float = SAVE_SHARE,
    ) -> None:
        """``batch_indices``/``exchange``/``round_size`` let several processes share one run (see
        ``acetui.estimate.distributed``): batches go in rounds of ``round_size``; after each round every
        process passes its new records and its stop flag to ``exchange``, which returns all processes'
        records and whether any of them is stopping, so all of them hold the same result. ``save_share``
        is the share of the run's time that saving its record after batches may take (1: every batch)."""
        self.request = request
        self.on_event = on_event or (lambda event: None)
        self.record_dir = record_dir
        self.resume = resume
        self.owns_batch = batch_indices or (lambda index: True)
        self.exchange = exchange or (lambda records, stopping: (records, stopping))
        self.single_process = exchange is None
        self.round_size = round_size
        self.metadata: dict = {}  # merged into the result's metadata (e.g. the distributed setup)
        self._stop = threading.Event()
        self._stop_status = "cancelled"
        self._result: EstimateResult | None = None
        self._held: RunClaim | None = None  # this estimator's claim on the run it writes
        self._warnings: list[str] = []
        self._save_budget = SaveBudget(save_share)

    def cancel(self, status: str = "cancelled") -> None:
        """Ask the run to stop before its next batch (thread-safe). ``status``: cancelled or interrupted."""
        self._stop_status = status
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def record_path(self, run_id: str) -> Path | None:
        """Where the run's record is kept (``<record_dir>/<run id>.json``), or None when not kept."""
        return None if self.record_dir is None else record_file(self.record_dir, run_id)

    def _save(self, result: EstimateResult) -> None:
        path = self.record_path(result.run_id)
        if result.status != "running":  # the full figures once, when the run ends; stability every batch
            result.metadata["statistics"] = statistics_record(result)
            result.metadata.pop("owner", None)  # only a running record has an owner
        if path is not None:
            write_text_atomic(path, json.dumps(result.to_dict(), indent=1, allow_nan=False))

    def _save_batch(self, result: EstimateResult) -> bool:
        """Save after a batch when the budget allows (the first batch's always); whether the record now
        holds it."""
        if not self._save_budget.due():
            return False
        started = self._save_budget.clock()
        self._save(result)
        self._save_budget.spent(started)
        return True

    def run(self) -> EstimateResult | None:
        """Run to completion, cancellation or failure; the matching event is the last one emitted.

        Returns the result (its ``status`` says how it ended), or None when the run failed before its
        result existed. An unexpected error is reported like any other failure, keeping the batches done.
        """
        self._result = None
        try:
            return self._run()
        except _SetupCancelled:
            self.on_event(RunStopped(None, self._setup_stopped_text()))
        except Exception as error:  # a bug or an unforeseen torch error must not lose the finished batches
            self._fail(failure_text(error), self._result)
        finally:
            if self._held is not None:
                self._held.release()
                self._held = None
            release_freed_memory()  # the model and activations of ``_run`` are gone by now
        return self._result

    def _setup_stopped_text(self) -> str:
        status = self._stop_status
        if self.resume is not None:
            return f"{status} while setting up: run {self.resume.run_id} is as it was"
        return f"{status} while setting up, before the first batch: nothing to keep"

    def _check_setup_stop(self) -> None:
        """Stop setting up when the run was cancelled. Alone only: the processes of a multi-process run
        all stop together after a round of batches (``_loop``), which a rank stopping alone would hang."""
        if self.single_process and self._stop.is_set():
            raise _SetupCancelled

    def _stage_progress(self, unit: str) -> Progress:
        """A setup stage's callback: its progress shown a few times a second, and where a cancel stops it."""
        paced = Paced(lambda done, total: self.on_event(StageProgress(done, total, unit)))

        def told(done: int, total: int) -> None:
            self._check_setup_stop()
            paced(done, total)

        return told

    def _fail(self, message: str, result: EstimateResult | None) -> None:
        """Mark and save the failed result; a save that fails too (a full disk) is told, not raised."""
        if result is not None:
            result.status, result.message = "failed", message
            try:
                self._save(result)
            except Exception as error:
                unsaved = failure_text(error)
                if unsaved != message:  # the failure may be this very save
                    message = f"{message}; the run record could not be saved either: {unsaved}"
                result.message = message
        self.on_event(RunFailed(message, result))

    def _claim(self, result: EstimateResult) -> EstimateResult:
        """Take the run up in this process, refused while another process (or estimator) holds it, so
        that no second estimator writes its record meanwhile; the run as its record is once claimed,
        which another process may have resumed since ``result`` was read (continuing ``result`` would
        drop the batches it added). Only an estimator that writes the record claims it: the other ranks
        of a multi-process run write none (and may read it after their rank 0 claimed it)."""
        path = self.record_path(result.run_id)
        if path is None:
            return result
        self._held = claim_run(result, path)
        if self._held.warning is not None:
            self._warn(self._held.warning)
        return self._held.result

    def _take_up(self, stale: EstimateResult) -> EstimateResult:
        """Claim the run to resume and continue it from its record as it is now, with its settings."""
        current = self._claim(stale)
        self.request = resumed_request(self.request, stale.request, current.request)
        return current

    def _capped_top_k(self, modules: list[str]) -> None:
        """A top-k beyond the units ranked (modules, or layer blocks) cannot be filled: use them all, and
        say so, rather than report a trivially perfect stability."""
        by_module = self.request.granularity == "module"
        units = len(modules) if by_module else len({group_name(module) for module in modules})
        top_k = self.request.top_k
        if top_k > units:
            kind = "modules" if by_module else "layer blocks"
            self._warn(f"top-k {top_k} is more than the {units} {kind} scored; using {units}")
            self.request = replace(self.request, top_k=units)

    def _warn(self, message: str) -> None:
        self._warnings.append(message)
        self.on_event(RunWarning(message))

    def _load(self, device: torch.device, dtype: torch.dtype, scan: DatasetScan) -> tuple[AceStepDecoder, ModelInfo]:
        """The decoder and its facts (a method, so that a test can add fault hooks right after loading)."""
        return load_model(self.request, device, dtype, scan, self.on_event, self._warn, self._stage_progress)

    def _run(self) -> EstimateResult:
        resume = None if self.resume is None else self._take_up(self.resume)  # before anything is loaded
        device, dtype, scan = prepare(self.request, self.on_event, self._warn, self._stage_progress)
        decoder, info = self._load(device, dtype, scan)
        names = decoder.attention_projection_names(include_mlp=self.request.modules == "attention+mlp")
        modules = [f"decoder.{name}" for name in names]
        self._capped_top_k(modules)
        request = self.request
        probe = GradientProbe(decoder, names)
        weight_norms = probe.weight_norms()  # one read of every scored weight per run
        check_weights(decoder, info)
        self._check_setup_stop()  # the last point before a new run's record exists
        if resume is not None:
            result = resume
        else:
            result = new_result(request, modules, probe.numels, weight_norms, info, scan)
        if result.modules != modules:
            raise AcetuiError(f"run {result.run_id}: its modules do not match {request.variant}; cannot resume")
        if resume is not None:
            check_unchanged(result, scan, weight_norms, info)
            # How the batches run, which a resume may change (after an out-of-memory failure with graphs):
            # kept in the record, so that a later plain resume goes on the same way.
            result.request = replace(result.request, cuda_graphs=request.cuda_graphs)
        else:
            self._claim(result)
        self._result = result  # from here on a failure keeps (and saves) the batches done
        result.status = "running"
        result.metadata["owner"] = process_owner()
        result.metadata["model"] = vars(info)
        result.metadata["warnings"] = self._warnings
        result.metadata.update(self.metadata)
        total = request.max_batches if request.auto_batches else request.batches
        plan = batch_plan(len(scan.samples), total, request.batch_size, request.seed)
        self._save(result)  # the record names its owner before the first batch
        self.on_event(RunStarted(result.run_id, info, scan, total, result.completed_batches))
        graphed = self._shapes_to_graph(decoder, plan, scan, result.completed_batches, device, dtype)
        session = _Session(
            decoder=decoder,
            probe=probe,
            steps=BatchSteps(decoder, probe, graphed, self._warn),
            scan=scan,
            plan=plan,
            device=device,
            dtype=dtype,
            focus=TimestepFocus.parse(request.timestep_focus),
            cache=SampleCache(decoder.config.condition_width, decoder.config.context_channels),
        )
        for record in result.batches:  # a resumed run's
            session.count(record)
        try:
            self._loop(session, result)
        finally:
            probe.close()
        return result

    def _shapes_to_graph(
        self,
        decoder: AceStepDecoder,
        plan: list[list[int]],
        scan: DatasetScan,
        start: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> set[BatchShape]:
        """The batch shapes this process will replay as CUDA graphs, from its batches from ``start`` on."""
        if device.type != "cuda" or self.request.cuda_graphs == "off" or decoder.activation_checkpointing:
            return set()
        shapes = batch_shapes(plan, scan.samples, self.request.crop_frames)
        ahead = [shapes[index] for index in range(start, len(plan)) if self.owns_batch(index)]
        return shapes_to_graph(ahead, decoder.config, dtype, torch.cuda.mem_get_info(device)[0])

    def _loop(self, session: _Session, result: EstimateResult) -> None:
        """Rounds of batches; a single process has rounds of one batch and an identity exchange."""
        plan = session.plan
        result.metadata.pop("stop_reason", None)
        pending: list[BatchRecord] = []
        index = result.completed_batches
        while True:
            records, stopping = self.exchange(pending, self._stop.is_set())
            pending = []
            oom = next((record for record in records if record.excluded == OUT_OF_MEMORY), None)
            if oom is not None:
                if session.device.type == "cuda":
                    torch.cuda.empty_cache()
                graphs = GRAPHS_ADVICE if session.steps.graphs else ""
                advice = OOM_ADVICE.format(index=oom.index + 1, graphs=graphs, done=result.completed_batches)
                self._fail(advice, result)
                return
            if self._absorb(session, result, records):
                break
            # Alone, a cancel from a BatchDone callback stops before the next batch; several processes
            # learn of it at the next exchange, so that all of them stop after the same round.
            stopping = stopping or (self.single_process and self._stop.is_set() and index < len(plan))
            if stopping:
                status = self._stop_status if self._stop.is_set() else "interrupted"
                result.status, result.message = status, f"{status} after {result.completed_batches} batches"
                result.metadata["stop_reason"] = status
                self._save(result)
                self.on_event(RunStopped(result, result.message))
                return
            if index >= len(plan):
                result.metadata["stop_reason"] = "max_batches" if self.request.auto_batches else "batches"
                break
            for own in range(index, min(index + self.round_size, len(plan))):
                if self.owns_batch(own):
                    pending.append(self._timed_batch(session, own))
            index = min(index + self.round_size, len(plan))
        if not result.included_batches:
            self._fail(all_excluded_text(result), result)
            return
        result.status = "complete"
        result.message = ""
        result.metadata["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._save(result)
        self.on_event(RunFinished(result))

    def _timed_batch(self, session: _Session, index: int) -> BatchRecord:
        batch_started = time.perf_counter()
        try:
            record = self._one_batch(session, index)
        except RuntimeError as error:  # torch.OutOfMemoryError (CUDA) is one
            if not out_of_memory(error):
                raise
            session.probe.reset()
            return BatchRecord(index, math.nan, [], [], 0.0, excluded=OUT_OF_MEMORY)
        record.seconds = time.perf_counter() - batch_started
        return record

    def _absorb(self, session: _Session, result: EstimateResult, records: list[BatchRecord]) -> bool:
        """Add a round's records in batch order, saving and reporting each; True when ``auto`` reached its
        stability target (later records of the round are dropped, as a single process never ran them)."""
        request = self.request
        total = len(session.plan)
        now = time.perf_counter()
        session.add_round(len(records), now)
        if session.steps.replays:  # batches of this process (since it started) that replayed a CUDA graph
            result.metadata["cuda_graph_replays"] = session.steps.replays
        per_batch = session.seconds_per_batch(now)
        elapsed = now - session.started
        for record in sorted(records, key=lambda item: item.index):
            result.batches.append(record)
            session.count(record)
            stability = self._stability(result, session.included)
            saved = self._save_batch(result)
            self.on_event(
                BatchDone(
                    index=record.index,
                    total=total,
                    loss=record.loss,
                    mean_loss=session.mean_loss,
                    excluded=record.excluded,
                    elapsed=elapsed,
                    seconds_per_batch=per_batch,
                    samples_per_second=request.batch_size / per_batch if per_batch > 0 else math.inf,
                    eta_seconds=(total - record.index - 1) * per_batch,
                    memory=memory_stats(session.device),
                    stability=stability,
                    saved=saved,
                )
            )
            if (
                request.auto_batches
                and stability is not None
                and session.included >= AUTO_MIN_BATCHES
                and stability >= request.stability_target
            ):
                result.metadata["stop_reason"] = "stable"
                return True
        return False

    def _stability(self, result: EstimateResult, included: int) -> float | None:
        """Top-k stability of the ranking so far, with ``included`` batches (None below two), kept in the
        record; between the counts ``stability_due`` names, the last one computed."""
        if included < MIN_BATCHES:
            return None
        history = result.metadata.setdefault("stability", [])
        if not stability_due(included):
            return history[-1][1] if history else None
        table = score_table(result, self.request.score, self.request.granularity)
        stability = top_k_stability(table.values, self.request.top_k, seed=self.request.seed)
        history.append([result.completed_batches, stability])
        return stability

    def _one_batch(self, session: _Session, index: int) -> BatchRecord:
        config = session.decoder.config
        paths = [session.scan.samples[i].path for i in session.plan[index]]
        generator = batch_generator(self.request.seed, index)
        try:
            samples = [session.cache.get(path) for path in paths]
        except DatasetError as error:
            return BatchRecord(index, math.nan, [], [str(p) for p in paths], 0.0, excluded=str(error))
        crop = self.request.crop_frames
        offsets = None
        if crop is not None:
            offsets = [int(torch.randint(0, max(1, s.frames - crop + 1), (1,), generator=generator)) for s in samples]
        batch = collate(samples, crop_frames=crop, crop_offsets=offsets)
        draw = draw_batch(batch, config.timestep_mu, config.timestep_sigma, session.focus, generator)
        batch = batch.to(session.device, session.dtype)
        loss = session.steps.loss(batch, draw)
        readout = torch.cat([loss.float().reshape(1), session.probe.norms]).cpu().tolist()
        loss_value, norms = readout[0], readout[1:]
        record = BatchRecord(index, loss_value, draw.timesteps.tolist(), [str(p) for p in paths], 0.0)
        if not math.isfinite(loss_value):
            record.excluded = "non-finite loss"
        elif not all(math.isfinite(n) for n in norms):
            record.excluded = "non-finite gradient"
        elif not any(norms):
            record.excluded = ZERO_GRADIENTS
        else:
            record.norms = norms
        return record
