"""The engine API: the events a front end receives, cancellation from another thread, the saved record."""

from __future__ import annotations

import json
import threading

import pytest

from acetui.data import write_dataset
from acetui.estimate import (
    BatchDone,
    EstimateRequest,
    EstimateResult,
    Estimator,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    RunWarning,
    StageChanged,
    StageProgress,
)
from acetui.model.checkpoint import decoder_entries
from acetui.model.synthetic import TINY


def test_events_of_a_complete_run(checkpoint_root, dataset_dir, tmp_path):
    events = []
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=4, seed=1)
    result = Estimator(request, on_event=events.append, record_dir=tmp_path).run()

    kinds = [type(event) for event in events]
    assert kinds[0] is StageChanged and kinds[-1] is RunFinished
    started = next(event for event in events if isinstance(event, RunStarted))
    assert started.model.scored_modules == 32 and started.model.device == "cpu" and started.model.dtype == "fp32"
    assert len(started.dataset.samples) == 6 and started.total_batches == 4
    batches = [event for event in events if isinstance(event, BatchDone)]
    assert [event.index for event in batches] == [0, 1, 2, 3]
    assert all(event.loss > 0 and event.memory.allocated > 0 and event.elapsed > 0 for event in batches)
    assert batches[-1].eta_seconds == 0
    # Throughput and ETA leave out the first batch, which pays one-off costs (kernel loading).
    for done, event in enumerate(batches[1:], start=1):
        assert event.seconds_per_batch == pytest.approx((event.elapsed - batches[0].elapsed) / done)
        assert event.eta_seconds == pytest.approx((4 - done - 1) * event.seconds_per_batch)
    assert batches[0].seconds_per_batch == pytest.approx(batches[0].elapsed)
    assert batches[-1].mean_loss == result.mean_loss

    saved = EstimateResult.from_dict(json.loads((tmp_path / f"{result.run_id}.json").read_text()))
    assert saved.status == "complete" and saved.batches == result.batches
    assert saved.metadata["versions"]["torch"] and saved.metadata["model"]["variant"] == "turbo"
    assert saved.request == request


def test_cancel_from_another_thread_keeps_the_partial_result(checkpoint_root, dataset_dir, tmp_path):
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=500)
    events = []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, BatchDone) and event.index == 1:
            threading.Thread(target=estimator.cancel).start()

    estimator = Estimator(request, on_event=on_event, record_dir=tmp_path)
    worker = threading.Thread(target=estimator.run)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()
    stopped = events[-1]
    assert isinstance(stopped, RunStopped)
    assert 2 <= stopped.result.completed_batches < 500 and stopped.result.status == "cancelled"
    saved = json.loads((tmp_path / f"{stopped.result.run_id}.json").read_text())
    assert saved["status"] == "cancelled" and len(saved["batches"]) == stopped.result.completed_batches


def test_setting_up_tells_its_progress(checkpoint_root, dataset_dir, tmp_path):
    """The scan counts files and the load counts the decoder's stored bytes, each told from 0 at once."""
    events = []
    Estimator(EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=1), on_event=events.append).run()
    progress = [event for event in events if isinstance(event, StageProgress)]
    entries, _ = decoder_entries(checkpoint_root / "acestep-v15-turbo")
    firsts = [event for event in progress if event.done == 0]
    assert [(event.unit, event.total) for event in firsts] == [("files", 6), ("bytes", sum(e.nbytes for e in entries))]
    assert all(event.done < event.total for event in progress)
    stages = [event for event in events if isinstance(event, (StageChanged, StageProgress))]
    assert isinstance(stages[stages.index(firsts[0]) - 1], StageChanged)  # shown after the stage it counts
    assert stages[stages.index(firsts[0]) - 1].message.startswith("scanning")
    assert stages[stages.index(firsts[1]) - 1].message.startswith("loading")


@pytest.mark.parametrize("unit", ["files", "bytes"])
def test_a_cancel_while_setting_up_stops_at_the_next_file_or_tensor(unit, checkpoint_root, dataset_dir, tmp_path):
    """A dataset of thousands of files or a checkpoint on a cold disk takes minutes to set up: a cancel stops
    it at once, not after it; nothing ran, so no record is started."""
    events = []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, StageProgress) and event.unit == unit:
            estimator.cancel()

    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=3)
    estimator = Estimator(request, on_event=on_event, record_dir=tmp_path / "runs")
    assert estimator.run() is None
    progress = [event for event in events if isinstance(event, StageProgress)]
    assert [(event.unit, event.done) for event in progress][-1] == (unit, 0)  # the next file or tensor stopped it
    stopped = events[-1]
    assert isinstance(stopped, RunStopped) and stopped.result is None
    assert stopped.message == "cancelled while setting up, before the first batch: nothing to keep"
    assert not any(isinstance(event, (RunStarted, BatchDone)) for event in events)
    loading = [event for event in events if isinstance(event, StageChanged) and event.message.startswith("loading")]
    assert len(loading) == (unit == "bytes")
    assert not (tmp_path / "runs").exists()


def test_a_resume_cancelled_while_setting_up_leaves_its_record_as_it_was(checkpoint_root, dataset_dir, tmp_path):
    def cancel_at_batch_two(event) -> None:
        if isinstance(event, BatchDone) and event.index == 1:
            first.cancel()

    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=4)
    first = Estimator(request, on_event=cancel_at_batch_two, record_dir=tmp_path)
    stopped = first.run()
    (path,) = tmp_path.glob("*.json")
    before = path.read_bytes()

    def cancel_when_loading(event) -> None:
        events.append(event)
        if isinstance(event, StageProgress) and event.unit == "bytes":
            second.cancel("interrupted")

    events = []
    second = Estimator(request, on_event=cancel_when_loading, record_dir=tmp_path, resume=stopped)
    assert second.run() is None
    assert events[-1] == RunStopped(None, f"interrupted while setting up: run {stopped.run_id} is as it was")
    assert path.read_bytes() == before
    resumed = Estimator(request, record_dir=tmp_path, resume=stopped).run()  # the claim was let go
    assert resumed.status == "complete" and resumed.completed_batches == 4


def test_failure_before_start_is_one_event_with_a_message(checkpoint_root, tmp_path):
    events = []
    request = EstimateRequest(checkpoint_root, "turbo", tmp_path / "missing")
    assert Estimator(request, on_event=events.append).run() is None
    assert isinstance(events[-1], RunFailed) and str(tmp_path / "missing") in events[-1].message
    assert events[-1].result is None


def test_warnings_for_few_samples_and_another_variants_preprocessing(checkpoint_root, tmp_path):
    folder = tmp_path / "made-by-base"
    write_dataset(folder, count=3, condition_width=TINY.condition_width, seed=2, frames=(9, 12))
    (folder / "preprocess_meta.json").write_text(json.dumps({"model_variant": "base", "total": 3}))
    events = []
    result = Estimator(EstimateRequest(checkpoint_root, "turbo", folder, batches=1), on_event=events.append).run()
    warnings = [event.message for event in events if isinstance(event, RunWarning)]
    assert len(warnings) == 2
    assert "only 3 valid samples" in warnings[0]
    assert "preprocessed with 'base' but estimating 'turbo'" in warnings[1]
    assert result.metadata["warnings"] == warnings

    (folder / "preprocess_meta.json").write_text(json.dumps({"model_variant": "acestep-v15-turbo"}))
    events.clear()
    Estimator(EstimateRequest(checkpoint_root, "turbo", folder, batches=1), on_event=events.append).run()
    assert [event.message for event in events if isinstance(event, RunWarning)] == warnings[:1]


def test_skipped_files_are_warned_about_by_reason_with_their_names(checkpoint_root, dataset_dir, tmp_path):
    """A run's output (the CLI's stderr, the app's log, the result) names what it skipped, not only a count."""
    folder = tmp_path / "mixed"
    write_dataset(folder, count=5, condition_width=TINY.condition_width, seed=2, frames=(9, 12))
    for name in ("a.pt", "b.pt", "c.pt", "d.pt"):
        (folder / name).write_text("not a tensor file")
    events = []
    result = Estimator(EstimateRequest(checkpoint_root, "turbo", folder, batches=1), on_event=events.append).run()
    warnings = [event.message for event in events if isinstance(event, RunWarning)]
    assert warnings == [
        f"{folder}: skipped 4 files: not a valid torch file (corrupt, truncated or not written by torch.save): "
        "a.pt, b.pt, c.pt and 1 more"
    ]
    assert result.metadata["warnings"] == warnings and len(result.metadata["dataset"]["skipped_samples"]) == 4


def test_cancel_from_a_batch_callback_stops_before_the_next_batch(checkpoint_root, dataset_dir, tmp_path):
    def on_event(event) -> None:
        if isinstance(event, BatchDone) and event.index == 1:
            estimator.cancel()

    estimator = Estimator(EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=6), on_event=on_event)
    result = estimator.run()
    assert result.status == "cancelled" and result.completed_batches == 2
