"""Multi-process runs: two gloo ranks on the CPU produce the single-process result."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import torch

from acetui.cli import main
from acetui.errors import AcetuiError
from acetui.estimate import BatchDone, EstimateRequest, Estimator
from acetui.estimate.distributed import World, gather_exchange, strip_nproc, world_from_env
from acetui.estimate.result import BatchRecord
from acetui.history import load_record
from acetui.model.synthetic import TINY, write_checkpoint
from tests.support import PYTHON, REPO, estimate_args, one_error_line, run_cli, subprocess_env, subprocess_runs_dir
from tests.test_engine_records import _wait_until_running
from tests.test_planted_signal import FACTOR, planted_state


def test_world_from_env():
    assert world_from_env({}) == World(0, 1, 0)
    assert world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    assert world_from_env({"WORLD_SIZE": "2", "RANK": "1"}).local_rank == 1
    with pytest.raises(AcetuiError):
        world_from_env({"WORLD_SIZE": "2", "RANK": "2"})


def test_strip_nproc():
    assert strip_nproc(["estimate", "--nproc", "2", "-q"]) == ["estimate", "-q"]
    assert strip_nproc(["estimate", "--nproc=3", "--seed", "1"]) == ["estimate", "--seed", "1"]


def test_exchange_merges_every_rank_in_batch_order(monkeypatch):
    records = [BatchRecord(1, 0.5, [0.1], ["b"], 0.0), BatchRecord(0, 0.4, [0.2], ["a"], 0.0)]
    calls = []

    def fake_gather(out, obj, group=None):
        calls.append(group)
        out[0], out[1] = obj, ([BatchRecord(2, 0.3, [], [], 0.0)], True)

    monkeypatch.setattr(torch.distributed, "all_gather_object", fake_gather)
    merged, stopping = gather_exchange(World(0, 2, 0))(records, False)
    assert [record.index for record in merged] == [0, 1, 2] and stopping


@pytest.fixture()
def planted_root(tmp_path):
    root = tmp_path / "checkpoints"
    write_checkpoint(root / "acestep-v15-turbo", TINY, dtype=torch.float32, state=planted_state(FACTOR))
    return root


def test_two_gloo_ranks_equal_one_process(planted_root, dataset_dir, tmp_path, monkeypatch, capsys):
    # The spawned ranks are separate processes: point their platform folders at the test's temp folder.
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / "xdg"))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = {"auto_batches": True, "max_batches": 6, "stability_target": 0.9, "top_k": 2, "device": "cpu"}
    single = Estimator(
        EstimateRequest(checkpoint_dir=planted_root, variant="turbo", dataset_dir=dataset_dir, **settings)
    ).run()
    assert single.completed_batches == 3  # stops inside the second round of two ranks
    output = tmp_path / "ranking.json"
    argv = [
        "estimate",
        "-c",
        str(planted_root),
        "-M",
        "turbo",
        "-d",
        str(dataset_dir),
        "--estimate-batches",
        "auto",
        "--max-batches",
        "6",
        "--top-k",
        "2",
        "--device",
        "cpu",
        "-q",
        "-o",
        str(output),
        "--nproc",
        "2",
    ]
    assert main(argv) == 0
    records = list((tmp_path / "xdg" / "acetui" / "runs").glob("*.json"))
    assert len(records) == 1  # rank 0 alone writes
    record = json.loads(records[0].read_text())
    assert record["status"] == "complete"
    assert record["metadata"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert record["metadata"]["stop_reason"] == "stable"
    batches = record["batches"]
    assert [batch["index"] for batch in batches] == [0, 1, 2]  # batch 3 of the last round was dropped
    for ours, theirs in zip(single.batches, batches):
        assert theirs["samples"] == ours.samples
        assert theirs["timesteps"] == ours.timesteps
        assert theirs["loss"] == pytest.approx(ours.loss, rel=1e-6)
        assert theirs["norms"] == pytest.approx(ours.norms, rel=1e-5)
    assert [entry[0] for entry in record["metadata"]["stability"]] == [2, 3]
    ranking = json.loads(output.read_text())
    assert [entry["module"] for entry in ranking[:2]] == [
        "decoder.layers.1.cross_attn.o_proj",
        "decoder.layers.3.self_attn.o_proj",
    ]
    assert ranking[0]["p_top_k"] == 1.0


def test_throughput_counts_a_rounds_batches_together(checkpoint_root, dataset_dir):
    """Rounds of two records that finish together (what two ranks hand rank 0): each record of a round
    shows the round's time per batch, not the few milliseconds between the two records."""
    events = []
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=6, device="cpu")
    estimator = Estimator(
        request, on_event=events.append, exchange=lambda records, stopping: (records, stopping), round_size=2
    )
    assert estimator.run().completed_batches == 6
    batches = [event for event in events if isinstance(event, BatchDone)]
    rounds = [batches[0:2], batches[2:4], batches[4:6]]
    for first, second in rounds:
        assert second.elapsed == first.elapsed and second.seconds_per_batch == first.seconds_per_batch
        assert second.samples_per_second == first.samples_per_second
    first_round = rounds[0][0]
    assert first_round.seconds_per_batch == pytest.approx(first_round.elapsed / 2)
    for done, (event, _) in enumerate(rounds[1:], start=1):  # later rounds leave out the first's one-off costs
        assert event.seconds_per_batch == pytest.approx((event.elapsed - first_round.elapsed) / (2 * done))
    assert [event.eta_seconds for event in batches] == pytest.approx(
        [(6 - event.index - 1) * event.seconds_per_batch for event in batches]
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals needed")
def test_a_stop_signal_sent_to_the_launcher_alone_stops_every_rank(tmp_path, checkpoint_root, dataset_dir):
    """``kill -INT <launcher>`` (not the terminal's Ctrl-C, which reaches the whole group) was ignored: the run
    went on to its end. The ranks now hear every signal through the launcher, once."""
    more = ("--estimate-batches", "100000", "--device", "cpu", "--nproc", "2")
    command = [*PYTHON, *estimate_args(checkpoint_root, dataset_dir, *more)]
    process = subprocess.Popen(
        command, cwd=REPO, env=subprocess_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        path = _wait_until_running(subprocess_runs_dir(tmp_path), process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        process.kill()
        process.wait()
    record = load_record(path)
    assert record.status == "interrupted" and 1 <= record.completed_batches < 100000


def test_more_ranks_than_the_device_has_are_refused(capsys, checkpoint_root, dataset_dir):
    """A thousand copies of torch filled the memory before anything was said; 0 ran as if not given."""
    cores = max(2, os.cpu_count() or 1)
    for count in (0, cores + 1):
        code, out, err = run_cli(
            capsys, *estimate_args(checkpoint_root, dataset_dir, "--device", "cpu", "--nproc", str(count))
        )
        expected = f"acetui: --nproc must be between 1 and {cores} here (one per CPU core), got {count}"
        assert code == 1 and one_error_line(err) == expected
