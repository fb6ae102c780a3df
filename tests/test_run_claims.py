"""Taking a run up to resume it, on the real engine: a stale copy continues from the record as it is
now, filesystems without file locks, and two estimators of one process on the same run."""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from acetui.estimate import BatchDone, Estimator, RunFailed, RunWarning, StageChanged
from acetui.estimate.result import EstimateResult
from acetui.history import load_record
from tests.support import one_error_line, run_cli
from tests.test_engine_records import _request

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX flock (Windows locks with msvcrt)")


def _resume(record: EstimateResult, record_dir: Path, new_batches: int) -> tuple[EstimateResult | None, list]:
    """Resume ``record`` and cancel it after ``new_batches`` more batches; the events it sent."""
    events: list = []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, BatchDone) and sum(isinstance(seen, BatchDone) for seen in events) == new_batches:
            estimator.cancel()

    estimator = Estimator(record.request, on_event=on_event, record_dir=record_dir, resume=record)
    return estimator.run(), events


def _partial_run(checkpoint_root: Path, dataset_dir: Path, runs: Path) -> Path:
    """The record of a 50-batch run cancelled after its first batch."""
    estimator = Estimator(
        _request(checkpoint_root, dataset_dir, batches=50),
        record_dir=runs,
        on_event=lambda event: isinstance(event, BatchDone) and estimator.cancel(),
    )
    return runs / f"{estimator.run().run_id}.json"


# ------------------------------------------------------------------------------------- a stale copy


def test_a_stale_copy_resumes_from_the_record_as_it_is_now(tmp_path, checkpoint_root, dataset_dir):
    """History lists the run at 1 batch; another process resumes it to 3 and stops; History then
    resumes the copy it listed: the record goes on to 4 batches, keeping the 2 added meanwhile."""
    path = _partial_run(checkpoint_root, dataset_dir, tmp_path)
    stale = load_record(path)
    elsewhere, _ = _resume(load_record(path), tmp_path, new_batches=2)
    assert elsewhere.completed_batches == 3
    kept = load_record(path).batches

    result, events = _resume(stale, tmp_path, new_batches=1)
    assert result.status == "cancelled" and result.completed_batches == 4
    saved = load_record(path)
    assert [batch.index for batch in saved.batches] == [0, 1, 2, 3]
    assert saved.batches[:3] == kept
    assert [event.index for event in events if isinstance(event, BatchDone)] == [3]


def test_a_setting_the_record_changed_meanwhile_is_followed(tmp_path, checkpoint_root, dataset_dir):
    """The stale copy asks for 50 batches; the record now says 3: the resume ends complete at 3."""
    path = _partial_run(checkpoint_root, dataset_dir, tmp_path)
    stale = load_record(path)
    data = json.loads(path.read_text())
    data["request"]["batches"] = 3
    path.write_text(json.dumps(data))

    result = Estimator(stale.request, record_dir=tmp_path, resume=stale).run()
    assert result.status == "complete" and result.completed_batches == 3
    assert result.request.batches == 3 and load_record(path).completed_batches == 3


# ------------------------------------------------------------------------ filesystems without locks


def _flock_failing_with(monkeypatch, code: int) -> None:
    """``flock`` as Lustre without -o flock (ENOSYS), NFS without lockd (ENOLCK) or a FUSE mount
    (EOPNOTSUPP) answer it: the standard library's call fails with that errno."""
    import fcntl

    def flock(fd: int, operation: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", flock)


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP])
def test_a_filesystem_without_locks_runs_unlocked_with_one_warning(
    code, tmp_path, checkpoint_root, dataset_dir, monkeypatch
):
    path = _partial_run(checkpoint_root, dataset_dir, tmp_path)
    _flock_failing_with(monkeypatch, code)
    result, events = _resume(load_record(path), tmp_path, new_batches=1)
    lock = path.with_suffix(".lock")
    expected = (
        f"{lock}: this filesystem cannot lock files ({os.strerror(code)}); "
        f"two resumes of run {path.stem} started at the same time are not prevented here"
    )
    assert [event.message for event in events if isinstance(event, RunWarning)] == [expected]
    assert result.status == "cancelled" and result.completed_batches == 2
    assert load_record(path).metadata["warnings"] == [expected]
    assert not lock.exists()


def test_a_lock_that_fails_otherwise_is_one_line_naming_the_file(
    tmp_path, checkpoint_root, dataset_dir, capsys, monkeypatch, isolated_app_dirs
):
    path = _partial_run(checkpoint_root, dataset_dir, isolated_app_dirs.runs)
    before = path.read_text()
    _flock_failing_with(monkeypatch, errno.EIO)
    code, out, err = run_cli(capsys, "resume", path.stem, "-q")
    assert code == 1
    assert one_error_line(err) == f"acetui: {path.with_suffix('.lock')}: cannot lock ({os.strerror(errno.EIO)})"
    assert path.read_text() == before  # nothing was run


# ------------------------------------------------------------------------- one process, two claims


def _fcntl_record_locks(monkeypatch) -> None:
    """``flock`` as NFS emulates it, with fcntl record locks: held per process, so a second open file
    of the same process takes the lock again (the standard library's ``lockf`` is such a lock)."""
    import fcntl

    monkeypatch.setattr(fcntl, "flock", fcntl.lockf)


@pytest.mark.parametrize("locks", ["flock", "fcntl record locks"])
def test_two_estimators_of_one_process_do_not_both_take_a_run_up(
    locks, tmp_path, checkpoint_root, dataset_dir, monkeypatch
):
    """The second asks while the first is setting up, before its record names an owner: refused with
    the words a run this process writes is refused with, whatever the lock does within one process."""
    if locks == "fcntl record locks":
        _fcntl_record_locks(monkeypatch)
    path = _partial_run(checkpoint_root, dataset_dir, tmp_path)
    stale = load_record(path)
    second: list = []

    def resume_again() -> None:
        second.append(_resume(load_record(path), tmp_path, new_batches=1))

    def on_event(event) -> None:
        if isinstance(event, StageChanged) and not second:
            thread = threading.Thread(target=resume_again)
            thread.start()
            thread.join()
        if isinstance(event, BatchDone):
            first.cancel()

    first = Estimator(stale.request, on_event=on_event, record_dir=tmp_path, resume=stale)
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(first.run()))
    thread.start()
    thread.join()

    ((refused, events),) = second
    assert refused is None and isinstance(events[-1], RunFailed)
    assert events[-1].message == f"run {path.stem} is still running (pid {os.getpid()} on host {socket.gethostname()})"
    (result,) = outcome
    assert result.status == "cancelled" and result.completed_batches == 2
    assert [batch.index for batch in load_record(path).batches] == [0, 1]
