"""A long run's bookkeeping: its record is rewritten after every batch while saving is cheap, within a tenth
of the run's time once the record is large, and its top-k stability is computed less often as batches
accumulate (a long run of fast GPU batches spent more time on both than computing)."""

from __future__ import annotations

import json

from acetui.estimate import BatchDone, EstimateRequest, Estimator
from acetui.estimate.engine import stability_due
from acetui.estimate.saving import SAVE_SHARE, SaveBudget


class Clock:
    """A clock the test moves by hand: the budget's decisions are checked without timing anything."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(batches: int, batch_seconds: float, save_seconds) -> tuple[list[int], float]:
    """Run ``batches`` batches against the budget; a save takes ``save_seconds(batches in the record)``.
    Returns the saved batch indices and the share of the time spent saving."""
    clock = Clock()
    budget = SaveBudget(clock=clock)
    saved: list[int] = []
    saving = 0.0
    for index in range(batches):
        clock.now += batch_seconds
        if budget.due():
            started = clock.now
            clock.now += save_seconds(index + 1)
            saving += clock.now - started
            budget.spent(started)
            saved.append(index)
    return saved, saving / clock.now


def test_cheap_saves_follow_every_batch():
    saved, _ = simulate(200, batch_seconds=0.09, save_seconds=lambda held: 0.005)
    assert saved == list(range(200))


def test_a_growing_record_is_saved_within_its_share_of_the_time():
    """Save time grows with the record (0.25 s at 1,000 batches of a 2B run, each batch 0.09 s on a GPU):
    saved after every batch, saving alone would take 2.8x the batches' time by the end."""
    saved, share = simulate(3000, batch_seconds=0.09, save_seconds=lambda held: 0.00025 * held)
    assert saved[:10] == list(range(10)) and len(saved) < 300
    assert share <= SAVE_SHARE * 1.05
    gaps = [later - earlier for earlier, later in zip(saved, saved[1:])]
    assert max(gaps) <= 80  # 0.75 s saves at the end: one every ~7 s of batches


def test_the_first_save_is_always_due():
    budget = SaveBudget(clock=Clock())
    assert budget.due()


def test_a_saved_batch_is_in_the_record_and_every_batch_at_the_end(tmp_path, checkpoint_root, dataset_dir):
    """BatchDone.saved tells the app when to re-read the record: the record then holds that batch."""
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, device="cpu", dtype="fp32", batches=6)
    seen: list[tuple[int, int]] = []
    estimator: Estimator

    def on_event(event) -> None:
        if isinstance(event, BatchDone) and event.saved:
            record = json.loads(estimator.record_path(run_id()).read_text())
            seen.append((event.index, len(record["batches"])))

    def run_id() -> str:
        return next(tmp_path.glob("*.json")).stem

    estimator = Estimator(request, on_event=on_event, record_dir=tmp_path)
    result = estimator.run()
    assert seen and all(held == index + 1 for index, held in seen)
    assert json.loads(estimator.record_path(result.run_id).read_text())["batches"] == [
        vars(batch) for batch in result.batches
    ]


def test_the_stability_is_computed_at_every_count_and_then_at_counts_growing_by_five_percent():
    """A function of the count alone: an auto run stops at the same batch, resumed or not."""
    due = [count for count in range(1, 2001) if stability_due(count)]
    assert due[:20] == list(range(1, 21))
    later = due[19:]
    assert all(1 < b / a <= 1.05 + 1 / a for a, b in zip(later, later[1:]))
    assert len(due) < 110  # not 2000 bootstraps over ever more batches


def test_the_mean_loss_reported_is_the_records_through_a_resume(tmp_path, checkpoint_root, dataset_dir):
    """Counted as batches come rather than by walking every batch after each one: still the mean over the
    included batches, a resumed run's earlier ones among them."""
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, device="cpu", dtype="fp32", batches=6)
    reported: list[tuple[float, float]] = []
    losses: list[float] = []  # of the included batches, from the first run's events on
    estimator: Estimator

    def on_event(event) -> None:
        if isinstance(event, BatchDone):
            losses.extend([] if event.excluded else [event.loss])
            reported.append((event.mean_loss, sum(losses) / len(losses)))
            if event.index == 2 and estimator.resume is None:
                estimator.cancel()

    estimator = Estimator(request, on_event=on_event, record_dir=tmp_path)
    stopped = estimator.run()
    assert stopped.status == "cancelled" and stopped.completed_batches == 3
    estimator = Estimator(request, on_event=on_event, record_dir=tmp_path, resume=stopped)
    assert estimator.run().completed_batches == 6
    assert len(reported) == 6 and all(mean == expected for mean, expected in reported)
