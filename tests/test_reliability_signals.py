"""Signals and kills on a real ``python -m acetui`` process, then ``acetui resume``.

Ctrl+C (SIGINT), SIGTERM and SIGHUP stop the run after the current batch: exit 128 + the signal's number
(130 for Ctrl+C, as a shell reports a command the signal killed), the partial result saved and marked.
SIGKILL loses at most the batches the record did not hold yet (with batches this short and records this
small, the batch in flight). Either way ``acetui resume RUN`` finishes the run, and the result equals an
uninterrupted run with the same seed exactly (CPU, fp32, one thread).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from acetui.data import write_dataset
from acetui.estimate import EstimateRequest, Estimator, rank_modules
from acetui.estimate.result import EstimateResult
from acetui.history import load_record
from acetui.model.synthetic import TINY
from tests.support import PYTHON, REPO, estimate_args, subprocess_env, subprocess_runs_dir

BATCHES = 12
SEED = 9
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals needed")


@pytest.fixture(scope="module")
def short_dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("short-dataset")
    write_dataset(folder, count=5, condition_width=TINY.condition_width, seed=8, frames=(9, 12))
    return folder


def _estimate_command(root: Path, dataset: Path, batches: int = BATCHES) -> list[str]:
    more = ("--seed", str(SEED), "--estimate-batches", str(batches))
    return [*PYTHON, *estimate_args(root, dataset, *more, quiet=False)]


def _start(tmp_path: Path, command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=REPO, env=subprocess_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _record(tmp_path: Path) -> tuple[Path, dict] | None:
    paths = list(subprocess_runs_dir(tmp_path).glob("*.json"))
    if not paths:
        return None
    assert len(paths) == 1
    return paths[0], json.loads(paths[0].read_text())


def _wait_for_batches(tmp_path: Path, process: subprocess.Popen, count: int) -> None:
    """Poll the record (rewritten atomically after every batch) until it holds ``count`` batches."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = _record(tmp_path)
        if found is not None and len(found[1]["batches"]) >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"process ended early ({process.returncode}): {process.stderr.read()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"no {count} batches within 60 s")


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, out, err


def _resume(tmp_path: Path, run_id: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [*PYTHON, "resume", run_id, "--quiet"],
        cwd=REPO,
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def uninterrupted(checkpoint_root, short_dataset):
    """The same request run straight through in this process, on one thread like the subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        request = EstimateRequest(
            checkpoint_root, "turbo", short_dataset, batches=BATCHES, seed=SEED, dtype="fp32", device="cpu"
        )
        return Estimator(request).run()
    finally:
        torch.set_num_threads(threads)


def _assert_same_result(resumed, straight) -> None:
    assert resumed.status == "complete" and resumed.completed_batches == BATCHES
    assert [b.index for b in resumed.batches] == list(range(BATCHES))
    assert [b.samples for b in resumed.batches] == [b.samples for b in straight.batches]
    assert [b.timesteps for b in resumed.batches] == [b.timesteps for b in straight.batches]
    assert [b.loss for b in resumed.batches] == [b.loss for b in straight.batches]
    assert [b.norms for b in resumed.batches] == [b.norms for b in straight.batches]
    for score in ("grad-norm", "fisher", "relative"):
        assert rank_modules(resumed, score, "module") == rank_modules(straight, score, "module")


@pytest.mark.parametrize("name", ["SIGINT", "SIGHUP"])
def test_stop_signal_saves_a_partial_result(name, tmp_path, checkpoint_root, short_dataset):
    if not hasattr(signal, name):
        pytest.skip(f"no {name} here")
    process = _start(tmp_path, _estimate_command(checkpoint_root, short_dataset, batches=200))
    _wait_for_batches(tmp_path, process, 1)
    process.send_signal(getattr(signal, name))
    code, out, err = _finish(process)
    assert code == 128 + getattr(signal, name), err
    assert "Traceback" not in err
    path, record = _record(tmp_path)
    run_id = record["run_id"]
    assert f"acetui: {name}: stopping after the current batch (again to abort)" in err
    assert err.splitlines()[-1] == f"acetui: run {run_id} interrupted; resume with: acetui resume {run_id}"
    assert record["status"] == "interrupted" and 1 <= len(record["batches"]) < 200
    assert load_record(path).partial
    assert "--target-modules" in out  # the partial ranking is still shown


def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path, checkpoint_root, short_dataset, uninterrupted):
    process = _start(tmp_path, _estimate_command(checkpoint_root, short_dataset))
    _wait_for_batches(tmp_path, process, 2)
    process.send_signal(signal.SIGTERM)
    code, out, err = _finish(process)
    assert code == 128 + signal.SIGTERM and "Traceback" not in err
    path, record = _record(tmp_path)
    assert record["status"] == "interrupted" and 2 <= len(record["batches"]) < BATCHES

    code, out, err = _resume(tmp_path, record["run_id"])
    assert code == 0, err
    assert err == ""
    assert f"{BATCHES} batches;" in out
    _assert_same_result(load_record(path), uninterrupted)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, checkpoint_root, short_dataset, uninterrupted):
    process = _start(tmp_path, _estimate_command(checkpoint_root, short_dataset))
    _wait_for_batches(tmp_path, process, 2)
    process.kill()
    _finish(process)
    path, record = _record(tmp_path)
    assert record["status"] == "running"  # nobody got to mark it: the kill was immediate
    kept = len(record["batches"])
    assert 2 <= kept < BATCHES
    # At most the temporary file of a write in flight is left; the record itself is never torn. The lock
    # file stays too, but its lock died with the process: it does not stop the resume.
    lock = path.with_suffix(".lock")
    assert lock.is_file() and all(p in (path, lock) or p.name.endswith(".tmp") for p in path.parent.iterdir())

    code, out, err = _resume(tmp_path, record["run_id"][:15])  # a unique prefix is enough
    assert code == 0, err
    assert not lock.exists()
    resumed = load_record(path)
    assert resumed.batches[:kept] == EstimateResult.from_dict(record).batches  # kept batches are not redone
    _assert_same_result(resumed, uninterrupted)


def test_second_signal_aborts_at_once(tmp_path, checkpoint_root):
    """The second Ctrl+C is sent once the first was heard (two sent together are one to the kernel and to
    Python), in batches long enough (~0.2 s) for the run to be still in the one the first lets finish."""
    slow = tmp_path / "slow"
    write_dataset(slow, count=4, condition_width=TINY.condition_width, seed=8, frames=(3000, 3000))
    command = [*_estimate_command(checkpoint_root, slow, batches=200), "--batch-size", "4"]
    process = _start(tmp_path, command)
    _wait_for_batches(tmp_path, process, 1)
    process.send_signal(signal.SIGINT)
    heard = []
    for line in process.stderr:
        heard.append(line)
        if "SIGINT: stopping after the current batch" in line:
            break
    process.send_signal(signal.SIGINT)
    code, out, rest = _finish(process)
    err = "".join(heard) + rest
    assert code == 130 and "Traceback" not in err, err
    assert err.splitlines()[-1] == "acetui: aborted", err
    path, record = _record(tmp_path)
    assert 1 <= len(record["batches"]) < 200  # what was saved is still a readable record
    assert load_record(path).partial
