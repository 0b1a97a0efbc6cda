"""A process's threads and memory through /proc, without ptrace.

Reading ``/proc/PID/mem`` needs ptrace *access* (PTRACE_MODE_ATTACH: root, or
the same user under Yama scope 0), not a tracer, so it works while gdb owns
the process. One descriptor per process is kept: ``pread`` is then a single
system call per read.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ProcMem", "list_tasks", "zombie_exit_code"]


def list_tasks(pid: int, proc: Path = Path("/proc")) -> frozenset[int]:
    """The thread ids of ``pid``; empty when the process is gone."""
    try:
        return frozenset(int(name) for name in os.listdir(proc / str(pid) / "task"))
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return frozenset()


def zombie_exit_code(pid: int, proc: Path = Path("/proc")) -> int:
    """The wait status-derived exit code of a zombie, else -1 (still running, or reaped)."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return -1
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    fields = text.rpartition(")")[2].split()
    if len(fields) < 50 or fields[0] != "Z":
        return -1
    status = int(fields[49])
    if status & 0x7F:
        return -(status & 0x7F)  # killed by a signal: minus its number
    return (status >> 8) & 0xFF


class ProcMem:
    """``/proc/PID/mem`` of one process, opened on first use."""

    def __init__(self, pid: int, proc: Path = Path("/proc")) -> None:
        self.pid = pid
        self._path = proc / str(pid) / "mem"
        self._fd = -1

    def read(self, address: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``address``; OSError when unreadable (EIO: unmapped)."""
        if self._fd < 0:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        data = os.pread(self._fd, length, address)
        if len(data) != length:
            raise OSError(5, f"short read of {length} bytes at {address:#x}")
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
