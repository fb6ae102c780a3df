"""Free memory of every CUDA device, asked in a child process.

``torch.cuda.mem_get_info`` needs a CUDA context on the device it asks about, and a context costs a few
hundred MB of that GPU for the rest of the process. Asking every GPU of a shared server from the app
would leave it holding memory on GPUs it never runs on, so the question is put to a short-lived child
whose contexts vanish with it. Run as ``python -m acetui.estimate.devices``, it prints the answer as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass

import torch

from acetui.errors import first_line

PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str
    free: int
    total: int


def local_cuda_devices() -> list[CudaDevice]:
    """Every visible CUDA device with its free and total memory, as the driver reports them now."""
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        devices.append(CudaDevice(index, torch.cuda.get_device_name(index), free, total))
    return devices


def parse_devices(text: str) -> list[CudaDevice]:
    """The child's JSON answer; ValueError when it is not a list of devices."""
    try:
        return [CudaDevice(**entry) for entry in json.loads(text)]
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"unexpected answer {first_line(text)[:80]!r}") from error


def probe_cuda_devices(command: list[str] | None = None, timeout: float = PROBE_TIMEOUT_S) -> list[CudaDevice]:
    """The CUDA devices' free memory, without a CUDA context in this process.

    No child is started when this process sees no CUDA device (that check creates no context). Raises
    RuntimeError with one line when the child fails, hangs or answers nonsense.
    """
    if command is None:
        if not torch.cuda.is_available():
            return []
        command = [sys.executable, "-m", "acetui.estimate.devices"]
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the CUDA device query did not answer within {timeout:g} s") from None
    except OSError as error:
        raise RuntimeError(f"the CUDA device query could not start: {error.strerror or error}") from None
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines() or [f"exit status {child.returncode}"]
        raise RuntimeError(f"the CUDA device query failed: {lines[-1]}")
    try:
        return parse_devices(child.stdout)
    except ValueError as error:
        raise RuntimeError(f"the CUDA device query failed: {error}") from None


def main() -> None:
    print(json.dumps([asdict(device) for device in local_cuda_devices()]))


if __name__ == "__main__":
    main()
