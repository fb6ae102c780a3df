"""Helpers shared by the tests: running the real CLI, its argument lists, writing real samples and the
decoder's inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from acetui import cli
from acetui.model.synthetic import TINY

REPO = Path(__file__).resolve().parents[1]


def decoder_inputs(config, batch: int, frames: int, seed: int = 0, r_equals_t: bool = True) -> dict:
    """Random keyword inputs of the decoder's forward (7 condition tokens); r < t unless ``r_equals_t``."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.rand(batch, generator=generator)
    r = t if r_equals_t else t * torch.rand(batch, generator=generator)
    return dict(
        hidden_states=torch.randn(batch, frames, config.audio_acoustic_hidden_dim, generator=generator),
        timestep=t,
        timestep_r=r,
        encoder_hidden_states=torch.randn(batch, 7, config.condition_width, generator=generator),
        context_latents=torch.randn(batch, frames, config.context_channels, generator=generator),
    )


def sample_dict(frames: int = 10, tokens: int = 6, width: int = TINY.condition_width) -> dict:
    """A valid sample for the TINY variants, in the official layout."""
    return {
        "target_latents": torch.randn(frames, 64),
        "attention_mask": torch.ones(frames),
        "encoder_hidden_states": torch.randn(tokens, width),
        "encoder_attention_mask": torch.ones(tokens),
        "context_latents": torch.cat([torch.zeros(frames, 64), torch.ones(frames, 64)], dim=1),
        "metadata": {"caption": "test", "duration": 0},
    }


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``acetui.cli.main`` in this process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """stderr must be exactly one ``acetui: ...`` line (the CLI runs with -q) and hold no traceback."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("acetui: "), err
    return lines[0]


def estimate_args(root: Path, dataset: Path, *more: str, variant: str = "turbo", quiet: bool = True) -> list[str]:
    """``acetui estimate`` on the CPU in fp32 (exact and repeatable), Side-Step's short flags."""
    return [
        "estimate",
        *(["-q"] if quiet else []),
        "-c",
        str(root),
        "-M",
        variant,
        "-d",
        str(dataset),
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        *more,
    ]


def run_records(dirs) -> dict[str, dict]:
    """Every run record in the (isolated) history folder, by run id."""
    folder = dirs.runs
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """Environment for ``python -m acetui``: private XDG folders, one thread (exact, and fair on 2 cores)."""
    env = dict(os.environ)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        folder = tmp_path / name.lower()
        folder.mkdir(exist_ok=True)
        env[name] = str(folder)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env


def subprocess_runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "xdg_data_home" / "acetui" / "runs"


PYTHON = [sys.executable, "-m", "acetui"]


def run_with_terminal_stderr(tmp_path: Path, *argv: str, columns: int = 0) -> tuple[int, str]:
    """``acetui argv`` in a process whose stderr is a pseudo-terminal (POSIX) ``columns`` wide (0: of no
    known size): its exit code and all it wrote there, control sequences included, as a user's terminal
    receives them."""
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(
        [*PYTHON, *argv], cwd=REPO, env=subprocess_env(tmp_path), stdout=subprocess.DEVNULL, stderr=terminal
    )
    os.close(terminal)
    seen = read_terminal(controller)
    return process.wait(timeout=120), seen.decode()


def read_terminal(controller: int) -> bytes:
    """All a process wrote to the pseudo-terminal whose controlling end is ``controller``, which is closed."""
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the process closed its end (Linux reports EIO)
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    return seen
