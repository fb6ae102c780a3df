"""CUDA graphs for recurring batch shapes (acetui/estimate/graphs.py).

On any machine: the shapes the engine plans for are the shapes ``collate`` builds, and only recurring
short batches that fit in memory are graphed. On a GPU: a graph's replays compute what the eager step
computes, for every batch's own values, with shapes interleaved in one shared pool, and a capture that
fails keeps its batch and turns graphs off.
"""

from __future__ import annotations

import io

import pytest
import torch

from acetui.cli import main
from acetui.data import Batch, batch_plan, collate, load_sample, scan_dataset
from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest, Estimator, RunFinished
from acetui.estimate.gradients import GradientProbe
from acetui.estimate.graphs import (
    GRAPH_MAX_TOKENS,
    GRAPH_MIN_BATCHES,
    BatchSteps,
    batch_shapes,
    shape_of,
    shapes_to_graph,
)
from acetui.estimate.objective import BatchDraw
from acetui.model import AceStepDecoder
from acetui.model.synthetic import FULL_2B, TINY
from acetui.progress import ConsoleReporter
from acetui.tui.screens.run import outcome_text
from tests.support import run_records
from tests.tui_support import record_run

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("crop_frames", [None, 12])
def test_planned_shapes_are_the_shapes_collate_builds(dataset_dir, crop_frames):
    scan = scan_dataset(dataset_dir, condition_width=TINY.condition_width)
    plan = batch_plan(len(scan.samples), 6, 2, seed=3)
    shapes = batch_shapes(plan, scan.samples, crop_frames)
    assert len(set(shapes)) > 1
    for indices, shape in zip(plan, shapes):
        samples = [load_sample(scan.samples[i].path, condition_width=TINY.condition_width) for i in indices]
        assert shape_of(collate(samples, crop_frames=crop_frames)) == shape


def test_recurring_short_batches_that_fit_beside_eager_ones_are_graphed():
    longest = (1, 2 * GRAPH_MAX_TOKENS, 100)  # one sample of GRAPH_MAX_TOKENS patch tokens
    recurring = [(1, 1500, 100), (2, 750, 90), longest]
    rare, odd_longer = (1, 750, 100), (1, 2 * GRAPH_MAX_TOKENS + 1, 100)  # the odd frame is a token too
    shapes = [*recurring * GRAPH_MIN_BATCHES, *[rare] * (GRAPH_MIN_BATCHES - 1), *[odd_longer] * 50]
    assert shapes_to_graph(shapes, FULL_2B, torch.bfloat16, 80 * 2**30) == set(recurring)
    # The pool keeps a graphed batch's activations (~1.8 GB for 750 tokens of the 2B) all run long, beside
    # the longest batch's (~3.5 GB for the 1,501 tokens of odd_longer, run eagerly): both must fit.
    assert shapes_to_graph(shapes, FULL_2B, torch.bfloat16, 5 * 10**9) == set()
    assert shapes_to_graph(shapes, FULL_2B, torch.bfloat16, 7 * 10**9) == set(recurring[:2])


def test_the_flag_reaches_the_run_record_and_a_bad_value_is_one_line(
    checkpoint_root, dataset_dir, isolated_app_dirs, capsys
):
    common = ["estimate", "-c", str(checkpoint_root), "--model-variant", "turbo", "-d", str(dataset_dir)]
    assert main([*common, "--estimate-batches", "1", "--cuda-graphs", "off", "--quiet"]) == 0
    (record,) = run_records(isolated_app_dirs).values()
    assert record["request"]["cuda_graphs"] == "off"
    with pytest.raises(AcetuiError, match="^CUDA graphs must be auto or off, got 'on'$"):
        EstimateRequest(checkpoint_root, "turbo", dataset_dir, cuda_graphs="on")


def test_a_runs_closing_line_says_how_many_batches_were_replayed(checkpoint_root, dataset_dir):
    """Why a GPU run's batches sped up part-way, in the CLI's closing line and the app's."""
    result = record_run(checkpoint_root, dataset_dir, batches=2)
    assert "CUDA graphs" not in outcome_text(result, 2, 1.0).plain  # none on the CPU
    result.metadata["cuda_graph_replays"] = 1  # what the engine keeps on a GPU
    assert outcome_text(result, 2, 1.0).plain.startswith("done: 2 batches in 1.0 s; 1 of them replayed as CUDA graphs")
    stream = io.StringIO()
    ConsoleReporter(stream=stream)(RunFinished(result))
    assert stream.getvalue() == "done: 2 batches; 1 of them replayed as CUDA graphs\n"


def tiny_decoder(dtype: torch.dtype = torch.float32) -> AceStepDecoder:
    torch.manual_seed(0)
    decoder = AceStepDecoder(TINY).to("cuda", dtype)
    for module in decoder.modules():  # zero-initialised tables would make every layer an identity
        if hasattr(module, "scale_shift_table"):
            torch.nn.init.normal_(module.scale_shift_table, std=0.1)
    return decoder


def random_batch(shape: tuple[int, int, int], seed: int, dtype: torch.dtype) -> tuple[Batch, BatchDraw]:
    samples, frames, tokens = shape
    generator = torch.Generator().manual_seed(seed)

    def values(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator).to("cuda", dtype)

    batch = Batch(
        target_latents=values(samples, frames, 64),
        context_latents=values(samples, frames, TINY.context_channels),
        encoder_hidden_states=values(samples, tokens, TINY.condition_width),
        attention_mask=torch.ones(samples, frames, device="cuda", dtype=dtype),
        encoder_attention_mask=torch.ones(samples, tokens, device="cuda", dtype=dtype),
        paths=(),
    )
    draw = BatchDraw(noise=torch.randn(samples, frames, 64, generator=generator), timesteps=torch.rand(samples))
    return batch, draw


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_replays_compute_each_batch_as_the_eager_step_does(dtype):
    decoder = tiny_decoder(dtype)
    probe = GradientProbe(decoder, decoder.attention_projection_names())
    shapes = [(1, 20, 7), (2, 33, 5)]  # interleaved: both graphs in one pool, each replay after the other's
    warnings: list[str] = []
    graphed = BatchSteps(decoder, probe, set(shapes), warnings.append)
    eager = BatchSteps(decoder, probe, set(), warnings.append)
    for step in range(6):
        batch, draw = random_batch(shapes[step % 2], seed=step, dtype=dtype)
        loss, norms = graphed.loss(batch, draw).item(), probe.norms.clone()
        expected, expected_norms = eager.loss(batch, draw).item(), probe.norms.clone()
        assert loss == pytest.approx(expected, rel=1e-6, abs=0)
        assert torch.allclose(norms, expected_norms, rtol=1e-5, atol=0)
        assert expected_norms.min() > 0
    assert graphed.replays == 4 and set(graphed.graphs) == set(shapes) and not warnings


@cuda_only
def test_a_capture_that_fails_keeps_its_batch_and_turns_graphs_off():
    decoder = tiny_decoder()

    def read_back(module, inputs, output) -> None:
        output.sum().item()  # a host sync, which no graph can hold

    decoder.register_forward_hook(read_back)
    probe = GradientProbe(decoder, decoder.attention_projection_names())
    warnings: list[str] = []
    steps = BatchSteps(decoder, probe, {(1, 20, 7)}, warnings.append)
    eager = BatchSteps(decoder, probe, set(), warnings.append)
    for step in range(3):
        batch, draw = random_batch((1, 20, 7), seed=step, dtype=torch.float32)
        loss, norms = steps.loss(batch, draw).item(), probe.norms.clone()
        expected = eager.loss(batch, draw).item()
        assert loss == pytest.approx(expected, rel=1e-6, abs=0)
        assert torch.allclose(norms, probe.norms, rtol=1e-5, atol=0)
    assert len(warnings) == 1 and warnings[0].startswith("CUDA graphs turned off for this run")
    assert steps.replays == 0 and not steps.graphs


@cuda_only
def test_a_graphed_run_records_what_an_eager_run_records(checkpoint_root, dataset_dir):
    runs = {}  # six samples: each one's shape recurs GRAPH_MIN_BATCHES times
    for mode in ("off", "auto"):
        request = EstimateRequest(
            checkpoint_root,
            "base",
            dataset_dir,
            batches=6 * GRAPH_MIN_BATCHES,
            device="cuda",
            dtype="fp32",
            cuda_graphs=mode,
        )
        runs[mode] = Estimator(request).run()
    eager, graphed = runs["off"], runs["auto"]
    assert graphed.graph_replays >= 6 and eager.graph_replays == 0
    for ours, theirs in zip(graphed.batches, eager.batches, strict=True):
        assert ours.loss == pytest.approx(theirs.loss, rel=1e-6, abs=0)
        assert torch.allclose(torch.tensor(ours.norms), torch.tensor(theirs.norms), rtol=1e-5, atol=0)
