"""The GPU free-memory query runs in a child process (so the app holds no CUDA context on GPUs it does not
use); what it answers, and how each way it can fail reads as one line."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from acetui.estimate.devices import CudaDevice, parse_devices, probe_cuda_devices
from acetui.tui.screens.parameters import probe_devices

CHILD = [sys.executable, "-m", "acetui.estimate.devices"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_child_reports_this_machines_cuda_devices():
    devices = probe_cuda_devices(CHILD)
    assert len(devices) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert all(0 <= device.free <= device.total for device in devices)


def test_an_answer_round_trips():
    device = CudaDevice(index=1, name="NVIDIA H100 80GB HBM3", free=70 * 2**30, total=80 * 2**30)
    answer = json.dumps([{"index": 1, "name": device.name, "free": device.free, "total": device.total}])
    assert probe_cuda_devices(python(f"print({answer!r})")) == [device]
    assert parse_devices("[]") == []


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (python("print('CUDA driver banner')"), "the CUDA device query failed: unexpected answer 'CUDA driver banner'"),
        (python("print('[{\"index\": 0}]')"), "the CUDA device query failed: unexpected answer"),
        (
            python("import sys; sys.stderr.write('Traceback\\nRuntimeError: CUDA error: busy\\n'); sys.exit(1)"),
            "the CUDA device query failed: RuntimeError: CUDA error: busy",
        ),
        (python("import sys; sys.exit(3)"), "the CUDA device query failed: exit status 3"),
        (["/nonexistent/python"], "the CUDA device query could not start: No such file or directory"),
    ],
)
def test_a_failing_child_is_one_line(command, message):
    with pytest.raises(RuntimeError) as error:
        probe_cuda_devices(command)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_hanging_child_is_given_up():
    with pytest.raises(RuntimeError, match=r"did not answer within 0.5 s"):
        probe_cuda_devices(python("import time; time.sleep(30)"), timeout=0.5)


def test_the_device_list_ends_with_the_cpu_and_auto_follows_the_first_device():
    options, free, problem = probe_devices()
    first = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert options[0][1] == "auto" and options[0][0].startswith(f"auto ({first}")
    assert options[-1][1] == "cpu" and problem == ""
    assert free["auto"] == free[first] and free["cpu"][0] is False
