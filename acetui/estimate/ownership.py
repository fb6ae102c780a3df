"""Who is running a run: while a run is going its record names its owner (process id, host name and,
on Linux, the process's start time), so that no second process resumes it and writes the same record.

``run_owner_alive`` tells whether that owner is still at work; a record left "running" by a killed
process is not, and stays resumable.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from acetui.errors import AcetuiError
from acetui.estimate.result import EstimateResult

WINDOWS_STILL_ACTIVE = 259  # GetExitCodeProcess's code for a process that has not exited
WINDOWS_QUERY_LIMITED_INFORMATION = 0x1000

_active_runs: set[str] = set()
_active_lock = threading.RLock()  # claim_run holds it while run_owner_alive takes it again


def claim_run(result: EstimateResult) -> None:
    """Mark the run as run by this process (``release_run`` when it ends), after ``check_not_running``;
    both under one lock, so two threads of this process cannot both take it up."""
    with _active_lock:
        check_not_running(result)
        _active_runs.add(result.run_id)


def release_run(run_id: str) -> None:
    with _active_lock:
        _active_runs.discard(run_id)


def process_owner() -> dict[str, Any]:
    """This process as the owner a running record names: pid, host and (on Linux) the process's start
    time, which tells a live owner from a later process that got the same pid."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": _linux_process(pid)[1]}


def run_owner_alive(result: EstimateResult) -> bool:
    """Whether the run is being written right now by its owner: the record says running, the owner is
    on this host and its process lives (this process: only while it runs ``result.run_id``). A record
    left running by a killed process, or owned on another host (which cannot be checked), is not."""
    owner = result.metadata.get("owner")
    if result.status != "running" or not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if pid == os.getpid():
        with _active_lock:
            return result.run_id in _active_runs
    if os.name == "nt":
        return _windows_process_alive(pid)
    return _posix_process_alive(pid, owner.get("started"))


def check_not_running(result: EstimateResult) -> None:
    """AcetuiError when ``run_owner_alive``: resuming would make a second process write the record."""
    if run_owner_alive(result):
        owner = result.metadata["owner"]
        raise AcetuiError(f"run {result.run_id} is still running (pid {owner['pid']} on host {owner['host']})")


def _linux_process(pid: int) -> tuple[str | None, int | None]:
    """(state, start time in clock ticks since boot) from ``/proc/<pid>/stat``; (None, None) elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # the name before ")" may hold spaces
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None, None


def _posix_process_alive(pid: int, started: Any) -> bool:
    """Whether ``pid`` runs (a zombie has exited) and, where both start times are known, is the same
    process that ``started`` then, not a later one given the same pid."""
    state, now_started = _linux_process(pid)
    if state == "Z" or (started is not None and now_started is not None and now_started != started):
        return False
    try:
        os.kill(pid, 0)  # signal 0 only checks that the process exists
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return False
    return True


def _windows_process_alive(pid: int) -> bool:
    """os.kill(pid, 0) would terminate the process on Windows: ask for its exit code instead."""
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(WINDOWS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == WINDOWS_STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
