"""Faults during a run, on the real engine: out of memory, non-finite loss or gradient, cancel.

Faults are injected with real hooks on the loaded decoder (an Estimator subclass adds them in
``_load``), or come from a real sample file whose values overflow the loss in fp32.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from acetui import cli
from acetui.data import write_dataset
from acetui.estimate import BatchDone, EstimateRequest, Estimator, RunFailed, RunStopped, rank_modules
from acetui.estimate.engine import out_of_memory
from acetui.model.synthetic import TINY, write_checkpoint
from tests.support import estimate_args, one_error_line, run_cli, run_records, sample_dict


class HookedEstimator(Estimator):
    """The real engine with one fault-injecting hook on a decoder layer, added right after loading."""

    layer = 1
    install = None  # callable(layer module, call counter list) -> hook handle

    def _load(self, device, dtype, scan):
        decoder, info = super()._load(device, dtype, scan)
        type(self).install(decoder.layers[self.layer])
        return decoder, info


def out_of_memory_on_call(number: int):
    def install(layer):
        calls = []

        def hook(module, inputs):
            calls.append(1)
            if len(calls) == number:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        layer.register_forward_pre_hook(hook)

    return install


def infinite_gradient_on_call(number: int):
    """On the given forward call, the layer's output gradient becomes inf (the loss stays finite)."""

    def install(layer):
        calls = []

        def hook(module, inputs, output):
            calls.append(1)
            if len(calls) == number:
                output.register_hook(lambda grad: grad * math.inf)

        layer.register_forward_hook(hook)

    return install


def _request(root, dataset, **changes) -> EstimateRequest:
    values = dict(batches=5, seed=11, dtype="fp32", device="cpu")
    values.update(changes)
    return EstimateRequest(root, "turbo", dataset, **values)


def test_out_of_memory_stops_with_advice_and_keeps_completed_batches(checkpoint_root, dataset_dir, isolated_app_dirs):
    HookedEstimator.install = staticmethod(out_of_memory_on_call(3))
    events = []
    estimator = HookedEstimator(
        _request(checkpoint_root, dataset_dir), on_event=events.append, record_dir=isolated_app_dirs.runs
    )
    result = estimator.run()

    failure = events[-1]
    assert isinstance(failure, RunFailed)
    for advice in (
        "out of memory on batch 3",
        "--batch-size",
        "--dtype bf16",
        "--crop-frames",
        "--activation-checkpointing",
        "2 completed batches were kept",
    ):
        assert advice in failure.message
    assert "\n" not in failure.message
    assert result is not None and result.status == "failed" and result.message == failure.message
    assert [batch.index for batch in result.batches] == [0, 1] and len(result.included_batches) == 2

    (record,) = run_records(isolated_app_dirs).values()
    assert record["status"] == "failed" and record["message"] == failure.message
    assert [batch["index"] for batch in record["batches"]] == [0, 1]
    assert all(len(batch["norms"]) == 32 for batch in record["batches"])


def test_an_unexpected_error_is_reported_and_keeps_completed_batches(checkpoint_root, dataset_dir, isolated_app_dirs):
    """A bug or an unforeseen torch error mid-run is a RunFailed with one line, not a lost run."""

    def broken_on_call(number: int):
        def install(layer):
            calls = []

            def hook(module, inputs):
                calls.append(1)
                if len(calls) == number:
                    raise RuntimeError("boom\nsecond line")

            layer.register_forward_pre_hook(hook)

        return install

    HookedEstimator.install = staticmethod(broken_on_call(2))
    events = []
    result = HookedEstimator(
        _request(checkpoint_root, dataset_dir), on_event=events.append, record_dir=isolated_app_dirs.runs
    ).run()
    assert isinstance(events[-1], RunFailed)
    assert events[-1].message == "unexpected RuntimeError: boom (please report this)"
    assert result.status == "failed" and [batch.index for batch in result.batches] == [0]
    (record,) = run_records(isolated_app_dirs).values()
    assert record["status"] == "failed" and len(record["batches"]) == 1


def test_out_of_memory_through_the_cli(checkpoint_root, dataset_dir, capsys, monkeypatch, isolated_app_dirs):
    """Exit 1 (a failure, not an interruption), the advice on stderr, the kept batches ranked on stdout."""
    HookedEstimator.install = staticmethod(out_of_memory_on_call(3))
    monkeypatch.setattr(cli, "Estimator", HookedEstimator)
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "5"))
    assert code == 1
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[0].startswith("acetui: out of memory on batch 3: lower --batch-size")
    (run_id,) = run_records(isolated_app_dirs)
    assert lines[1:] == [f"acetui: run {run_id} failed; resume with: acetui resume {run_id}"]
    assert "2 batches;" in out


def _overflow_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """Three good samples and one whose finite values (1e30) overflow the squared error in fp32."""
    folder = tmp_path / "overflow"
    write_dataset(folder, count=3, condition_width=TINY.condition_width, seed=2, frames=(9, 12))
    huge = sample_dict()
    huge["target_latents"] = torch.full((10, 64), 1e30)
    torch.save(huge, folder / "huge.pt")
    return folder, folder / "huge.pt"


def _means_of_included(record: dict) -> list[float]:
    included = [batch["norms"] for batch in record["batches"] if not batch["excluded"]]
    return [sum(column) / len(included) for column in zip(*included)]


def test_non_finite_loss_is_excluded_and_counted(tmp_path, checkpoint_root, capsys, isolated_app_dirs):
    folder, huge = _overflow_dataset(tmp_path)
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, folder, "--estimate-batches", "8", "--seed", "4"))
    assert code == 0, err
    (record,) = run_records(isolated_app_dirs).values()
    excluded = [batch for batch in record["batches"] if batch["excluded"]]
    assert len(excluded) == 2  # the huge sample, once in each of the two epochs
    assert all(batch["samples"] == [str(huge)] for batch in excluded)
    assert all(batch["excluded"] == "non-finite loss" and batch["norms"] == [] for batch in excluded)
    assert excluded[0]["loss"] is None  # JSON has no NaN: the record says null
    assert "6 batches, 2 excluded;" in out

    result = cli.load_record(next(isolated_app_dirs.runs.glob("*.json")))
    assert math.isnan(result.excluded_batches[0].loss)
    assert math.isfinite(result.mean_loss)
    ranked = {item.module: item.sensitivity for item in rank_modules(result, "grad-norm", "module")}
    expected = dict(zip(record["modules"], _means_of_included(record)))
    assert ranked == pytest.approx(expected, rel=1e-12)  # the excluded batches are not averaged in


def test_non_finite_gradient_is_excluded_and_counted(checkpoint_root, dataset_dir, isolated_app_dirs):
    HookedEstimator.install = staticmethod(infinite_gradient_on_call(2))
    HookedEstimator.layer = 2
    events = []
    try:
        result = HookedEstimator(
            _request(checkpoint_root, dataset_dir, batches=4), on_event=events.append, record_dir=isolated_app_dirs.runs
        ).run()
    finally:
        HookedEstimator.layer = 1
    assert result.status == "complete"
    (bad,) = result.excluded_batches
    assert bad.index == 1 and bad.excluded == "non-finite gradient" and bad.norms == []
    assert math.isfinite(bad.loss)  # only the gradient was poisoned
    assert [event.excluded for event in events if isinstance(event, BatchDone)] == ["", "non-finite gradient", "", ""]

    (record,) = run_records(isolated_app_dirs).values()
    assert [batch["excluded"] for batch in record["batches"]] == ["", "non-finite gradient", "", ""]
    ranked = {item.module: item.sensitivity for item in rank_modules(result, "grad-norm", "module")}
    assert all(math.isfinite(value) for value in ranked.values())
    assert ranked == pytest.approx(dict(zip(record["modules"], _means_of_included(record))), rel=1e-12)

    clean = Estimator(_request(checkpoint_root, dataset_dir, batches=4)).run()
    for index in (0, 2, 3):  # the poisoned batch left nothing behind for the batches after it
        assert result.batches[index].norms == clean.batches[index].norms


def test_cancel_saves_a_partial_result_that_resumes_exactly(checkpoint_root, dataset_dir, isolated_app_dirs):
    """Cancel arrives while batch 2 is computing (as from the TUI): that batch finishes, then the run stops."""
    request = _request(checkpoint_root, dataset_dir, batches=5)
    events = []

    def install(layer):
        layer.register_forward_pre_hook(lambda module, inputs: cancel_after_first_batch())

    def cancel_after_first_batch():
        if any(isinstance(event, BatchDone) for event in events):
            estimator.cancel()

    HookedEstimator.install = staticmethod(install)
    estimator = HookedEstimator(request, on_event=events.append, record_dir=isolated_app_dirs.runs)
    partial = estimator.run()
    assert [type(event).__name__ for event in events][-3:] == ["BatchDone", "BatchDone", "RunStopped"]
    assert isinstance(events[-1], RunStopped)
    assert partial.status == "cancelled" and partial.partial and partial.completed_batches == 2
    (path,) = isolated_app_dirs.runs.glob("*.json")
    saved = json.loads(path.read_text())
    assert saved["status"] == "cancelled" and len(saved["batches"]) == 2

    resumed = Estimator(request, resume=cli.load_record(path), record_dir=isolated_app_dirs.runs).run()
    assert resumed.status == "complete" and resumed.run_id == partial.run_id
    assert [batch.index for batch in resumed.batches] == [0, 1, 2, 3, 4]
    straight = Estimator(request).run()
    assert [b.norms for b in resumed.batches] == [b.norms for b in straight.batches]
    assert [b.loss for b in resumed.batches] == [b.loss for b in straight.batches]


CHANGED = "its samples' names, lengths, sizes or contents changed since the run began"


def _stopped_run(checkpoint_root, folder, runs):
    write_dataset(folder, count=5, condition_width=TINY.condition_width, seed=3, frames=(9, 12))
    estimator = Estimator(
        _request(checkpoint_root, folder, batches=4),
        record_dir=runs,
        on_event=lambda event: isinstance(event, BatchDone) and estimator.cancel(),
    )
    partial = estimator.run()
    assert partial.status == "cancelled"
    return partial


def test_resume_refuses_a_dataset_that_changed(tmp_path, checkpoint_root, capsys, isolated_app_dirs):
    """The batch plan indexes the scanned samples, so a folder that gained a sample cannot resume exactly."""
    folder = tmp_path / "growing"
    partial = _stopped_run(checkpoint_root, folder, isolated_app_dirs.runs)
    torch.save(sample_dict(), folder / "zz_new.pt")
    code, out, err = run_cli(capsys, "resume", partial.run_id, "-q")
    assert code == 1
    assert one_error_line(err) == (
        f"acetui: {folder}: now holds 6 valid samples, run {partial.run_id} had 5; "
        "it cannot be resumed exactly (start a new run)"
    )
    (record,) = run_records(isolated_app_dirs).values()
    assert record["status"] == "cancelled" and len(record["batches"]) == partial.completed_batches


def test_resume_refuses_replaced_samples_and_changed_weights(tmp_path, checkpoint_root, capsys, isolated_app_dirs):
    """Samples replaced under the same names, or a checkpoint replaced in place, resumed without a word into
    a ranking mixing two datasets or two models."""
    folder = tmp_path / "replaced"
    partial = _stopped_run(checkpoint_root, folder, isolated_app_dirs.runs)
    first = sorted(folder.glob("*.pt"))[0]
    original = first.read_bytes()
    torch.save(sample_dict(frames=30), first)
    code, out, err = run_cli(capsys, "resume", partial.run_id, "-q")
    changed = f"{CHANGED}; run {partial.run_id} cannot"
    assert code == 1 and one_error_line(err).startswith(f"acetui: {folder}: {changed}")
    first.write_bytes(original)

    weights = tmp_path / "checkpoints"
    shutil.copytree(checkpoint_root, weights)
    moved = replace(partial.request, checkpoint_dir=weights)
    record = isolated_app_dirs.runs / f"{partial.run_id}.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "request": moved.to_dict()}))
    folder_of = weights / "acestep-v15-turbo"
    write_checkpoint(folder_of, TINY, seed=7)
    code, out, err = run_cli(capsys, "resume", partial.run_id, "-q")
    assert code == 1 and one_error_line(err).startswith(f"acetui: {folder_of}: the weight of decoder.layers.0")
    assert run_records(isolated_app_dirs)[partial.run_id]["status"] == "cancelled"


def _replace_values(path: Path) -> None:
    """Other target latents of the same shape and dtype saved over ``path``: its name, lengths and size stay."""
    size = path.stat().st_size
    data = torch.load(path, weights_only=True)
    torch.save({**data, "target_latents": torch.randn_like(data["target_latents"])}, path)
    assert path.stat().st_size == size


def test_resume_refuses_samples_whose_values_were_replaced(tmp_path, checkpoint_root, capsys, isolated_app_dirs):
    """A sample rewritten with other values under the same name, lengths and file size resumed without a word
    into a ranking mixing two datasets; put back (with a new modification time), the run resumes."""
    folder = tmp_path / "rewritten"
    partial = _stopped_run(checkpoint_root, folder, isolated_app_dirs.runs)
    first = sorted(folder.glob("*.pt"))[0]
    original = first.read_bytes()
    _replace_values(first)
    code, out, err = run_cli(capsys, "resume", partial.run_id, "-q")
    assert code == 1
    assert one_error_line(err) == (
        f"acetui: {folder}: {CHANGED}; run {partial.run_id} cannot be resumed exactly (start a new run)"
    )
    assert run_records(isolated_app_dirs)[partial.run_id]["status"] == "cancelled"

    first.write_bytes(original)
    code, out, err = run_cli(capsys, "resume", partial.run_id, "-q")
    assert code == 0, err
    assert run_records(isolated_app_dirs)[partial.run_id]["status"] == "complete"


def test_a_record_from_before_content_fingerprints_is_checked_by_names_and_sizes(
    tmp_path, checkpoint_root, capsys, isolated_app_dirs
):
    """Such a record cannot tell replaced values; refusing all of them would strand every interrupted run."""
    folder = tmp_path / "older"
    partial = _stopped_run(checkpoint_root, folder, isolated_app_dirs.runs)
    path = isolated_app_dirs.runs / f"{partial.run_id}.json"
    record = json.loads(path.read_text())
    del record["metadata"]["dataset"]["content_fingerprint"]
    path.write_text(json.dumps(record))
    _replace_values(sorted(folder.glob("*.pt"))[0])
    code, out, err = run_cli(capsys, "resume", partial.run_id, "-q")
    assert code == 0, err
    assert run_records(isolated_app_dirs)[partial.run_id]["status"] == "complete"


def test_the_cpu_allocators_failure_is_out_of_memory_like_cudas():
    """torch raises a plain RuntimeError when the CPU cannot allocate (a sample far longer than the rest): it
    gets the out-of-memory advice, not "unexpected RuntimeError (please report this)"."""
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**60, dtype=torch.uint8)
    assert out_of_memory(caught.value)
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with pytest.raises(RuntimeError) as caught:
        torch.ones(2, 3) @ torch.ones(2, 3)
    assert not out_of_memory(caught.value)
