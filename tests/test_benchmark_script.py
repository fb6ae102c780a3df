"""The benchmark script keeps working: it runs on the tiny config and writes consistent JSON (no timings checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "estimate.py"


def test_benchmark_script_on_tiny_config(tmp_path):
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    command = [
        sys.executable, str(SCRIPT), "--sizes", "tiny", "--lengths", "2", "--repeats", "2", "--warmup", "1",
        "--load-repeats", "1", "--memory-batches", "2", "--checkpointing-study-size", "tiny", "--crop-seconds", "1",
        "--device", "cpu", "--threads", "1", "--workdir", str(tmp_path / "work"),
        "--json", str(out), "--markdown", str(table),
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
    assert set(case["ratios"]) >= {"load", "batch", "peak"}
    assert set(case["activation_checkpointing"]) == {"off", "on", "crop 25 frames"}
    assert case["activation_checkpointing"]["on"]["activation_checkpointing"] is True
    assert case["activation_checkpointing"]["off"]["activation_checkpointing"] is False
    assert "| tiny | 2 s | 25 |" in table.read_text()
    assert "ranking identical" in done.stdout


def test_banded_sliding_attention_matches_the_dense_mask():
    """The engine's blocked sliding-window attention equals the official dense-mask SDPA (fp32 noise)."""
    import torch

    from acetui.model.decoder import AceStepDecoder, BandedAttention, sliding_window_attention
    from acetui.model.synthetic import TINY, random_state

    assert isinstance(sliding_window_attention(32, 4, torch.device("cpu")), BandedAttention)
    assert not isinstance(sliding_window_attention(31, 4, torch.device("cpu")), BandedAttention)
    model = AceStepDecoder(TINY)
    model.load_state_dict({key.removeprefix("decoder."): value for key, value in random_state(TINY, 3, torch.float32).items()})
    generator = torch.Generator().manual_seed(0)
    for batch, frames in ((1, 97), (2, 200)):  # odd length, padded last block, batch > 1
        inputs = (
            torch.randn(batch, frames, 64, generator=generator),
            torch.rand(batch, generator=generator),
            torch.randn(batch, 7, TINY.condition_width, generator=generator),
            torch.randn(batch, frames, 128, generator=generator),
        )
        outputs = []
        for banded in (True, False):
            model.banded_attention = banded
            model.zero_grad()
            x, t, condition, context = inputs
            out = model(x, t, t, condition, context)
            out.square().mean().backward()
            outputs.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
        (out_banded, grads_banded), (out_dense, grads_dense) = outputs
        torch.testing.assert_close(out_banded, out_dense, rtol=1e-5, atol=1e-5)
        for banded_grad, dense_grad in zip(grads_banded, grads_dense):
            torch.testing.assert_close(banded_grad, dense_grad, rtol=1e-4, atol=1e-6)
