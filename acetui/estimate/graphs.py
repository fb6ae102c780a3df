"""One batch's forward and backward, replayed as a CUDA graph when the run meets its shape again and again.

On a GPU a batch of one short sample is bound by the host, not the GPU: a 2B step issues ~3,400 kernels
one by one from Python, 70-90 ms on an H200 for ~25 ms of GPU work (benchmarks/RESULTS.md). A CUDA graph
records the kernels of one step once and launches them with one call; a replayed step takes as long as
its GPU work. A graph fixes every shape and address, so it pays only for a shape that comes back, and a
capture costs three to four eager batches: the batch plan is known before the first batch, so the shapes
with at least GRAPH_MIN_BATCHES batches ahead are graphed (short ones: in long batches the GPU's work
hides the host's anyway) and the rest run as before. A graphed shape's first batch runs eagerly on the
capture stream (the warm-up a capture needs) and records the graph after it; its later batches copy their
inputs into the graph's and replay it: the same kernels on the same values, so the same numbers.

All graphs share one memory pool: they run one at a time and each result is read before the next batch,
so graphing costs about the largest graphed batch's activations once, not once per shape (and a capture
first hands the allocator's cached blocks back). A capture that fails (out of memory, or an operation a
graph cannot hold) turns graphs off for the rest of the run with a warning; the batch keeps the result of
its eager run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import torch

from acetui.data import Batch, SampleInfo
from acetui.errors import first_line
from acetui.estimate.gradients import GradientProbe
from acetui.estimate.memory import activation_bytes, activations_fit
from acetui.estimate.objective import BatchDraw, flow_matching_loss
from acetui.model import AceStepDecoder
from acetui.model.config import DecoderConfig

# Measured on an H200 (RESULTS.md, "CUDA graphs"): a shape's first batch with its capture costs ~0.25 s
# against ~0.07 s eager for the 2B decoder; a replay then saves 57 ms at 125 tokens (10 s of audio), 42 ms
# at 750 and 9 ms at 3,000, where the GPU's own work hides most of the host's. So a graph has paid after
# ~4 replays up to 750 tokens, ~6 at 1,500, and only after ~20 at 3,000: longer batches run eagerly.
GRAPH_MIN_BATCHES = 6
GRAPH_MAX_TOKENS = 1500

BatchShape = tuple[int, int, int]  # samples, frames, condition tokens: what ``collate`` pads a batch to


def batch_shapes(
    plan: Sequence[Sequence[int]], samples: Sequence[SampleInfo], crop_frames: int | None
) -> list[BatchShape]:
    """The padded shape of each batch of ``plan`` (indices into ``samples``), as ``collate`` will build it."""

    def frames(info: SampleInfo) -> int:
        return info.frames if crop_frames is None else min(info.frames, crop_frames)

    return [
        (len(batch), max(frames(samples[i]) for i in batch), max(samples[i].condition_length for i in batch))
        for batch in plan
    ]


def shape_of(batch: Batch) -> BatchShape:
    return batch.size, batch.target_latents.shape[1], batch.encoder_hidden_states.shape[1]


def shapes_to_graph(
    shapes: Sequence[BatchShape], config: DecoderConfig, dtype: torch.dtype, free_bytes: int
) -> set[BatchShape]:
    """The shapes of ``shapes`` (the batches ahead) worth a graph: met at least GRAPH_MIN_BATCHES times, of
    at most GRAPH_MAX_TOKENS tokens, and with room in ``free_bytes`` of device memory for the graphs' pool
    (it holds a graphed batch's activations for the whole run) beside the longest batch's, which runs
    eagerly outside the pool."""
    if not shapes:
        return set()

    def activations(shape: BatchShape) -> int:
        return activation_bytes(config, shape[1], shape[0], dtype)

    longest = max(activations(shape) for shape in shapes)

    def worth_it(shape: BatchShape, count: int) -> bool:
        samples, frames, _ = shape
        if count < GRAPH_MIN_BATCHES or samples * math.ceil(frames / config.patch_size) > GRAPH_MAX_TOKENS:
            return False
        return activations_fit(activations(shape) + longest, free_bytes, on_cuda=True)

    return {shape for shape, count in Counter(shapes).items() if worth_it(shape, count)}


class _GraphedStep:
    """A captured step and the tensors it reads and writes."""

    def __init__(self, graph: torch.cuda.CUDAGraph, batch: Batch, draw: BatchDraw, loss: torch.Tensor) -> None:
        self.graph, self.batch, self.draw, self.loss = graph, batch, draw, loss

    def replay(self, batch: Batch, draw: BatchDraw) -> torch.Tensor:
        for name in ("target_latents", "context_latents", "encoder_hidden_states"):
            getattr(self.batch, name).copy_(getattr(batch, name), non_blocking=True)
        self.draw.noise.copy_(draw.noise, non_blocking=True)
        self.draw.timesteps.copy_(draw.timesteps, non_blocking=True)
        self.graph.replay()
        return self.loss


class BatchSteps:
    """Computes a batch's loss and fills ``probe.norms``: eagerly, or by the graph of the batch's shape."""

    def __init__(
        self,
        decoder: AceStepDecoder,
        probe: GradientProbe,
        graphed: set[BatchShape],
        warn: Callable[[str], None],
    ) -> None:
        self.decoder, self.probe, self.warn = decoder, probe, warn
        self.waiting = set(graphed)  # shapes whose graph is still to be captured
        self.graphs: dict[BatchShape, _GraphedStep] = {}
        self.replays = 0  # batches computed by a graph's replay
        self._stream: torch.cuda.Stream | None = None
        self._pool = None

    def loss(self, batch: Batch, draw: BatchDraw) -> torch.Tensor:
        """The batch's loss (detached, on the device); ``probe.norms`` holds its gradient norms after."""
        shape = shape_of(batch)
        graphed = self.graphs.get(shape)
        if graphed is None and shape not in self.waiting:
            return self._eager(batch, draw)
        # Captures, replays and their streams act on the current device, which is cuda:0 unless set: a run
        # on another GPU would make a context on GPU 0 (or replay on its stream).
        with torch.cuda.device(batch.target_latents.device):
            if graphed is not None:
                self.replays += 1
                return graphed.replay(batch, draw)
            self.waiting.discard(shape)
            return self._capture(shape, batch, draw)

    def _eager(self, batch: Batch, draw: BatchDraw) -> torch.Tensor:
        self.probe.reset()
        loss = flow_matching_loss(self.decoder, batch, draw)
        loss.backward()
        return loss.detach()

    def _capture(self, shape: BatchShape, batch: Batch, draw: BatchDraw) -> torch.Tensor:
        """The batch run eagerly on the capture stream, then its step captured for the batches to come."""
        device = batch.target_latents.device
        draw = BatchDraw(noise=draw.noise.to(device, batch.target_latents.dtype), timesteps=draw.timesteps.to(device))
        if self._stream is None:
            self._stream = torch.cuda.Stream(device)
        stream, current = self._stream, torch.cuda.current_stream(device)
        stream.wait_stream(current)
        with torch.cuda.stream(stream):
            loss = self._eager(batch, draw)
        current.wait_stream(stream)
        try:  # a capture only records kernels: the eager run's loss and norms stay as they are
            self.graphs[shape] = self._record(batch, draw)
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            self._give_up(error)
        return loss

    def _record(self, batch: Batch, draw: BatchDraw) -> _GraphedStep:
        tensors = {name: value.clone() for name, value in vars(batch).items() if name != "paths"}
        static_batch = Batch(**tensors, paths=())
        static_draw = BatchDraw(noise=draw.noise.clone(), timesteps=draw.timesteps.clone())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, stream=self._stream, capture_error_mode="thread_local"):
            loss = self._eager(static_batch, static_draw)
        self._pool = graph.pool()
        return _GraphedStep(graph, static_batch, static_draw, loss)

    def _give_up(self, error: RuntimeError) -> None:
        self.graphs.clear()
        self.waiting.clear()
        self._pool = None
        torch.cuda.empty_cache()
        reason = first_line(error) or type(error).__name__
        self.warn(f"CUDA graphs turned off for this run, batches run one kernel at a time: {reason}")
