"""Who is running a run: while a run is going its record names its owner (process id, host name and,
on Linux, the process's start time), so that no second process resumes it and writes the same record.

``run_owner_alive`` tells whether that owner is still at work; a record left "running" by a killed
process is not, and stays resumable. The owner is only written once the model is loaded, so two
resumes started together could both pass that check: ``claim_run`` therefore also takes an exclusive
lock on ``<run id>.lock`` beside the record for the run's lifetime (``flock`` on POSIX, ``msvcrt.locking``
on Windows). The operating system drops it when its process dies, so a killed run's lock never blocks a
later resume; on Windows the empty lock file stays behind (an open file cannot be removed there).
Where the filesystem has no working locks (Lustre without ``-o flock``, NFS without lockd, some FUSE
mounts) the run goes on unlocked with a warning: the owner check still applies.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from acetui.atomic import remove_leftovers
from acetui.errors import AcetuiError
from acetui.estimate.result import EstimateResult, read_record

if os.name == "nt":
    import msvcrt
else:
    import fcntl

WINDOWS_STILL_ACTIVE = 259  # GetExitCodeProcess's code for a process that has not exited
WINDOWS_QUERY_LIMITED_INFORMATION = 0x1000
LOCK_SUFFIX = ".lock"
LOCKS_UNSUPPORTED = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP}  # flock's "no locks here"

_active_runs: set[str] = set()
_active_lock = threading.RLock()  # claim_run holds it while run_owner_alive takes it again


class _NoLocks(Exception):
    """The lock file's filesystem has no working locks; the message is its strerror."""


class RunLock:
    """An exclusive lock held while ``handle`` stays open; ``take`` it, ``release`` it when the run ends.
    ``unsupported`` says why the file could not be locked where its filesystem has no locks (else None)."""

    def __init__(self, path: Path, handle: IO[bytes], unsupported: str | None = None) -> None:
        self.path = path
        self.handle = handle
        self.unsupported = unsupported

    @classmethod
    def take(cls, path: Path) -> RunLock | None:
        """The lock on ``path`` (created if missing), or None while another holder has it."""
        while True:
            handle = _open(path)
            unsupported = None
            try:
                locked = _try_lock(handle, path)
            except _NoLocks as error:
                locked, unsupported = True, str(error)
            except BaseException:
                handle.close()
                raise
            if not locked:
                handle.close()
                return None
            if _same_file(handle, path):
                return cls(path, handle, unsupported)
            handle.close()  # its last holder removed it meanwhile: lock the file now at ``path``

    def release(self) -> None:
        """Remove the file while still holding it (whoever locks the old file next sees it is gone, see
        ``take``), then let go; on Windows the removal fails while the file is open, and it stays."""
        try:
            self.path.unlink()
        except OSError:
            pass
        if os.name == "nt" and self.unsupported is None:  # closing lets go too, but Windows may take its time
            self.handle.seek(0)
            msvcrt.locking(self.handle.fileno(), msvcrt.LK_UNLCK, 1)
        self.handle.close()


class RunClaim:
    """This process's hold on a run: its id among the runs active here, the lock beside its record, and
    the run as its record was once locked (``result``: what the run must continue from)."""

    def __init__(self, result: EstimateResult, lock: RunLock) -> None:
        self.result = result
        self.lock = lock

    @property
    def run_id(self) -> str:
        return self.result.run_id

    @property
    def warning(self) -> str | None:
        """One line for the user when the lock file could not be locked (None when it was)."""
        if self.lock.unsupported is None:
            return None
        return (
            f"{self.lock.path}: this filesystem cannot lock files ({self.lock.unsupported}); "
            f"two resumes of run {self.run_id} started at the same time are not prevented here"
        )

    def release(self) -> None:
        with _active_lock:
            _active_runs.discard(self.run_id)
        self.lock.release()


def claim_run(result: EstimateResult, record: Path) -> RunClaim:
    """Take the run up in this process (``release`` the claim when it ends): lock the file beside its
    ``record``, then check the record as it is now, which another process may have resumed since
    ``result`` was read: continue from the claim's ``result``, or the batches it added are lost.
    Refused as ``_lock_idle`` refuses, and when the run is complete."""
    with _active_lock:
        current, lock = _lock_idle(result, record)
        try:
            check_incomplete(current)
        except BaseException:
            lock.release()
            raise
        remove_leftovers(record)  # of a killed owner's save: the run is this claim's alone to write now
        _active_runs.add(result.run_id)
        return RunClaim(current, lock)


@contextmanager
def run_left_alone(result: EstimateResult, record: Path) -> Iterator[EstimateResult]:
    """The run as its record now is, while no process runs it or can take it up (its lock is held for the
    block): what removing its record needs. Refused as ``_lock_idle`` refuses; a complete run is welcome."""
    with _active_lock:
        current, lock = _lock_idle(result, record)
    try:
        yield current
    finally:
        lock.release()


def _lock_idle(result: EstimateResult, record: Path) -> tuple[EstimateResult, RunLock]:
    """The lock beside ``record`` and the run as its record is once locked; refused when this process runs
    it already (checked here: NFS's per-process locks, or none, would let it in), the lock is held, or a
    live process runs it. The caller holds ``_active_lock``."""
    if result.run_id in _active_runs:
        raise AcetuiError(_still_running(result.run_id, os.getpid(), socket.gethostname()))
    lock_path = record.with_suffix(LOCK_SUFFIX)
    lock = RunLock.take(lock_path)
    try:
        current = _current(result, record)
        check_not_running(current)  # names the owner when its record does already
        if lock is None:
            raise AcetuiError(f"run {result.run_id} is already being taken up ({lock_path} is locked)")
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return current, lock


def being_taken_up(record: Path) -> bool:
    """Whether a process holds the lock beside ``record`` (POSIX): it is taking the run up, still setting up
    (scanning, loading) before its record names it as the owner, so a listing does not show the run as
    merely interrupted. Asked with a shared lock, let go at once: a claim in that very instant is refused
    ("already being taken up") and can be tried again."""
    if os.name == "nt":
        return False
    try:
        descriptor = os.open(record.with_suffix(LOCK_SUFFIX), os.O_RDONLY)
    except OSError:  # no lock file: nobody holds it
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a filesystem without locks: nothing to tell
        return False
    finally:
        os.close(descriptor)  # closing lets go of a lock just taken
    return False


def check_incomplete(result: EstimateResult) -> None:
    """AcetuiError for a complete run: there is nothing left to resume."""
    if result.status == "complete":
        raise AcetuiError(f"run {result.run_id} is already complete ({result.completed_batches} batches)")


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
        raise AcetuiError(_still_running(result.run_id, owner["pid"], owner["host"]))


def _still_running(run_id: str, pid: int, host: str) -> str:
    return f"run {run_id} is still running (pid {pid} on host {host})"


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


def _current(result: EstimateResult, record: Path) -> EstimateResult:
    """The run as its record now says (``result`` when there is no readable record yet)."""
    try:
        return read_record(record) if record.is_file() else result
    except AcetuiError:
        return result


def _open(path: Path) -> IO[bytes]:
    """``path`` opened for locking (created with its folders if missing), kept open for the run's
    lifetime: closing it lets go of the lock."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+b")
    except OSError as error:
        raise AcetuiError(f"{path}: cannot write ({error.strerror or error})") from None


def _same_file(handle: IO[bytes], path: Path) -> bool:
    """Whether ``handle`` is still the file at ``path`` (not one removed by its previous holder)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _try_lock(handle: IO[bytes], path: Path) -> bool:
    """Lock ``handle``'s file (at ``path``) without waiting; False when another open file holds the
    lock, ``_NoLocks`` where its filesystem has none, a one-line AcetuiError on any other failure."""
    try:
        if os.name == "nt":
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):  # POSIX: EWOULDBLOCK; Windows: EACCES
        return False
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno in LOCKS_UNSUPPORTED:
            raise _NoLocks(reason) from None
        raise AcetuiError(f"{path}: cannot lock ({reason})") from None
    return True
