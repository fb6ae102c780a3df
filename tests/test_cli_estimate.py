"""``acetui estimate`` end to end on tiny checkpoints: files written, their formats, error exits."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import pytest
import torch

from acetui.cli import main
from acetui.estimate import BatchDone
from acetui.estimate.memory import memory_stats
from acetui.progress import batch_parts, fitted
from tests.support import estimate_args, run_cli, run_with_terminal_stderr


def _estimate(checkpoint_root, dataset_dir, *extra: str) -> list[str]:
    return [
        "estimate",
        "--checkpoint-dir",
        str(checkpoint_root),
        "--model-variant",
        "turbo",
        "--dataset-dir",
        str(dataset_dir),
        "--estimate-batches",
        "3",
        "--top-k",
        "5",
        "--quiet",
        *extra,
    ]


def test_estimate_writes_json_csv_and_peft(checkpoint_root, dataset_dir, tmp_path, capsys):
    out, table, peft = tmp_path / "out.json", tmp_path / "out.csv", tmp_path / "peft.json"
    suffixes = tmp_path / "peft-suffix.json"
    outputs = ["--estimate-output", str(out), "--csv", str(table), "--peft-output", str(peft)]
    code = main(_estimate(checkpoint_root, dataset_dir, *outputs, "--peft-suffix-output", str(suffixes)))
    assert code == 0
    entries = json.loads(out.read_text())
    assert len(entries) == 4 * 8
    values = [entry["sensitivity"] for entry in entries]
    assert values == sorted(values, reverse=True) and values[0] > 0
    assert all(entry["module"].startswith("decoder.layers.") for entry in entries)
    assert sum(entry["top_k"] for entry in entries) == 5

    rows = list(csv.DictReader(table.open()))
    assert [row["module"] for row in rows] == [entry["module"] for entry in entries]
    assert {row["attention"] for row in rows} == {"self_attn", "cross_attn"}
    for row, entry in zip(rows, entries):
        assert float(row["p_top_k"]) == entry["p_top_k"] and float(row["stderr"]) == entry["stderr"]
        assert float(row["ci_low"]) <= float(row["sensitivity"]) <= float(row["ci_high"])

    targets = json.loads(peft.read_text())["target_modules"]
    assert targets == [entry["module"].removeprefix("decoder.") for entry in entries[:5]]
    # every layer's projection of each kind the top-k holds (the app's "PEFT (suffixes)" export)
    kinds = sorted({".".join(entry["module"].split(".")[-2:]) for entry in entries[:5]})
    assert json.loads(suffixes.read_text()) == {"target_modules": kinds}

    printed = capsys.readouterr().out
    assert entries[0]["module"] in printed and "--target-modules" in printed
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_fine_tune_given_by_its_path_needs_no_checkpoint_root(checkpoint_root, dataset_dir, capsys, monkeypatch):
    folder = checkpoint_root / "acestep-v15-turbo"
    args = ["estimate", "-q", "-M", str(folder), "-d", str(dataset_dir), "--estimate-batches", "1"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and out.startswith("rank") and err == ""
    monkeypatch.chdir(checkpoint_root.parent)  # a relative path through a folder, as a shell completes it
    args[3] = f"{checkpoint_root.name}/acestep-v15-turbo"
    assert run_cli(capsys, *args)[0] == 0
    listed = run_cli(capsys, "runs")[1].splitlines()[1:]
    assert [row.split()[2] for row in listed] == ["turbo", "turbo"]  # by its folder's name, not its path
    code, out, _ = run_cli(capsys, "scan", str(dataset_dir), "-M", str(folder))
    assert code == 0 and "give --checkpoint-dir" not in out  # the widths were checked against it
    code, _, err = run_cli(capsys, "estimate", "-M", "turbo", "-d", str(dataset_dir))
    assert code == 1 and err == "acetui: missing --checkpoint-dir (give the flag or a --profile that sets it)\n"


def test_layer_granularity_ranks_attention_blocks(checkpoint_root, dataset_dir, tmp_path):
    out = tmp_path / "layers.json"
    assert main(_estimate(checkpoint_root, dataset_dir, "--granularity", "layer", "-o", str(out))) == 0
    modules = [entry["module"] for entry in json.loads(out.read_text())]
    assert sorted(modules) == sorted(f"decoder.layers.{n}.{k}" for n in range(4) for k in ("self_attn", "cross_attn"))


@pytest.mark.parametrize(
    "change, message",
    [
        (("--dataset-dir", "/nonexistent/data"), "/nonexistent/data"),
        (("--model-variant", "xl-turbo"), "acestep-v15-xl-turbo"),
        (("--checkpoint-dir", "/nonexistent/ckpt"), "/nonexistent/ckpt"),
        (("--top-k", "0"), "top-k"),
        (("--device", "cuda:7"), "cuda:7"),
        (("--timestep-focus", "0.7,0.2"), "0.7,0.2"),
        (("--timestep-focus", "middle"), "middle"),
    ],
)
def test_bad_settings_exit_with_one_line(checkpoint_root, dataset_dir, capsys, change, message):
    args = _estimate(checkpoint_root, dataset_dir)
    flag, value = change
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    assert main(args) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("acetui: ") and message in error[0]


def test_console_script_runs_as_a_process(checkpoint_root, dataset_dir, tmp_path):
    env = {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "acetui", *_estimate(checkpoint_root, dataset_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "decoder.layers." in done.stdout
    assert len(list((tmp_path / "data" / "acetui" / "runs").glob("*.json"))) == 1


def test_engine_does_not_import_textual():
    code = (
        "import sys, acetui.estimate, acetui.data, acetui.model, acetui.profiles, acetui.history, acetui.cli; "
        "print('textual' in sys.modules or 'rich' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_demo_headless_creates_cache_once_and_runs(capsys, isolated_app_dirs):
    assert main(["demo", "--headless"]) == 0
    marker = next(isolated_app_dirs.demo.glob("complete-*"))
    stamp = marker.stat().st_mtime_ns
    assert "decoder.layers." in capsys.readouterr().out
    from acetui.demo import ensure_demo

    ensure_demo()
    assert marker.stat().st_mtime_ns == stamp


def test_a_demo_that_cannot_be_written_is_one_line(capsys, isolated_app_dirs):
    isolated_app_dirs.cache.write_text("a file where the cache folder goes")
    assert main(["demo", "--headless"]) == 1
    assert capsys.readouterr().err == (
        f"acetui: {isolated_app_dirs.demo}: cannot write the demo files (Not a directory); point XDG_CACHE_HOME "
        "at a folder you can write\n"
    )


def test_an_unexpected_error_is_one_line_unless_debugging(monkeypatch, capsys):
    """A bug (here: unusable app folders) prints one line; ACETUI_DEBUG=1 gives the traceback instead."""
    from acetui import paths

    monkeypatch.setattr(paths, "app_dirs", lambda: None)
    assert main(["locate"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "acetui: unexpected AttributeError: 'NoneType' object has no attribute 'profiles' "
        "(set ACETUI_DEBUG=1 for the traceback)"
    ]
    monkeypatch.setenv("ACETUI_DEBUG", "1")
    with pytest.raises(AttributeError):
        main(["locate"])


def test_run_time_dependencies_cover_what_the_demo_needs():
    """safetensors' torch writer imports numpy without declaring it, so acetui must (the demo writes one)."""
    from importlib.metadata import requires

    declared = {requirement.split(">")[0].split("=")[0].split(";")[0].strip() for requirement in requires("acetui")}
    assert {"textual", "torch", "safetensors", "numpy", "platformdirs", "tomli-w"} <= declared


def test_progress_ends_with_the_time_and_peak_memory(checkpoint_root, dataset_dir, capsys):
    code, _, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "3", quiet=False))
    assert code == 0
    done = next(line for line in err.splitlines() if line.startswith("done: "))
    assert done.startswith("done: 3 batches in ") and " s/batch), peak RSS " in done


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_a_terminal_sees_setup_progress_on_a_line_the_next_stage_replaces(checkpoint_root, dataset_dir, tmp_path):
    """On a terminal the scan and load count up in place; a log (the other tests' pipes) gets the stages only."""
    args = estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "1", quiet=False)
    code, text = run_with_terminal_stderr(tmp_path, *args)
    assert code == 0, text
    scanning = f"scanning {dataset_dir} ...\r\n\r\x1b[K  0 of 6 files\r\x1b[K"
    assert scanning + "loading turbo decoder to cpu as fp32 ...\r\n\r\x1b[K  0 B of " in text


def test_a_log_gets_the_stages_without_setup_progress(checkpoint_root, dataset_dir, capsys):
    code, _, err = run_cli(capsys, *estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "1", quiet=False))
    assert code == 0 and "scanning " in err and " of 6 files" not in err and "\r" not in err


def test_a_log_gets_a_batch_line_every_ten_seconds_not_every_batch(checkpoint_root, dataset_dir, capsys):
    """A 3,000-batch run under nohup wrote 3,000 lines; its first and last batch are always there."""
    args = estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "12", quiet=False)
    code, _, err = run_cli(capsys, *args)
    batches = [line.split("batch ")[1].split()[0] for line in err.splitlines() if line.startswith("|")]
    assert code == 0 and batches[0] == "1/12" and batches[-1] == "12/12"
    assert len(batches) < 4  # 12 tiny batches take far less than ten seconds, even on a busy machine


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
@pytest.mark.parametrize("columns", [80, 40])
def test_a_batch_line_fits_the_terminal_it_is_rewritten_on(checkpoint_root, dataset_dir, tmp_path, columns):
    """The whole line is ~115 columns: on an 80-column terminal it wrapped, and each rewrite scrolled a new
    line up instead of replacing the last. It leaves out speed, the bar, stability, memory and the loss, in
    that order, keeping the batch count and the ETA."""
    args = estimate_args(checkpoint_root, dataset_dir, "--estimate-batches", "3", quiet=False)
    code, text = run_with_terminal_stderr(tmp_path, *args, columns=columns)
    assert code == 0, text
    lines = [part.split("\r\n")[0] for part in text.split("\r\x1b[K") if "batch 3/3" in part]
    assert lines and all(len(line) < columns and "ETA " in line for line in lines)
    if columns == 80:
        assert lines[-1].startswith("batch 3/3  loss ") and " RSS " in lines[-1] and "ETA " in lines[-1]
        assert "s/batch" not in lines[-1] and "|" not in lines[-1]


def test_an_excluded_batchs_reason_stays_on_a_narrow_line():
    """The reason a batch does not count is what a user must see; the loss is what goes."""
    reason = "non-finite gradient in decoder.layers.3.self_attn.q_proj (skipped)"
    event = BatchDone(2, 200, math.nan, 1.0, reason, 1.0, 0.5, 2.0, 99.0, memory_stats(torch.device("cpu")))
    line = fitted(batch_parts(event), 100)
    assert line.startswith("batch 3/200  non-finite gradient") and line.endswith("ETA 1m 39s") and len(line) < 100
