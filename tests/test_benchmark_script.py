"""The benchmark script keeps working: it runs on the tiny config and writes consistent JSON (no timings checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "estimate.py"


def test_benchmark_script_on_tiny_config(tmp_path):
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    command = [
        sys.executable,
        str(SCRIPT),
        "--sizes",
        "tiny",
        "--lengths",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--load-repeats",
        "1",
        "--memory-batches",
        "2",
        "--checkpointing-study-size",
        "tiny",
        "--crop-seconds",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--workdir",
        str(tmp_path / "work"),
        "--json",
        str(out),
        "--markdown",
        str(table),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["device"] == "cpu"
    assert results["machine"]["torch"]
    [case] = results["cases"]
    assert (case["size"], case["frames"], case["tokens"], case["batches"]) == ("tiny", 50, 25, 3)
    assert case["ranking_identical"] and case["losses_identical"]
    assert case["max_norm_relative_difference"] < 1e-4
    for variant in ("ours", "baseline"):
        row = case[variant]
        assert len(row["all_batch_seconds"]) == 3
        assert row["batch_seconds"] > 0 and row["load_seconds"] > 0 and row["tflops"] > 0
        memory = row["memory"]
        assert memory["peak_bytes"] >= memory["batch_peak_bytes"] > 0
        assert len(memory["batch_peaks_bytes"]) == 2
        # Live tensors (the profiler's allocation events) stay below the resident set, which holds them.
        assert 0 < memory["tensor_peak_bytes"] < memory["batch_peak_bytes"]
    assert set(case["ratios"]) >= {"load", "batch", "peak", "tensor_peak"}
    assert set(case["activation_checkpointing"]) == {"off", "on", "crop 25 frames"}
    assert case["activation_checkpointing"]["on"]["activation_checkpointing"] is True
    assert case["activation_checkpointing"]["off"]["activation_checkpointing"] is False
    assert "| tiny | 2 s | 25 |" in table.read_text()
    assert "ranking identical" in done.stdout


def test_varied_lengths_give_every_batch_its_own_shape(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, str(SCRIPT), "--cases", "tiny:4", "--repeats", "3", "--warmup", "1"]
    command += ["--length-spread", "0.5", "--no-memory", "--load-repeats", "1", "--device", "cpu", "--threads", "1"]
    command += ["--workdir", str(tmp_path / "work"), "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    [case] = json.loads(out.read_text())["cases"]
    assert case["length_spread"] == 0.5 and case["ranking_identical"] and case["losses_identical"]
    [dataset] = (tmp_path / "work").glob("data-tiny-4s-*")
    lengths = {torch.load(path, weights_only=True)["target_latents"].shape[0] for path in dataset.glob("*.pt")}
    assert len(list(dataset.glob("*.pt"))) == 4 and all(50 <= frames <= 100 for frames in lengths)
    assert len(lengths) > 1


def test_profile_script_prints_where_the_time_goes(tmp_path):
    script = SCRIPT.with_name("profile_batch.py")
    command = [sys.executable, str(script), "--size", "tiny", "--seconds", "2", "--device", "cpu"]
    command += ["--warmup", "1", "--active", "2", "--rows", "5", "--workdir", str(tmp_path), "--trace", "t.json.gz"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "tiny at 2 s on cpu fp32" in done.stdout and "wall per batch" in done.stdout
    assert "aten::" in done.stdout and (tmp_path / "t.json.gz").stat().st_size > 0


def test_several_samples_per_batch_reach_both_variants(tmp_path):
    """Equal losses mean the engine and the baseline drew the same two samples into every batch (with CUDA
    graphs off, which the memory subprocesses take too, and the table names)."""
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    command = [sys.executable, str(SCRIPT), "--cases", "tiny:2", "--batch-size", "2", "--repeats", "2"]
    command += ["--warmup", "1", "--load-repeats", "1", "--memory-batches", "1", "--no-checkpointing-study"]
    command += ["--device", "cpu", "--threads", "1", "--workdir", str(tmp_path / "work")]
    command += ["--json", str(out), "--markdown", str(table), "--cuda-graphs", "off"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    [case] = json.loads(out.read_text())["cases"]
    assert case["batch_size"] == 2 and case["losses_identical"] and case["ranking_identical"]
    assert case["cuda_graphs"] == "off"
    [dataset] = (tmp_path / "work").glob("data-tiny-2s-*")
    assert len(list(dataset.glob("*.pt"))) == 6
    assert case["ours"]["memory"]["batch_peak_bytes"] > 0 and case["baseline"]["memory"]["batch_peak_bytes"] > 0
    assert "| tiny x2 (ours eager) | 2 s | 25 |" in table.read_text()
    assert "3 batches of 2 each" in done.stdout


def run_script(tmp_path: Path, name: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``benchmarks/<name> args --json FILE``, which must succeed: what it printed and the results it wrote."""
    out = tmp_path / "results.json"
    command = [sys.executable, str(SCRIPT.with_name(name)), *args, "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done, json.loads(out.read_text())


def test_record_saving_script_compares_the_budget_with_saving_every_batch(tmp_path):
    done, results = run_script(tmp_path, "record_saving.py", "--batches", "12")
    assert results["every_batch"]["saves_after_batches"] == 12  # the baseline saves after each batch
    assert 1 <= results["budget"]["saves_after_batches"] <= 12
    assert "wall time per batch, every batch / budget" in done.stdout


def test_app_progress_script_compares_the_run_screen_with_the_engine_alone():
    command = [sys.executable, str(SCRIPT.with_name("app_progress.py")), "--batches", "5"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "x the engine alone)" in done.stdout and "Traceback" not in done.stderr


def test_history_listing_script_compares_kept_summaries_with_reading_every_record(tmp_path):
    done, results = run_script(tmp_path, "history_listing.py", "--runs", "3", "--batches", "6")
    assert (results["runs"], results["batches"]) == (3, 6) and results["every_record"] > 0 and results["kept"] > 0
    assert "3 records of 6 batches" in done.stdout and "summaries kept" in done.stdout


def test_dataset_scan_script_compares_a_kept_scan_with_reading_every_sample(tmp_path):
    done, results = run_script(tmp_path, "dataset_scan.py", "--samples", "3", "--seconds", "2")
    assert results["samples"] == 3 and results["every_sample"] > 0 and results["kept"] > 0
    assert results["cache_bytes"] > 0
    assert "3 samples of 2 s" in done.stdout and "scan kept" in done.stdout
