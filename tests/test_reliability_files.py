"""Files acetui writes or reads back: exports that cannot be written, profiles and history that do not parse.

Export failures must show one error line, keep the finished run in history, and leave neither a
half-written file nor a temporary one. The full-disk case uses a real 64 KiB tmpfs (skipped where this
process may not mount) and, independently, RLIMIT_FSIZE, which makes ``write`` fail with EFBIG.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest, Estimator, rank_modules
from acetui.estimate.exports import export
from acetui.history import HistoryProblem, find_run, list_runs, load_record
from acetui.profiles import ProfileError, list_profiles, load_last, load_profile, save_profile
from tests.support import estimate_args, one_error_line, run_cli, run_records

# --- exports --------------------------------------------------------------------------------------------


def _export_run(capsys, root, dataset, dirs, flag: str, target: Path) -> str:
    """Run a 2-batch estimate that exports to ``target``; the run must be kept even though export fails."""
    code, out, err = run_cli(capsys, *estimate_args(root, dataset, "--estimate-batches", "2", flag, str(target)))
    assert code == 1
    assert "decoder.layers." in out  # the ranking was still shown
    (record,) = run_records(dirs).values()
    assert record["status"] == "complete" and len(record["batches"]) == 2
    (run,), problems = list_runs()
    assert problems == [] and run.run_id == record["run_id"]
    return one_error_line(err)


@pytest.mark.parametrize("flag", ["--estimate-output", "--csv", "--peft-output"])
def test_export_to_a_directory(flag, tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    """Refused before the run (tests/test_cli_edges.py has the other cases a look can foresee)."""
    target = tmp_path / "exports"
    target.mkdir()
    code, _, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, flag, str(target)))
    assert code == 1 and one_error_line(err) == f"acetui: {flag} {target}: is a folder, not a file"
    assert list(target.iterdir()) == [] and run_records(isolated_app_dirs) == {}


def _unwritable(case: str, tmp_path: Path) -> tuple[Path, Path]:
    """(target, folder where it would go). Root ignores permissions, so use what root cannot do either."""
    if case == "parent-is-a-file":
        (tmp_path / "out").mkdir()
        blocker = tmp_path / "out" / "blocker"
        blocker.write_text("a file, not a folder\n")
        return blocker / "sub" / "ranking.json", tmp_path / "out"
    if case == "proc":
        return Path("/proc/acetui-no-such-dir/ranking.json"), Path("/proc")
    return Path("/sys/ranking.json"), Path("/sys")


@pytest.mark.parametrize("case", ["parent-is-a-file", "proc", "sys"])
def test_export_to_an_unwritable_place(case, tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    """Refused before the run when a look at the folders foresees it, else when the write fails (root
    passes the permission check where the kernel then refuses, as in /proc): one line either way."""
    target, folder = _unwritable(case, tmp_path)
    if not folder.is_dir():
        pytest.skip(f"no {folder} here")
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--estimate-output", str(target)))
    line = one_error_line(err)
    assert code == 1
    if run_records(isolated_app_dirs):  # the run was kept and shown
        assert line.startswith(f"acetui: {target}: cannot write (") and "decoder.layers." in out
    else:
        assert line.startswith(f"acetui: --estimate-output {target}: ")
    assert not target.exists()
    for place in (folder, target.parent):  # no temporary file (/proc's other entries come and go)
        assert not place.is_dir() or not list(place.glob(".ranking.json*"))
    if case == "parent-is-a-file":
        assert (tmp_path / "out" / "blocker").read_text() == "a file, not a folder\n"


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled to the last byte, holding an old ``ranking.json`` and the filler."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("cannot mount a tmpfs here (the RLIMIT_FSIZE test covers the write failure)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64", "acetui-test", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (mount / "ranking.json").write_text("old ranking\n")
        descriptor = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(descriptor, b"\0" * 512):
                pass
        except OSError as error:
            assert error.errno == errno.ENOSPC
        finally:
            os.close(descriptor)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_export_onto_a_full_disk(full_disk, checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    target = full_disk / "ranking.json"
    line = _export_run(capsys, checkpoint_root, dataset_dir, isolated_app_dirs, "--estimate-output", target)
    assert line.startswith(f"acetui: {target}: cannot write (No space left on device)")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "ranking.json"]
    assert target.read_text() == "old ranking\n"  # the previous export is intact, not half-replaced


def test_export_past_the_file_size_limit(tmp_path, checkpoint_root, dataset_dir):
    """The app's export path (a finished result in memory) when ``write`` fails with EFBIG."""
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=2, dtype="fp32", device="cpu")
    result = Estimator(request).run()
    ranking = rank_modules(result, "grad-norm", "module")
    target = tmp_path / "out" / "ranking.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (512, hard))
    try:
        with pytest.raises(AcetuiError) as caught:
            export(target, "csv", ranking, 16)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert str(caught.value) == f"{target}: cannot write (File too large)"
    assert [p.name for p in target.parent.iterdir()] == ["ranking.csv"]
    assert target.read_text() == "old\n"
    assert result.status == "complete" and len(result.batches) == 2  # the result is untouched
    assert export(target, "csv", ranking, 16) == target  # and can be exported once there is room


# --- profiles -------------------------------------------------------------------------------------------


BAD_PROFILES = {
    "not-toml": (b"batches = [1,\n", "not valid TOML ("),
    "not-utf8": (b'variant = "\xff\xfe"\n', "not valid TOML ("),
    "unknown-key": (b"batchez = 3\n", "unknown key 'batchez'"),
    "wrong-type": (b'batches = "five"\n', "key 'batches' should be int, found 'five'"),
    "directory": (None, "cannot read ("),
}


@pytest.mark.parametrize("case", list(BAD_PROFILES))
def test_profile_that_does_not_parse(case, tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    content, problem = BAD_PROFILES[case]
    path = isolated_app_dirs.profiles / "broken.toml"
    path.parent.mkdir(parents=True)
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    save_profile("good", {"batches": 1, "top_k": 4})

    with pytest.raises(ProfileError) as caught:
        load_profile("broken")
    assert str(caught.value).startswith(f"{path}: {problem}") and "\n" not in str(caught.value)

    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--profile", "broken"))
    assert code == 1
    assert one_error_line(err).startswith(f"acetui: {path}: {problem}")
    assert run_records(isolated_app_dirs) == {}

    # Everything else still works: the other profile, a run without a profile, locate.
    assert list_profiles() == ["broken", "good"]
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--profile", "good"))
    assert code == 0 and err == "" and "1 batches;" in out
    assert run_cli(capsys, "locate")[0] == 0
    assert path.exists()  # left in place for the user to fix


def test_broken_last_settings_are_reported_not_fatal(isolated_app_dirs):
    path = isolated_app_dirs.last_settings
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00\x01 not toml")
    values, problem = load_last()
    assert values == {}
    assert problem.startswith(f"{path}: not valid TOML (") and "\n" not in problem


# --- history --------------------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BAD_RECORDS = {
    "empty": (b"", "not valid JSON"),
    "truncated": (None, "not valid JSON"),
    "not-utf8": (b"\xff\xfe{}", "cannot read"),
    "a-list": (b"[1, 2]", "a ranking export, not a run record"),
    "other-format": (b'{"format": "something-else"}', "not a valid run record"),
    "bad-request": (None, "not a valid run record"),
    "bad-batches": (None, "not a valid run record"),
    "deeply-nested": (_nested(100_000).encode(), "not valid JSON"),
}


@pytest.fixture(scope="module")
def good_record(checkpoint_root, dataset_dir, tmp_path_factory) -> dict:
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=1, dtype="fp32", device="cpu", seed=3)
    folder = tmp_path_factory.mktemp("record")
    result = Estimator(request, record_dir=folder).run()
    return json.loads((folder / f"{result.run_id}.json").read_text())


def _bad_record(case: str, good: dict) -> bytes:
    content = BAD_RECORDS[case][0]
    if content is not None:
        return content
    if case == "truncated":
        return json.dumps(good).encode()[:-40]
    damaged = json.loads(json.dumps(good))
    if case == "bad-request":
        damaged["request"]["batches"] = 0
    else:
        damaged["batches"][0]["bogus"] = 1
    return json.dumps(damaged).encode()


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_history_record_that_does_not_parse(case, good_record, capsys, isolated_app_dirs):
    runs = isolated_app_dirs.runs
    runs.mkdir(parents=True)
    good = runs / f"{good_record['run_id']}.json"
    good.write_text(json.dumps(good_record))
    bad = runs / "20990101-000000-badbad.json"
    bad.write_bytes(_bad_record(case, good_record))
    problem = BAD_RECORDS[case][1]

    with pytest.raises(AcetuiError) as caught:
        load_record(bad)
    assert str(caught.value).startswith(f"{bad}: {problem}") and "\n" not in str(caught.value)

    code, out, err = run_cli(capsys, "resume", "20990101")
    assert code == 1
    assert one_error_line(err).startswith(f"acetui: {bad}: {problem}")

    runs_found, problems = list_runs()
    assert [run.run_id for run in runs_found] == [good_record["run_id"]]
    aside = runs / "20990101-000000-badbad.json.bad"
    assert problems == [HistoryProblem(aside, problems[0].reason, f"moved aside to {aside.name}")]
    assert problems[0].reason.startswith(f"{bad}: {problem}")
    assert aside.read_bytes() == _bad_record(case, good_record) and not bad.exists()

    # Set aside: the next listing is clean, and the good run is still found and complete.
    assert list_runs()[1] == []
    assert find_run(good_record["run_id"][:15]) == good
    code, out, err = run_cli(capsys, "resume", good_record["run_id"])
    assert code == 1 and one_error_line(err) == f"acetui: run {good_record['run_id']} is already complete (1 batches)"


def test_history_folder_that_cannot_be_written(tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    """The run record cannot be saved (its folder's parent is a file): one line naming it, exit 1."""
    isolated_app_dirs.data.write_text("a file where the data folder should be\n")
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "2"))
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"acetui: {isolated_app_dirs.runs}/") and ": cannot write (" in line
    assert isolated_app_dirs.data.read_text() == "a file where the data folder should be\n"
