"""Planted signal: a tiny checkpoint whose chosen projections are known to have dominant gradients.

The plant is a reparametrisation that leaves the model's function (and so the loss) unchanged: in an
attention block, v_proj is multiplied by c and o_proj divided by c. The attention weights do not depend on
v, so the block's output is the same, but dL/dW_o = delta (x) attended is multiplied by c (its input is c
times larger) while its weight is c times smaller. With c = 8 the two planted o_proj gradients are 8 times
what they were, far above every other projection (checked: about 5 vs at most 0.8 unplanted).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from acetui.estimate import BatchDone, EstimateRequest, Estimator, RunStarted, rank_modules
from acetui.estimate.stats import result_stats
from acetui.model.synthetic import TINY, random_state, write_checkpoint

PLANTED_BLOCKS = ("layers.1.cross_attn", "layers.3.self_attn")
PLANTED = {f"decoder.{block}.o_proj" for block in PLANTED_BLOCKS}
FACTOR = 8.0


def planted_state(factor: float) -> dict[str, torch.Tensor]:
    state = random_state(TINY, seed=1, dtype=torch.float32)
    for block in PLANTED_BLOCKS:
        state[f"decoder.{block}.v_proj.weight"] *= factor
        state[f"decoder.{block}.o_proj.weight"] /= factor
    return state


@pytest.fixture(scope="module")
def planted_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("planted")
    write_checkpoint(root / "acestep-v15-turbo", TINY, dtype=torch.float32, state=planted_state(FACTOR))
    write_checkpoint(root / "acestep-v15-base", TINY, dtype=torch.float32, state=planted_state(1.0))
    return root


@pytest.fixture(scope="module")
def planted_result(planted_root, dataset_dir):
    return Estimator(request(planted_root, dataset_dir)).run()


def request(root: Path, dataset: Path, variant: str = "turbo", **settings) -> EstimateRequest:
    settings = {"batches": 6, "top_k": 2, "device": "cpu", **settings}
    return EstimateRequest(checkpoint_dir=root, variant=variant, dataset_dir=dataset, **settings)


def test_plant_keeps_the_loss_and_scales_only_the_planted_gradients(planted_root, dataset_dir):
    planted = Estimator(request(planted_root, dataset_dir, batches=2)).run()
    plain = Estimator(request(planted_root, dataset_dir, "base", batches=2)).run()
    assert [b.loss for b in planted.batches] == pytest.approx([b.loss for b in plain.batches], rel=1e-4)
    index = planted.modules.index("decoder.layers.1.cross_attn.o_proj")
    ratio = planted.batches[0].norms[index] / plain.batches[0].norms[index]
    assert ratio == pytest.approx(FACTOR, rel=1e-3)


@pytest.mark.parametrize("score", ["grad-norm", "fisher", "relative"])
def test_planted_projections_rank_first_with_high_probability(planted_result, score):
    result = planted_result
    assert result.status == "complete"
    ranking = rank_modules(result, score)
    assert {item.module for item in ranking[:2]} == PLANTED
    stats = result_stats(result, score)
    figures = stats.by_name()
    assert all(figures[name].p_top_k >= 0.95 for name in PLANTED)
    assert all(figures[item.module].p_top_k <= 0.05 for item in ranking[2:])
    assert stats.stability >= 0.95
    assert all(figures[name].ci_low > figures[ranking[2].module].ci_high for name in PLANTED)
    # The run record keeps the same figures for every score.
    stored = result.metadata["statistics"]["scores"][score]
    assert stored["stability"] == stats.stability
    assert (
        stored["units"]["decoder.layers.1.cross_attn.o_proj"]["p_top_k"]
        == figures["decoder.layers.1.cross_attn.o_proj"].p_top_k
    )


def test_auto_batches_stop_early_on_a_strong_signal(planted_root, dataset_dir):
    events = []
    settings = {"auto_batches": True, "max_batches": 20, "stability_target": 0.9}
    result = Estimator(request(planted_root, dataset_dir, **settings), on_event=events.append).run()
    assert result.status == "complete"
    assert result.completed_batches == 3  # the minimum before auto may stop
    assert result.metadata["stop_reason"] == "stable"
    done = [event for event in events if isinstance(event, BatchDone)]
    assert [event.stability is None for event in done] == [True, False, False]
    assert done[-1].stability >= 0.9
    assert done[-1].total == 20
    assert [entry[0] for entry in result.metadata["stability"]] == [2, 3]


def test_auto_batches_run_to_the_maximum_when_never_stable(planted_root, dataset_dir):
    settings = {"auto_batches": True, "max_batches": 5, "stability_target": 1.0, "top_k": 16}
    result = Estimator(request(planted_root, dataset_dir, "base", **settings)).run()
    assert result.completed_batches == 5
    assert result.metadata["stop_reason"] == "max_batches"
    history = result.metadata["stability"]
    assert [entry[0] for entry in history] == [2, 3, 4, 5]
    assert all(0.0 < entry[1] < 1.0 for entry in history)


def test_fixed_batch_runs_record_why_they_ended(planted_root, dataset_dir):
    result = Estimator(request(planted_root, dataset_dir, batches=2)).run()
    assert result.metadata["stop_reason"] == "batches"
    estimator = Estimator(
        request(planted_root, dataset_dir, batches=2),
        on_event=lambda event: estimator.cancel() if isinstance(event, RunStarted) else None,
    )
    stopped = estimator.run()  # cancelled once set up: a record without batches that says why
    assert stopped.status == "cancelled" and stopped.completed_batches == 0
    assert stopped.metadata["stop_reason"] == "cancelled"


def test_auto_batches_track_the_requested_score(checkpoint_root, dataset_dir):
    """The stability an auto run stops on is that of the score the user asked for."""
    from acetui.estimate import EstimateRequest, Estimator
    from acetui.estimate.scores import score_table
    from acetui.estimate.stats import top_k_stability

    request = EstimateRequest(
        checkpoint_root,
        "turbo",
        dataset_dir,
        auto_batches=True,
        max_batches=4,
        top_k=4,
        score="relative",
        stability_target=1.0,
    )
    result = Estimator(request).run()
    last_batches, last_stability = result.metadata["stability"][-1]
    table = score_table(result, "relative", "module")
    assert last_batches == result.completed_batches
    assert last_stability == top_k_stability(table.values, 4, seed=request.seed)
