"""The GPU path: skipped where there is no CUDA device (CI), run on a GPU machine before a release.

They check what the CPU suite cannot: the run on CUDA computes the same sensitivities as on the CPU,
bf16 is the default there, weights land on the device in the run dtype, attention never falls back to
the unfused math kernel, and activation checkpointing lowers peak VRAM without changing the numbers.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from acetui.data import write_dataset
from acetui.estimate import EstimateRequest, Estimator, RunStarted
from acetui.estimate.memory import activation_bytes, needs_activation_checkpointing
from acetui.estimate.scores import score_table
from acetui.model import AceStepDecoder, load_decoder
from acetui.model.synthetic import FULL_2B, TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def sensitivities(request: EstimateRequest) -> tuple[torch.Tensor, RunStarted]:
    events = []
    result = Estimator(request, on_event=events.append).run()
    started = next(event for event in events if isinstance(event, RunStarted))
    return score_table(result).means, started


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs()).max())


def test_fp32_on_cuda_matches_the_cpu(checkpoint_root, dataset_dir):
    cpu, _ = sensitivities(EstimateRequest(checkpoint_root, "base", dataset_dir, batches=3, device="cpu"))
    gpu, started = sensitivities(
        EstimateRequest(checkpoint_root, "base", dataset_dir, batches=3, device="cuda", dtype="fp32")
    )
    assert started.model.device.startswith("cuda") and started.model.dtype == "fp32"
    assert not torch.backends.cuda.cudnn_sdp_enabled()  # no per-length cuDNN attention plans
    # cuDNN may run the patch convolution in TF32, so agreement is ~1e-4, not 1e-7.
    assert relative_difference(gpu, cpu) < 5e-3
    assert gpu.argsort(descending=True)[:8].tolist() == cpu.argsort(descending=True)[:8].tolist()


def test_auto_dtype_on_cuda_is_bf16_and_ranks_like_fp32(checkpoint_root, dataset_dir):
    exact, _ = sensitivities(EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=3, device="cpu"))
    fast, started = sensitivities(EstimateRequest(checkpoint_root, "turbo", dataset_dir, batches=3, device="auto"))
    assert started.model.dtype == "bf16" and started.model.device.startswith("cuda")
    # The tiny model's width-64 bf16 activations round coarsely: single norms move up to ~30 %, the
    # ranking as a whole barely moves.
    assert float(((fast - exact).abs() / exact).mean()) < 0.1
    assert torch.corrcoef(torch.stack([fast, exact]))[0, 1] > 0.95


def test_weights_load_onto_the_device_in_the_run_dtype(checkpoint_root):
    on_cpu = load_decoder(checkpoint_root, "base", dtype=torch.float32)
    on_gpu = load_decoder(checkpoint_root, "base", dtype=torch.bfloat16, device="cuda")
    expected = on_cpu.state_dict()
    for name, tensor in on_gpu.state_dict().items():
        assert tensor.device.type == "cuda" and tensor.dtype == torch.bfloat16, name
        assert torch.equal(tensor.cpu(), expected[name].to(torch.bfloat16)), name


def random_decoder_and_batch(frames: int, dtype: torch.dtype) -> tuple[AceStepDecoder, tuple]:
    torch.manual_seed(0)
    model = AceStepDecoder(TINY).to("cuda", dtype)
    for module in model.modules():  # zero-initialised tables would make every layer an identity
        if hasattr(module, "scale_shift_table"):
            torch.nn.init.normal_(module.scale_shift_table, std=0.1)
    options = {"device": "cuda", "dtype": dtype}
    inputs = (
        torch.randn(2, frames, 64, **options),
        torch.rand(2, **options),
        torch.rand(2, **options),
        torch.randn(2, 7, TINY.condition_width, **options),
        torch.randn(2, frames, TINY.context_channels, **options),
    )
    return model, inputs


FUSED = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]


@pytest.mark.parametrize(
    ("dtype", "frames", "backends"),
    [
        (torch.bfloat16, 8, [SDPBackend.FLASH_ATTENTION]),  # no layer needs a mask: flash everywhere
        (torch.bfloat16, 200, FUSED),  # banded sliding layers (masked) and full layers
        (torch.float32, 8, [SDPBackend.EFFICIENT_ATTENTION]),  # --dtype fp32: flash has no fp32 kernel
        (torch.float32, 200, FUSED),
    ],
)
def test_attention_uses_fused_kernels_only(dtype, frames, backends):
    """With the math kernel ruled out, forward and backward still run: no silent O(T'^2) fallback."""
    model, inputs = random_decoder_and_batch(frames, dtype)
    with sdpa_kernel(backends):
        model(*inputs).float().square().mean().backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_activation_checkpointing_lowers_peak_vram_with_the_same_numbers(checkpoint_root, tmp_path):
    long_samples = tmp_path / "long"
    write_dataset(long_samples, count=2, condition_width=TINY.condition_width, seed=3, frames=(6000, 6000))
    peaks, norms = {}, {}
    for mode in ("off", "on"):
        request = EstimateRequest(
            checkpoint_root, "base", long_samples, batches=2, device="cuda", dtype="fp32", activation_checkpointing=mode
        )
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        norms[mode], started = sensitivities(request)
        peaks[mode] = torch.cuda.max_memory_allocated()
        assert started.model.activation_checkpointing == (mode == "on")
    # Peak VRAM also holds fixed workspaces (cuBLAS, attention), so compare the saving with the
    # activations checkpointing drops: measured 33 MB saved of the ~61 MB estimate on an H100.
    saved = peaks["off"] - peaks["on"]
    assert saved > 0.25 * activation_bytes(TINY, 6000, 1, torch.float32)
    assert relative_difference(norms["on"], norms["off"]) < 1e-4


def test_auto_checkpointing_follows_the_free_memory():
    free, _ = torch.cuda.mem_get_info()
    device = torch.device("cuda")
    assert not needs_activation_checkpointing(FULL_2B, 250, 1, torch.bfloat16, device)
    per_frame = 1 + free // (12 * FULL_2B.hidden_size + 4 * FULL_2B.intermediate_size) // FULL_2B.num_hidden_layers
    assert needs_activation_checkpointing(FULL_2B, int(per_frame), 1, torch.bfloat16, device)


def test_listing_the_gpus_leaves_no_cuda_context_in_the_app():
    """The parameters screen's device list asks a child process; this process must not hold a context."""
    code = (
        "import torch; from acetui.tui.screens.parameters import probe_devices;"
        "options, free, problem = probe_devices();"
        "assert not problem and free['cuda:0'][1] > 0, (problem, free);"
        "print(any(torch._C._cuda_hasPrimaryContext(i) for i in range(torch.cuda.device_count())))"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "False"
