"""Bad input at the command line's edges: runs with nothing to rank, broken weights, output paths that
cannot be written, absurd counts, odd run references, and signals before the first batch or at startup."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from acetui import paths
from acetui.data import write_dataset
from acetui.model.synthetic import TINY, random_state, write_checkpoint
from tests.support import (
    PYTHON,
    REPO,
    estimate_args,
    one_error_line,
    read_terminal,
    run_cli,
    run_records,
    sample_dict,
    subprocess_env,
    subprocess_runs_dir,
)
from tests.test_engine_records import _wait_until_running
from tests.tui_support import record_run

POSIX_SIGNALS = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals needed")


# ------------------------------------------------------------------------------------ nothing to rank


def test_a_run_whose_every_batch_is_excluded_fails_and_keeps_its_batches(
    tmp_path, checkpoint_root, capsys, isolated_app_dirs
):
    folder = tmp_path / "huge"
    folder.mkdir()
    for number in range(5):  # finite (the scan passes them), but the squared error overflows
        sample = sample_dict()
        sample["target_latents"] = torch.full((10, 64), 1e38)
        torch.save(sample, folder / f"{number}.pt")
    output = tmp_path / "h.json"
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, folder, "--estimate-batches", "2", "-o", output))
    reason = "all 2 batches excluded (non-finite loss): no ranking"
    assert code == 1 and one_error_line(err) == f"acetui: {reason}" and out == ""
    assert not output.exists()
    (record,) = run_records(isolated_app_dirs).values()
    assert record["status"] == "failed" and record["message"] == reason and len(record["batches"]) == 2


@pytest.mark.parametrize(
    "key", ["decoder.layers.0.self_attn.q_proj.weight", "decoder.layers.1.mlp.gate_proj.weight"], ids=["scored", "mlp"]
)
def test_a_checkpoint_with_non_finite_weights_is_refused_by_name(key, tmp_path, dataset_dir, capsys, isolated_app_dirs):
    """Any decoder tensor, scored or not: a NaN in the MLP used to exclude every batch without naming a cause."""
    state = random_state(TINY, 1, torch.float32)
    state[key] = torch.full_like(state[key], float("nan"))
    folder = write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, dtype=torch.float32, state=state)
    code, out, err = run_cli(capsys, *estimate_args(tmp_path, dataset_dir, "--estimate-batches", "1"))
    assert code == 1 and out == ""
    assert one_error_line(err) == f"acetui: {folder}: decoder tensor {key} is not finite (NaN or infinity)"
    assert run_records(isolated_app_dirs) == {}


def test_a_checkpoint_no_gradient_reaches_gives_no_ranking(tmp_path, dataset_dir, capsys, isolated_app_dirs):
    """A zeroed output projection (an untrained DiT's) leaves every scored gradient exactly zero: that ranked
    everything equal with NaN shares (invalid JSON) and exit 0."""
    state = random_state(TINY, 1, torch.float32)
    for key in ("decoder.proj_out.1.weight", "decoder.proj_out.1.bias"):
        state[key] = torch.zeros_like(state[key])
    write_checkpoint(tmp_path / "acestep-v15-turbo", TINY, dtype=torch.float32, state=state)
    output = tmp_path / "zero.json"
    code, out, err = run_cli(capsys, *estimate_args(tmp_path, dataset_dir, "--estimate-batches", "2", "-o", output))
    reason = "all 2 batches excluded (every scored gradient is zero (does the loss reach the decoder's layers?))"
    assert code == 1 and out == "" and one_error_line(err) == f"acetui: {reason}: no ranking"
    assert not output.exists()


# ------------------------------------------------------------------------------------ output paths


@pytest.mark.parametrize("option", ["-o", "--csv", "--peft-output"])
def test_output_paths_that_cannot_be_written_fail_before_the_run(
    tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs, option
):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    name = {"-o": "--estimate-output"}.get(option, option)
    for path, problem in ((tmp_path, "is a folder, not a file"), (a_file / "x.json", f"{a_file} is not a folder")):
        code, _, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, option, path))
        assert code == 1 and one_error_line(err) == f"acetui: {name} {path}: {problem}"
    assert run_records(isolated_app_dirs) == {}  # refused before the model was loaded


@pytest.mark.parametrize(
    ("more", "expected"),
    [
        (
            ("-o", "{tmp}/same.json", "--csv", "{tmp}/./same.json"),
            "--estimate-output and --csv both name {tmp}/same.json: give each output a file of its own",
        ),
        (
            ("--rank-budget", "5"),
            "--rank-budget sets the rank_pattern of the --peft-output file: give --peft-output too",
        ),
    ],
    ids=["one-file-twice", "budget-without-peft"],
)
def test_outputs_that_cannot_be_what_was_asked_are_refused_before_the_run(
    more, expected, tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs
):
    """The JSON was written and then replaced by the CSV under the same name, both said "wrote"; a rank budget
    without a PEFT file to put it in was dropped without a word."""
    options = [option.format(tmp=tmp_path) for option in more]
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, *options))
    assert code == 1 and one_error_line(err) == f"acetui: {expected.format(tmp=tmp_path)}"
    assert run_records(isolated_app_dirs) == {}


def test_resuming_says_how_many_batches_this_session_ran(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    """A resume at 3 of 4 said "done: 4 batches in 0.1 s" as if it had run them all in that time."""
    stopped = record_run(checkpoint_root, dataset_dir, batches=4, stop_after=3)
    code, out, err = run_cli(capsys, "resume", stopped.run_id)
    (done,) = [line for line in err.splitlines() if line.startswith("done: ")]
    assert code == 0 and done.startswith("done: 4 batches (1 now, 3 before) in ")


def test_a_resume_may_turn_cuda_graphs_off(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    """How batches run, not what they compute: an out-of-memory failure with graphs advises turning them off."""
    stopped = record_run(checkpoint_root, dataset_dir, batches=4, stop_after=3)
    assert run_cli(capsys, "resume", stopped.run_id, "--cuda-graphs", "off", "-q")[0] == 0
    record = run_records(isolated_app_dirs)[stopped.run_id]
    assert record["status"] == "complete" and record["request"]["cuda_graphs"] == "off"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user that permissions apply to")
def test_an_output_in_a_read_only_folder_fails_before_the_run(
    tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs
):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    path = locked / "new" / "o.json"
    code, _, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "-o", path))
    assert code == 1 and one_error_line(err) == f"acetui: --estimate-output {path}: no permission to write in {locked}"
    assert run_records(isolated_app_dirs) == {}


def test_resume_of_a_complete_run_writes_the_exports_from_its_record(
    tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs
):
    first = tmp_path / "first.json"
    code, out, _ = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "2", "-o", first))
    assert code == 0
    (run_id,) = run_records(isolated_app_dirs)
    again, table = tmp_path / "new" / "again.json", tmp_path / "again.csv"
    code, reprinted, err = run_cli(capsys, "resume", run_id, "-q", "-o", again, "--csv", table)
    assert code == 0 and err == "" and reprinted == out
    assert json.loads(again.read_text()) == json.loads(first.read_text()) and table.is_file()
    code, _, err = run_cli(capsys, "resume", run_id, "-q")
    assert code == 1 and one_error_line(err) == f"acetui: run {run_id} is already complete (2 batches)"


# ------------------------------------------------------------------------------------ counts and references


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--estimate-batches", str(10**23)], f"batches must be at most 1,000,000, got {10**23:,}"),
        (
            ["--estimate-batches", "auto", "--max-batches", str(10**23)],
            f"max batches must be at most 1,000,000, got {10**23:,}",
        ),
        (["--batch-size", str(10**14)], f"batch size must be at most 1,024, got {10**14:,}"),
        (
            ["--estimate-batches", "1000", "--batch-size", "1024"],
            "batches x batch size must be at most 1,000,000 samples drawn, got 1,024,000",
        ),
    ],
)
def test_absurd_counts_are_refused_before_anything_is_planned(checkpoint_root, dataset_dir, capsys, flags, problem):
    code, _, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, *flags))
    assert code == 1 and one_error_line(err) == f"acetui: {problem}"


def test_a_batch_larger_than_the_dataset_is_warned_about(checkpoint_root, dataset_dir, capsys):
    code, _, err = run_cli(
        capsys, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "1", "--batch-size", "8")
    )
    assert code == 0
    assert (
        f"acetui: warning: batch size 8 is more than the 6 valid samples of {dataset_dir}: each batch repeats samples"
        in err
    )


def test_resume_takes_its_argument_literally(tmp_path, checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "1"))
    runs = isolated_app_dirs.runs
    for reference in ("/nope/x.json", "*", "2*", "[", "x/../*"):
        code, _, err = run_cli(capsys, "resume", reference)
        assert code == 1 and one_error_line(err) == f"acetui: {reference}: no such run id in {runs} and no such file"
    code, _, err = run_cli(capsys, "resume", tmp_path)
    assert code == 1 and one_error_line(err) == f"acetui: {tmp_path}: is a folder, not a run id or run record file"
    for blank in ("", " "):
        code, _, err = run_cli(capsys, "resume", blank)
        assert code == 1 and one_error_line(err) == (
            "acetui: empty run id (give a run id from the history or a run record file)"
        )


# ------------------------------------------------------------------------------------ signals


def _start(tmp_path, command: list[str], **options) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=subprocess_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


@POSIX_SIGNALS
def test_a_signal_during_setup_ends_the_run_before_its_first_batch(tmp_path, checkpoint_root):
    folder = tmp_path / "many"
    write_dataset(folder, count=1000, condition_width=TINY.condition_width, seed=2, frames=(9, 10))  # a slow scan
    process = _start(tmp_path, [*PYTHON, *estimate_args(checkpoint_root, folder, quiet=False)])
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("scanning"):
            process.send_signal(signal.SIGTERM)
            break
    out, rest = process.communicate(timeout=60)
    err = "".join(seen) + rest
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "acetui: SIGTERM: stopping the setup (again to abort)" in err
    # the scan stops at its next file: no model is loaded and no record started, so nothing to resume
    assert "acetui: interrupted while setting up, before the first batch: nothing to keep" in err
    assert "loading" not in err and "resume" not in err
    assert "batch 1/" not in err and out == "" and "Traceback" not in err
    assert list(subprocess_runs_dir(tmp_path).glob("*.json")) == []


@POSIX_SIGNALS
def test_an_ignored_sighup_stays_ignored(tmp_path, checkpoint_root, dataset_dir):
    """``nohup acetui estimate ...``: a hangup must not stop the run nohup protects."""
    process = _start(
        tmp_path,
        [*PYTHON, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "100000")],
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    try:
        path = _wait_until_running(subprocess_runs_dir(tmp_path), process)
        process.send_signal(signal.SIGHUP)
        at_hangup = len(json.loads(path.read_text())["batches"])
        while len(json.loads(path.read_text())["batches"]) < at_hangup + 5:  # it goes on running
            assert process.poll() is None, process.stderr.read()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 128 + signal.SIGTERM and "SIGHUP" not in err
    assert "SIGTERM: stopping after the current batch" in err
    assert json.loads(path.read_text())["status"] == "interrupted"


@POSIX_SIGNALS
def test_ctrl_c_while_torch_imports_ends_without_a_traceback(tmp_path):
    process = _start(tmp_path, [sys.executable, "-X", "importtime", "-m", "acetui", "locate"])
    for line in process.stderr:
        if "torch" in line:  # -X importtime: a torch module imported, torch itself not yet
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in rest and rest.endswith("acetui: aborted\n")


def test_the_console_script_runs_the_guarded_entry_point():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["acetui"] == "acetui.__main__:run"


def test_options_that_change_nothing_are_said_to_be_ignored(checkpoint_root, dataset_dir, capsys, isolated_app_dirs):
    more = ("--estimate-batches", "1", "--force", "--base-rank", "8", "--max-batches", "3", "--stability-target", "0.5")
    code, out, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, *more))
    warnings = [line for line in err.splitlines() if line.startswith("acetui: warning: ")]
    assert code == 0 and warnings == [
        "acetui: warning: --base-rank: used by --fisher-map or --rank-budget only, neither is given; ignored",
        "acetui: warning: --force: lets --fisher-map replace a map, and --fisher-map is not given; ignored",
        "acetui: warning: --max-batches, --stability-target: used by --estimate-batches auto only; ignored",
    ]


def _outputs(tmp_path) -> tuple[Path, Path]:
    return tmp_path / "out.json", tmp_path / "o.csv"


def _written(tmp_path) -> bool:
    out, csv = _outputs(tmp_path)
    return json.loads(out.read_text())[0]["module"].startswith("decoder.") and csv.is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_a_terminal_gone_mid_run_costs_neither_the_run_nor_its_files(tmp_path, checkpoint_root, dataset_dir):
    """An SSH connection that drops: its terminal is gone (every write to it fails with EIO) and the shell
    sends SIGHUP. The progress line's write failed first and the run ended as failed; the files the options
    ask for were written after the ranking was printed, so none was."""
    out, csv = _outputs(tmp_path)
    more = ("--estimate-batches", "100000", "-o", str(out), "--csv", str(csv))
    controller, terminal = os.openpty()
    command = [*PYTHON, *estimate_args(checkpoint_root, dataset_dir, *more, quiet=False)]
    process = subprocess.Popen(command, cwd=REPO, env=subprocess_env(tmp_path), stdout=terminal, stderr=terminal)
    os.close(terminal)
    try:
        path = _wait_until_running(subprocess_runs_dir(tmp_path), process)
        os.close(controller)  # the connection drops: the terminal is gone
        while len(json.loads(path.read_text())["batches"]) < 3:  # batch lines meet the gone terminal
            assert process.poll() is None
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=60) == 128 + signal.SIGHUP
    finally:
        process.kill()
    assert json.loads(path.read_text())["status"] == "interrupted" and _written(tmp_path)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full (a device every write to fails) is Linux's")
def test_a_ranking_that_cannot_be_shown_is_a_failure_that_keeps_the_files(tmp_path, checkpoint_root, dataset_dir):
    """``> /dev/full``: the files asked for are written, the exit code says the output was lost; a closed
    pipe (``| head``) ends as quietly as any command a pipe closes on."""
    out, csv = _outputs(tmp_path)
    command = [*PYTHON, *estimate_args(checkpoint_root, dataset_dir, "-o", str(out), "--csv", str(csv))]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            command, cwd=REPO, env=subprocess_env(tmp_path), stdout=full, stderr=subprocess.PIPE, text=True
        )
    (record,) = subprocess_runs_dir(tmp_path).glob("*.json")
    assert done.returncode == 1 and _written(tmp_path)
    assert done.stderr.splitlines()[-1] == (
        f"acetui: the ranking could not be shown (No space left on device); 2 files written; "
        f"acetui show {record.stem} shows it"
    )
    process = _start(tmp_path, [*PYTHON, "show", record.stem])
    process.stdout.close()  # the reading end: a pipe closed before the ranking is written
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141 and err == ""


@pytest.mark.skipif(os.name != "posix", reason="only POSIX removes a process's current folder")
def test_a_deleted_current_folder_is_named_not_taken_for_a_broken_install(tmp_path):
    """torch's import aborts there with "Cannot load libtorch_cpu.so": the command says what is wrong first."""
    gone = tmp_path / "gone"
    script = f'mkdir "{gone}" && cd "{gone}" && rmdir "{gone}" && exec "$0" -m acetui runs'
    env = subprocess_env(tmp_path)
    done = subprocess.run(["sh", "-c", script, sys.executable], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == "acetui: the current folder no longer exists (deleted?); cd to another one\n"


@pytest.mark.skipif(os.name != "posix", reason="file names of any bytes are POSIX's")
def test_a_dataset_folder_named_in_other_bytes_than_utf8(tmp_path, checkpoint_root, dataset_dir, capsys):
    """Such a name prints and runs; a profile (TOML holds UTF-8 only) is refused in one line before the run,
    and the fisher map's dataset hash counts the name's bytes (Side-Step's own hash fails on it)."""
    folder = tmp_path / os.fsdecode(b"songs_\xff")
    shutil.copytree(dataset_dir, folder)
    args = estimate_args(checkpoint_root, folder)
    code, out, err = run_cli(capsys, *args, "--save-profile", "odd")
    assert (
        code == 1
        and out == ""
        and one_error_line(err).endswith("odd.toml: cannot write (a file or folder name in it is not valid UTF-8)")
    )
    code, out, err = run_cli(capsys, *args, "--fisher-map")
    assert code == 0, err
    assert len(json.loads((folder / "fisher_map.json").read_text())["dataset_hash"]) == 12


def test_the_app_without_a_terminal_says_what_runs_there_instead(capsys):
    """``ssh host acetui`` (no -t) or ``acetui 2> file``: the app drew escape codes into the pipe or file
    and waited for keys that never came. Nothing is written first (the demo's files are not)."""
    code, out, err = run_cli(capsys, "demo")
    assert code == 1 and out == ""
    assert one_error_line(err) == (
        "acetui: the app needs a terminal (its input and its standard error (where it draws) are not terminals): "
        "over SSH use ssh -t; without one, acetui estimate or acetui demo --headless run the same estimator"
    )
    assert not paths.app_dirs().demo.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_the_app_on_a_dumb_terminal_says_what_runs_there_instead(tmp_path):
    import pty

    controller, terminal = pty.openpty()
    env = {**subprocess_env(tmp_path), "TERM": "dumb"}
    process = subprocess.Popen([*PYTHON], cwd=REPO, env=env, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = read_terminal(controller)
    assert process.wait(timeout=60) == 1
    assert seen.decode().startswith("acetui: the app needs a terminal (TERM=dumb cannot draw it)")


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_the_app_starts_with_its_standard_output_piped(tmp_path):
    """``acetui | tee log``: the app reads keys from standard input and draws on standard error, so a piped
    standard output is no reason to refuse it."""
    import fcntl
    import struct
    import termios

    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**subprocess_env(tmp_path), "TERM": "xterm-256color"}
    process = subprocess.Popen([*PYTHON], cwd=REPO, env=env, stdin=terminal, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    seen = b""
    while b"Checkpoint" not in seen:
        chunk = os.read(controller, 65536)
        assert chunk, seen
        seen += chunk
    os.write(controller, b"\x11")  # ctrl+q
    seen += read_terminal(controller)
    assert process.wait(timeout=60) == 0
    assert b"the app needs a terminal" not in seen


@pytest.mark.parametrize("command", [["runs"], ["locate"], ["profiles"]])
def test_a_reader_gone_from_the_pipe_ends_a_command_quietly(tmp_path, command):
    """``acetui runs | head -1`` with more rows than head reads said "unexpected BrokenPipeError"."""
    process = _start(tmp_path, [*PYTHON, *command])
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141 and err == ""


@pytest.mark.skipif(os.name != "posix", reason="closing a child's descriptor is POSIX")
def test_a_closed_standard_stream_drops_what_goes_there(tmp_path, checkpoint_root, dataset_dir):
    """``acetui locate >&-`` and ``acetui estimate ... 2>&-``: Python has no stream there (None), and every
    write to it said "unexpected AttributeError"; the command runs, and what goes there is dropped."""
    env = subprocess_env(tmp_path)
    done = subprocess.run(
        [*PYTHON, "locate"], cwd=REPO, env=env, capture_output=True, text=True, preexec_fn=lambda: os.close(1)
    )
    assert done.returncode == 0 and done.stderr == ""
    csv = tmp_path / "o.csv"
    command = [*PYTHON, *estimate_args(checkpoint_root, dataset_dir, "--csv", str(csv), quiet=False)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, preexec_fn=lambda: os.close(2))
    assert done.returncode == 0 and csv.is_file()
    assert "--target-modules" in done.stdout and "acetui:" not in done.stdout
