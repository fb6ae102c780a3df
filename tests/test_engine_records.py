"""Run records as the engine writes and reads them: who owns a running record, absolute folders, strict
JSON, records that do not fit their modules, saves that fail, and settings refused before a run."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acetui.arguments import build_parser
from acetui.errors import AcetuiError
from acetui.estimate import BatchDone, EstimateRequest, Estimator, RunFailed, RunStarted, RunWarning, rank_modules
from acetui.estimate.ownership import process_owner, run_owner_alive
from acetui.estimate.result import EstimateResult
from acetui.estimate.sidestep import export_fisher_map
from acetui.history import list_runs, load_record, top_module
from acetui.progress import write_outputs
from tests.support import (
    PYTHON,
    REPO,
    estimate_args,
    one_error_line,
    run_cli,
    run_records,
    subprocess_env,
    subprocess_runs_dir,
)
from tests.test_reliability_faults import _overflow_dataset


def _request(checkpoint_root: Path, dataset: Path, **settings) -> EstimateRequest:
    return EstimateRequest(checkpoint_root, "turbo", dataset, device="cpu", dtype="fp32", **settings)


def _resume_one_batch(record: EstimateResult, record_dir: Path) -> tuple[EstimateResult | None, list]:
    """Resume ``record`` and cancel it after its first new batch; the events it sent."""
    events: list = []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, BatchDone):
            estimator.cancel()

    estimator = Estimator(record.request, on_event=on_event, record_dir=record_dir, resume=record)
    return estimator.run(), events


# ------------------------------------------------------------------------------------ who runs a record


def _wait_until_running(runs: Path, process: subprocess.Popen) -> Path:
    """The record of the run ``process`` makes, once it holds a batch (records are replaced atomically)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for path in runs.glob("*.json"):
            record = json.loads(path.read_text())
            if record["status"] == "running" and record["batches"]:
                return path
        if process.poll() is not None:
            pytest.fail(f"the run ended early ({process.returncode}): {process.stderr.read()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("no running record within 60 s")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals needed")
def test_a_run_that_another_live_process_writes_is_not_resumed(tmp_path, checkpoint_root, dataset_dir, capsys):
    command = [*PYTHON, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "100000")]
    process = subprocess.Popen(
        command, cwd=REPO, env=subprocess_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        path = _wait_until_running(subprocess_runs_dir(tmp_path), process)
        record = load_record(path)
        assert record.metadata["owner"]["pid"] == process.pid and run_owner_alive(record)
        refusal = f"run {record.run_id} is still running (pid {process.pid} on host {socket.gethostname()})"

        result, events = _resume_one_batch(record, path.parent)
        assert result is None and isinstance(events[-1], RunFailed) and events[-1].message == refusal
        assert not any(isinstance(event, BatchDone) for event in events)  # refused before loading anything
        code, out, err = run_cli(capsys, "resume", path, "-q")
        assert code == 1 and one_error_line(err) == f"acetui: {refusal}"
        assert load_record(path).metadata["owner"]["pid"] == process.pid  # the owner's record is left alone
        code, out, err = run_cli(capsys, "show", str(path))  # its ranking so far, without offering a resume
        assert code == 0 and out.startswith("rank") and one_error_line(err).endswith("(still running)")
    finally:
        process.kill()
        process.wait()

    killed = load_record(path)
    kept = killed.completed_batches
    assert killed.status == "running" and not run_owner_alive(killed)  # nobody marked it: resumable as before
    lock = path.with_suffix(".lock")
    assert lock.is_file()  # the killed owner's lock file stays, but its lock died with it
    result, events = _resume_one_batch(killed, path.parent)
    assert result.status == "cancelled" and result.completed_batches == kept + 1
    saved = load_record(path)
    assert saved.completed_batches == result.completed_batches and "owner" not in saved.metadata
    assert not lock.exists()  # removed by the run that held it last


RESUME_ON_GO = """
import sys, time
from pathlib import Path
from acetui import cli
print("ready", flush=True)
while not Path(sys.argv[1]).exists():
    time.sleep(0.001)
sys.exit(cli.main(["resume", sys.argv[2], "-q"]))
"""


def test_two_resumes_started_together_run_it_once(tmp_path, checkpoint_root, dataset_dir):
    """Both find the record stopped and no owner (written only once the model is loaded): the lock
    beside the record lets exactly one of them in."""
    runs = subprocess_runs_dir(tmp_path)
    estimator = Estimator(
        _request(checkpoint_root, dataset_dir, batches=100000),
        record_dir=runs,
        on_event=lambda event: isinstance(event, BatchDone) and estimator.cancel(),
    )
    run_id = estimator.run().run_id
    go = tmp_path / "go"
    command = [sys.executable, "-c", RESUME_ON_GO, str(go), run_id]
    processes = [
        subprocess.Popen(
            command, cwd=REPO, env=subprocess_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        assert [process.stdout.readline() for process in processes] == ["ready\n"] * 2  # imports done
        go.touch()
        deadline = time.monotonic() + 60
        while all(process.poll() is None for process in processes) and time.monotonic() < deadline:
            time.sleep(0.05)
        (loser,) = [process for process in processes if process.poll() is not None]
        (winner,) = [process for process in processes if process is not loser]
        refusals = {
            f"acetui: run {run_id} is already being taken up ({runs / run_id}.lock is locked)",
            f"acetui: run {run_id} is still running (pid {winner.pid} on host {socket.gethostname()})",
        }
        assert loser.returncode == 1 and one_error_line(loser.stderr.read()) in refusals
        assert load_record(_wait_until_running(runs, winner)).metadata["owner"]["pid"] == winner.pid
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_a_run_active_in_this_process_is_not_resumed_again(tmp_path, checkpoint_root, dataset_dir):
    """The TUI's case: History asks to resume the run its Run screen is running."""
    attempts: list = []

    def on_event(event) -> None:
        if isinstance(event, RunStarted):
            attempts.append(event.run_id)
        if isinstance(event, BatchDone):
            attempts.append(_resume_one_batch(load_record(tmp_path / f"{attempts[0]}.json"), tmp_path))
            first.cancel()

    first = Estimator(_request(checkpoint_root, dataset_dir, batches=50), on_event=on_event, record_dir=tmp_path)
    result = first.run()
    run_id, (resumed, events) = attempts
    assert resumed is None and isinstance(events[-1], RunFailed)
    assert events[-1].message == f"run {run_id} is still running (pid {os.getpid()} on host {socket.gethostname()})"
    assert result.status == "cancelled" and result.completed_batches == 1

    # This process wrote "running" but no longer runs it (as after a failed last save): resumable.
    path = tmp_path / f"{run_id}.json"
    data = json.loads(path.read_text())
    data["status"], data["metadata"]["owner"] = "running", process_owner()
    path.write_text(json.dumps(data))
    left = load_record(path)
    assert not run_owner_alive(left)
    result, _ = _resume_one_batch(left, tmp_path)
    assert result.status == "cancelled" and result.completed_batches == 2


# ------------------------------------------------------------------------------------- what is recorded


def test_relative_folders_are_recorded_absolute(
    tmp_path, checkpoint_root, dataset_dir, capsys, monkeypatch, isolated_app_dirs
):
    monkeypatch.chdir(os.path.commonpath([checkpoint_root, dataset_dir]))
    relative = [Path(os.path.relpath(folder)) for folder in (checkpoint_root, dataset_dir)]
    code, out, err = run_cli(capsys, *estimate_args(*relative, "--estimate-batches", "1"))
    assert code == 0, err
    (record,) = run_records(isolated_app_dirs).values()
    assert record["request"]["dataset_dir"] == str(dataset_dir)
    assert record["request"]["checkpoint_dir"] == str(checkpoint_root)
    assert record["metadata"]["dataset"]["folder"] == str(dataset_dir)
    monkeypatch.chdir(tmp_path)  # History and resume read it from anywhere
    (run,), problems = list_runs()
    assert run.request.dataset_dir == dataset_dir and not problems
    assert EstimateRequest(Path("~/x"), "turbo", Path("y")).dataset_dir == tmp_path / "y"


def test_the_record_is_strict_json_and_old_nan_records_still_read(tmp_path, checkpoint_root, isolated_app_dirs):
    folder, _ = _overflow_dataset(tmp_path)
    result = Estimator(_request(checkpoint_root, folder, batches=8, seed=4), record_dir=isolated_app_dirs.runs).run()
    assert len(result.excluded_batches) == 2 and not math.isfinite(result.excluded_batches[0].loss)
    path = isolated_app_dirs.runs / f"{result.run_id}.json"

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in the record is not JSON")

    data = json.loads(path.read_text(), parse_constant=no_constants)
    assert [batch["loss"] for batch in data["batches"] if batch["excluded"]] == [None, None]
    assert [math.isnan(batch.loss) for batch in load_record(path).excluded_batches] == [True, True]

    for batch in data["batches"]:  # what older versions wrote: bare NaN
        batch["loss"] = math.nan if batch["loss"] is None else batch["loss"]
    path.write_text(json.dumps(data))
    assert "NaN" in path.read_text()
    old = load_record(path)
    assert len(old.excluded_batches) == 2 and math.isnan(old.excluded_batches[1].loss)
    assert rank_modules(old) == rank_modules(result)


@pytest.fixture(scope="module")
def good_record(checkpoint_root, dataset_dir, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("good-record")
    result = Estimator(_request(checkpoint_root, dataset_dir, batches=2, seed=3), record_dir=folder).run()
    return json.loads((folder / f"{result.run_id}.json").read_text())


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda data: data["batches"][1]["norms"].pop(), "batch 1 has 31 norms for 32 modules"),
        (lambda data: data["numels"].pop(), "31 numels for 32 modules"),
        (lambda data: data["weight_norms"].append(1.0), "33 weight_norms for 32 modules"),
        (lambda data: data["modules"].pop(0), "31 modules"),
        # hand edits that read as numbers but would print nan, fail a JSON export or rank a module twice
        (lambda data: data["batches"][1]["norms"].__setitem__(3, math.nan), "batch 1 norms holds nan, not a finite"),
        (lambda data: data["batches"][0]["norms"].__setitem__(0, math.inf), "batch 0 norms holds inf, not a finite"),
        (lambda data: data["batches"][0]["norms"].__setitem__(0, -1.0), "batch 0 norms holds -1.0, below 0"),
        (lambda data: data["weight_norms"].__setitem__(0, "1.0"), "weight_norms holds '1.0', not a finite number"),
        (lambda data: data["modules"].__setitem__(1, data["modules"][0]), "is listed twice"),
    ],
)
def test_a_record_that_does_not_fit_its_modules_is_listed_as_a_problem(edit, reason, good_record, isolated_app_dirs):
    runs = isolated_app_dirs.runs
    runs.mkdir(parents=True)
    (runs / f"{good_record['run_id']}.json").write_text(json.dumps(good_record))
    broken = json.loads(json.dumps(good_record))
    edit(broken)
    bad = runs / "20250101-000000-bbbbbb.json"
    bad.write_text(json.dumps(broken))
    runs_read, problems = list_runs()
    assert [run.run_id for run in runs_read] == [good_record["run_id"]]
    assert rank_modules(runs_read[0].load())  # the rest of the history still ranks
    (problem,) = problems
    assert problem.path == bad.with_suffix(".json.bad") and problem.path.exists()
    assert problem.reason.startswith(f"{bad}: not a valid run record (") and reason in problem.reason
    assert "\n" not in problem.reason


def test_a_save_that_keeps_failing_is_reported_not_raised(tmp_path, checkpoint_root, dataset_dir):
    """The records' folder turns into a file after the first batch: every later save fails, the one in
    the failure handling too; run() still ends with RunFailed naming the file."""
    runs = tmp_path / "runs"
    events: list = []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, BatchDone) and event.index == 0:
            runs.rename(tmp_path / "moved")
            runs.write_text("not a folder\n")

    request = _request(checkpoint_root, dataset_dir, batches=3)
    # saved after every batch, so the second batch's save is the one that fails
    result = Estimator(request, on_event=on_event, record_dir=runs, save_share=1.0).run()
    failed = events[-1]
    assert isinstance(failed, RunFailed) and failed.result is result
    assert result.status == "failed" and result.completed_batches == 2 and result.message == failed.message
    assert failed.message.startswith(f"{runs / result.run_id}.json: cannot write (") and "\n" not in failed.message
    saved = load_record(tmp_path / "moved" / f"{result.run_id}.json")  # what was saved before stays resumable
    assert saved.status == "running" and saved.completed_batches == 1


# ------------------------------------------------------------------------------- settings and warnings


def test_a_seed_outside_0_to_2_63_is_refused_up_front(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    for seed in (2**64, 2**63, -1):
        with pytest.raises(AcetuiError, match=f"seed must be at least 0 and below 2\\*\\*63, got {seed}"):
            _request(checkpoint_root, dataset_dir, seed=seed)
    assert _request(checkpoint_root, dataset_dir, seed=2**63 - 1).seed == 2**63 - 1
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--seed", str(2**64)))
    assert code == 1
    assert one_error_line(err) == f"acetui: seed must be at least 0 and below 2**63, got {2**64}"
    assert run_records(isolated_app_dirs) == {}


def _below_floor(budget: str, floor: str, units: str) -> str:
    return f"acetui: --rank-budget {budget} is below {floor}, the cost of --rank-min 16 on even the {units} of turbo"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--rank-budget", "0", "--rank-min", "0"), "acetui: minimum rank must be at least 1, got 0"),
        (("--rank-budget", "0", "--rank-max", "8"), "acetui: maximum rank 8 is below the minimum rank 16"),
        (("--rank-budget", "-5"), "acetui: --rank-budget must be at least 0 (0: what --base-rank costs), got -5"),
        (
            ("--rank-budget", "0", "--base-rank", "8"),
            "acetui: --rank-budget 0 spends what --base-rank 8 costs, below --rank-min 16",
        ),
        # the tiny decoder's cheapest projections are its 16 key/value ones, (32, 64): 96 LoRA parameters a
        # rank; its 16 others are (64, 64): 128; a block has two of each
        (("--rank-budget", "6143", "--top-k", "4"), _below_floor("6,143", "6,144", "4 cheapest modules")),
        (("--rank-budget", "57343", "--top-k", "99"), _below_floor("57,343", "57,344", "32 cheapest modules")),
        (
            ("--rank-budget", "14335", "--top-k", "2", "--granularity", "layer"),
            _below_floor("14,335", "14,336", "2 cheapest layer blocks"),
        ),
    ],
)
def test_a_bad_rank_budget_fails_before_the_run(
    flags, message, tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs
):
    peft = tmp_path / "peft.json"
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--peft-output", peft, *flags))
    assert code == 1 and one_error_line(err) == message
    assert run_records(isolated_app_dirs) == {} and out == ""  # no model loaded, no batch run
    assert not peft.exists()


@pytest.mark.parametrize(("granularity", "units", "kind"), [("module", 32, "modules"), ("layer", 8, "layer blocks")])
def test_a_top_k_beyond_the_scored_units_is_capped_with_a_warning(
    granularity, units, kind, checkpoint_root, dataset_dir
):
    events: list = []
    request = _request(checkpoint_root, dataset_dir, batches=2, top_k=9999, granularity=granularity)
    result = Estimator(request, on_event=events.append).run()
    expected = f"top-k 9999 is more than the {units} {kind} scored; using {units}"
    assert [event.message for event in events if isinstance(event, RunWarning)] == [expected]
    assert result.request.top_k == units and result.metadata["warnings"] == [expected]


def test_the_cli_prints_the_top_k_warning(checkpoint_root, dataset_dir, capsys):
    code, out, err = run_cli(
        capsys, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "2", "--top-k", "9999")
    )
    assert code == 0
    assert err.splitlines() == ["acetui: warning: top-k 9999 is more than the 32 modules scored; using 32"]
    assert "top-32 stability" in out


def test_effective_ranks_that_cannot_be_had_are_a_warning(tmp_path, checkpoint_root, dataset_dir, capsys):
    """The checkpoint is gone by the time the map is written: the map still comes, with -1 and a reason."""
    moved = tmp_path / "checkpoints" / "acestep-v15-turbo"
    shutil.copytree(checkpoint_root / "acestep-v15-turbo", moved)
    result = Estimator(EstimateRequest(tmp_path / "checkpoints", "turbo", dataset_dir, batches=2)).run()
    shutil.rmtree(moved)

    warnings: list[str] = []
    path = export_fisher_map(result, tmp_path / "map.json", warn=warnings.append)
    assert {module["effective_rank"] for module in json.loads(path.read_text())["modules"]} == {-1}
    (warning,) = warnings
    assert warning.startswith("effective ranks unknown (") and str(moved) in warning and "\n" not in warning

    args = build_parser().parse_args(["estimate", "--fisher-map", str(tmp_path / "cli-map.json"), "-q"])
    capsys.readouterr()
    write_outputs(result, args)
    assert capsys.readouterr().err == f"acetui: warning: {warning}\n"


def test_the_top_module_listed_is_the_runs_own_unit_by_its_own_score(good_record):
    """History and ``acetui runs`` named a layer run's top projection (by grad-norm) as its top unit."""
    for granularity, score in (("layer", "grad-norm"), ("module", "fisher"), ("layer", "relative")):
        data = json.loads(json.dumps(good_record))
        data["request"].update(granularity=granularity, score=score)
        run = EstimateResult.from_dict(data)
        expected = rank_modules(run, score, granularity)[0].module.removeprefix("decoder.")
        assert top_module(run) == expected
        assert expected.count(".") == (2 if granularity == "layer" else 3)
