"""``acetui runs`` and ``acetui show``: the run history and any run's ranking from the command line, for
the headless server where the app's History is not at hand."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest, Estimator, RunStarted, rank_modules
from acetui.estimate.exports import estimate_json
from acetui.estimate.ownership import claim_run
from acetui.estimate.stats import result_stats
from acetui.history import delete_run, history_record, load_record
from tests.support import PYTHON, REPO, estimate_args, one_error_line, run_cli, subprocess_env, subprocess_runs_dir
from tests.test_engine_records import _wait_until_running
from tests.tui_support import record_run


def test_runs_lists_the_history_newest_first(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    assert run_cli(capsys, "runs") == (0, f"no runs recorded yet in {isolated_app_dirs.runs}\n", "")
    older = record_run(checkpoint_root, dataset_dir, batches=2, seed=1)
    newer = record_run(checkpoint_root, dataset_dir, batches=4, seed=2, stop_after=1)
    code, out, err = run_cli(capsys, "runs")
    header, *rows = out.splitlines()
    assert (
        code == 0
        and err == ""
        and header.split() == ["run", "status", "variant", "dataset", "batches", "top", "module"]
    )
    assert [row.split()[:5] for row in rows] == [
        [newer.run_id, "cancelled", "turbo", dataset_dir.name, "1/4"],
        [older.run_id, "complete", "turbo", dataset_dir.name, "2/2"],
    ]
    assert rows[1].split()[5] == rank_modules(older)[0].module.removeprefix("decoder.")
    assert [row.split()[0] for row in run_cli(capsys, "runs", "-n", "1")[1].splitlines()[1:]] == [newer.run_id]


def test_runs_json_is_for_scripts(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    """A script on a server picks runs by status and settings (resume the interrupted ones, say) from
    ``runs --json`` instead of parsing the table."""
    assert run_cli(capsys, "runs", "--json") == (0, "[]\n", "")
    older = record_run(checkpoint_root, dataset_dir, batches=2, seed=1)
    newer = record_run(checkpoint_root, dataset_dir, batches=4, seed=2, stop_after=1)
    code, out, err = run_cli(capsys, "runs", "--json", "-n", "2")
    listed = json.loads(out)
    assert code == 0 and err == ""
    assert [(run["run_id"], run["status"], run["completed"], run["request"]["batches"]) for run in listed] == [
        (newer.run_id, "cancelled", 1, 4),
        (older.run_id, "complete", 2, 2),
    ]
    assert listed[1]["top"] == rank_modules(older)[0].module.removeprefix("decoder.")
    assert listed[0]["request"] == newer.request.to_dict()
    assert listed[1]["record"] == str(history_record(older.run_id)) and load_record(listed[1]["record"]) == older


def test_delete_removes_each_run_named_and_says_which_it_could_not(
    checkpoint_root, dataset_dir, tmp_path, capsys, isolated_app_dirs
):
    """A history of trial runs only grew; ``delete`` goes on past a name it refuses, as ``rm`` does."""
    older = record_run(checkpoint_root, dataset_dir, batches=2, seed=1)
    newer = record_run(checkpoint_root, dataset_dir, batches=4, seed=2, stop_after=1)
    elsewhere = tmp_path / "copy.json"
    elsewhere.write_bytes(history_record(newer.run_id).read_bytes())
    code, out, err = run_cli(capsys, "delete", older.run_id[:-2], "nope", str(elsewhere))
    assert code == 1 and out == f"deleted run {older.run_id} (complete, 2/2 batches, {dataset_dir.name})\n"
    assert err.splitlines() == [
        f"acetui: nope: no such run id in {isolated_app_dirs.runs} and no such file",
        f"acetui: {elsewhere}: not a run of the history in {isolated_app_dirs.runs} (a file elsewhere is yours to "
        "delete)",
    ]
    assert sorted(path.name for path in isolated_app_dirs.runs.iterdir()) == [f"{newer.run_id}.json"]  # no lock
    assert elsewhere.is_file()
    assert run_cli(capsys, "delete", newer.run_id, newer.run_id[:-3]) == (  # named twice, deleted once
        0,
        f"deleted run {newer.run_id} (cancelled, 1/4 batches, {dataset_dir.name})\n",
        "",
    )
    assert list(isolated_app_dirs.runs.iterdir()) == []


def test_deleting_or_resuming_a_run_removes_what_its_killed_saves_left(checkpoint_root, dataset_dir, isolated_app_dirs):
    """A SIGKILL during a save leaves its temporary file (``write_text_atomic``), a record's size each."""
    first, second = (record_run(checkpoint_root, dataset_dir, batches=4, stop_after=1, seed=seed) for seed in (1, 2))
    runs = isolated_app_dirs.runs
    for run in (first, second):
        (runs / f".{run.run_id}.json.0123456789abcdef.tmp").write_text("{half a record")
    delete_run(history_record(first.run_id))
    assert sorted(path.name for path in runs.iterdir()) == [
        f".{second.run_id}.json.0123456789abcdef.tmp",
        f"{second.run_id}.json",
    ]
    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=4, seed=2)
    Estimator(request, resume=second, record_dir=runs).run()
    assert [path.name for path in runs.iterdir()] == [f"{second.run_id}.json"]


def test_a_run_this_process_has_taken_up_is_not_deleted(checkpoint_root, dataset_dir, isolated_app_dirs):
    stopped = record_run(checkpoint_root, dataset_dir, batches=4, stop_after=1)
    record = history_record(stopped.run_id)
    claim = claim_run(load_record(record), record)  # as the app's Run screen holds a run it resumes
    try:
        with pytest.raises(AcetuiError, match=f"run {stopped.run_id} is still running \\(pid {os.getpid()} "):
            delete_run(record)
    finally:
        claim.release()
    assert delete_run(record).run_id == stopped.run_id and not record.exists()


def test_runs_show_an_auto_runs_max_as_a_cap(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    """A complete auto run that stopped before its max must not read as unfinished (History shows the same)."""
    auto = record_run(checkpoint_root, dataset_dir, top_k=4, auto_batches=True, max_batches=12, stability_target=0.01)
    assert auto.status == "complete" and auto.completed_batches < 12
    row = run_cli(capsys, "runs")[1].splitlines()[1]
    assert f"  {auto.completed_batches} (auto, max 12)  " in row and "/" not in row


def test_runs_reports_an_unreadable_record_and_lists_the_rest(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    kept = record_run(checkpoint_root, dataset_dir, batches=1)
    broken = isolated_app_dirs.runs / "20200101-000000-bad000.json"
    broken.write_text("{ not json")
    code, out, err = run_cli(capsys, "runs")
    assert code == 0 and kept.run_id in out and "bad000" not in out
    assert one_error_line(err).startswith(f"acetui: warning: {broken}: ")  # the file it was, named once
    assert err.endswith(f"(moved aside to {broken.name}.bad)\n")


def test_a_second_broken_record_of_the_same_name_does_not_replace_the_first_set_aside(capsys, isolated_app_dirs):
    isolated_app_dirs.runs.mkdir(parents=True)
    broken = isolated_app_dirs.runs / "20200101-000000-bad000.json"
    for text, aside in (
        ("{ first", "20200101-000000-bad000.json.bad"),
        ("{ second", "20200101-000000-bad000.json.1.bad"),
    ):
        broken.write_text(text)
        code, out, err = run_cli(capsys, "runs")
        assert err.endswith(f"(moved aside to {aside})\n")
    assert (broken.parent / "20200101-000000-bad000.json.bad").read_text() == "{ first"


def test_another_versions_record_and_a_copy_are_named_and_left_alone(
    checkpoint_root, dataset_dir, capsys, isolated_app_dirs
):
    """A newer acetui's record was moved aside as broken, hiding it from that acetui; a backup copy of a record
    was listed twice and made its own run id ambiguous."""
    run = record_run(checkpoint_root, dataset_dir, batches=1)
    record = isolated_app_dirs.runs / f"{run.run_id}.json"
    newer = isolated_app_dirs.runs / "20300101-000000-aaaaaa.json"
    newer.write_text(json.dumps({**json.loads(record.read_text()), "format": "acetui-run/2"}))
    copy = isolated_app_dirs.runs / f"{run.run_id} (copy).json"
    copy.write_bytes(record.read_bytes())
    code, out, err = run_cli(capsys, "runs")
    assert code == 0 and out.count(run.run_id) == 1 and "20300101" not in out
    assert err.splitlines() == [
        f"acetui: warning: {newer}: a run record of another acetui version (acetui-run/2; this one reads "
        "acetui-run/1) (left in place)",
        f"acetui: warning: {copy}: holds run {run.run_id} under another name (a copy?) (left in place)",
    ]
    assert newer.exists() and copy.exists()
    code, out, err = run_cli(capsys, "show", run.run_id)
    assert code == 0 and out.startswith("rank")


def test_a_run_whose_process_died_shows_as_interrupted(tmp_path, checkpoint_root, dataset_dir, capsys):
    """A record left "running" by a killed (or twice Ctrl-C'd) process said "running" in runs and show."""
    command = [*PYTHON, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "100000")]
    env = subprocess_env(tmp_path)
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        path = _wait_until_running(subprocess_runs_dir(tmp_path), process)
    finally:
        process.kill()
        process.wait()
    assert json.loads(path.read_text())["status"] == "running"
    listing = subprocess.run([*PYTHON, "runs"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert listing.stdout.splitlines()[1].split()[1] == "interrupted"


def test_a_run_another_live_process_writes_is_not_deleted(tmp_path, checkpoint_root, dataset_dir):
    command = [*PYTHON, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "100000")]
    env = subprocess_env(tmp_path)
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        path = _wait_until_running(subprocess_runs_dir(tmp_path), process)
        refused = subprocess.run([*PYTHON, "delete", path.stem], cwd=REPO, env=env, capture_output=True, text=True)
        assert refused.returncode == 1 and refused.stdout == ""
        assert one_error_line(refused.stderr).startswith(f"acetui: run {path.stem} is still running (pid {process.pid}")
        assert path.is_file()
    finally:
        process.kill()
        process.wait()
    deleted = subprocess.run([*PYTHON, "delete", path.stem], cwd=REPO, env=env, capture_output=True, text=True)
    assert deleted.returncode == 0 and deleted.stdout.startswith(f"deleted run {path.stem} (interrupted, ")
    assert list(path.parent.iterdir()) == []  # the killed owner's lock file went with the record


def test_runs_refuses_a_limit_below_one(capsys, isolated_app_dirs):
    code, out, err = run_cli(capsys, "runs", "--limit", "0")
    assert (code, out) == (1, "") and one_error_line(err) == "acetui: --limit/-n must be at least 1, got 0"


def test_runs_names_a_data_folder_that_is_a_file(capsys, isolated_app_dirs):
    isolated_app_dirs.data.parent.mkdir(parents=True, exist_ok=True)
    isolated_app_dirs.data.write_text("")  # XDG_DATA_HOME pointing at a file: no run could ever be recorded
    expected = f"acetui: no runs can be recorded in {isolated_app_dirs.runs}: {isolated_app_dirs.data} is not a folder"
    for json_too in ([], ["--json"]):
        code, out, err = run_cli(capsys, "runs", *json_too)
        assert (code, out) == (1, "") and one_error_line(err) == expected


def test_show_prints_and_exports_a_partial_run(tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    partial = record_run(checkpoint_root, dataset_dir, batches=5, top_k=4, stop_after=2)
    output = tmp_path / "partial.json"
    code, out, err = run_cli(capsys, "show", partial.run_id[:17], "-o", str(output), "--score", "fisher")
    ranking = rank_modules(partial, "fisher")
    assert code == 0 and out.splitlines()[1].split()[1] == ranking[0].module
    assert err.splitlines() == [
        f"acetui: run {partial.run_id} is cancelled, 2/5 batches so far: a partial ranking "
        f"(continue it with: acetui resume {partial.run_id})",
        f"acetui: wrote {output}",  # every file it writes is named
    ]
    expected = estimate_json(ranking, 4, result_stats(partial, "fisher"), scored_by="fisher")
    assert json.loads(output.read_text()) == json.loads(expected)


def test_show_of_a_run_without_batches_is_one_line(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    def stop_at_start(event) -> None:
        if isinstance(event, RunStarted):
            estimator.cancel()

    request = EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=5)
    estimator = Estimator(request, on_event=stop_at_start, record_dir=isolated_app_dirs.runs)
    empty = estimator.run()
    code, out, err = run_cli(capsys, "show", empty.run_id)
    assert (code, out) == (1, "")
    assert one_error_line(err).endswith(
        f"acetui: run {empty.run_id} (cancelled) has no included batches: no ranking to show"
    )


def test_re_exporting_a_complete_run_says_so_and_names_its_files(
    tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs
):
    done = record_run(checkpoint_root, dataset_dir, batches=2)
    table, targets = tmp_path / "again.csv", tmp_path / "peft.json"
    code, out, err = run_cli(capsys, "resume", done.run_id, "--csv", str(table), "--peft-output", str(targets))
    assert code == 0 and out.startswith("rank") and table.is_file() and targets.is_file()
    assert err.splitlines() == [
        f"acetui: run {done.run_id} is complete: its files come from its record",
        f"acetui: wrote {table}",
        f"acetui: wrote {targets}",
    ]


def test_show_of_an_export_says_what_the_file_is(tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    run = record_run(checkpoint_root, dataset_dir, batches=1)
    exported = tmp_path / "ranking.json"
    exported.write_text(estimate_json(rank_modules(run), 4))
    code, out, err = run_cli(capsys, "show", str(exported))
    expected = f"acetui: {exported}: a ranking export, not a run record (compare and the app's Open file take it)"
    assert code == 1 and one_error_line(err) == expected


@pytest.mark.skipif(not os.path.isdir("/proc/self") or os.geteuid() != 0, reason="root writing under /proc")
def test_a_file_that_fails_after_the_checks_says_how_to_write_it_again(
    checkpoint_root, dataset_dir, capsys, isolated_app_dirs
):
    """/proc passes the writable check for root, and the write fails: the run is over by then."""
    run = record_run(checkpoint_root, dataset_dir, batches=1)
    code, out, err = run_cli(capsys, "show", run.run_id, "-o", "/proc/acetui-test.json")
    again = f"(the run is kept: acetui show {run.run_id} with the same output options writes them again)"
    assert code == 1 and one_error_line(err).startswith("acetui: /proc/acetui-test.json: cannot write")
    assert one_error_line(err).endswith(again)
