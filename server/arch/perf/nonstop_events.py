"""The perf events of the non-stop mechanism: per-CPU rings, thread trackers, user breakpoints.

Everything a watched thread has is bound to one CPU and redirected into that
CPU's ring (``IOC_SET_OUTPUT`` needs the same CPU and clock); an event opened
with ``inherit`` can only be memory-mapped (here: redirected) when bound to a
CPU, hence one event per CPU rather than one per thread with ``cpu=-1``.

``inherit_thread`` limits the copies to threads (``CLONE_THREAD``): a process
forked by the target gets none, so it neither loses debug registers to us nor
floods the rings with samples nobody asked for.

The ring owner sets a wakeup *watermark* instead of counting samples: the
kernel wakes a reader per sample only for ``wakeup_events``, never for
FORK/EXIT/COMM records, and those must be noticed promptly (thread births and
exits are reported from them). ``wakeup_bytes=1`` wakes on every record.
"""

from __future__ import annotations

import errno
import os
import struct

from hwbkptd.arch.linux.perf_event import (
    Flag,
    perf_event_open,
)
from hwbkptd.arch.perf.percpu import (
    KERNEL_SAMPLE_TYPE,
    CpuRing,
    dummy_attr,
    sampling_breakpoint_attr,
)
from hwbkptd.core.model import Chunk

__all__ = [
    "FLAG_COMM",
    "FLAG_COMM_EXEC",
    "FLAG_TASK",
    "NONSTOP_SAMPLE_TYPE",
    "PERF_FORMAT_LOST",
    "NonstopRing",
    "open_tracker",
    "open_user_breakpoint",
    "read_lost",
]

#: What the kernel helper samples too (ip, tid, time, address, cpu, the event's id).
NONSTOP_SAMPLE_TYPE = KERNEL_SAMPLE_TYPE

# perf_event_attr flag bits perf_event.Flag lacks.
FLAG_COMM = 9
FLAG_TASK = 13
FLAG_COMM_EXEC = 24

#: read_format bit: read() also returns the samples the event could not write (Linux 6.0).
PERF_FORMAT_LOST = 1 << 4
_COUNT_AND_LOST = struct.Struct("=QQ")


class NonstopRing(CpuRing):
    """One CPU's ring, owned by a CPU-wide dummy event that records nothing itself; it
    wakes its reader once ``wakeup_bytes`` wait (1: every record)."""

    def __init__(self, cpu: int, data_pages: int, wakeup_bytes: int = 1) -> None:
        super().__init__(cpu, data_pages, NONSTOP_SAMPLE_TYPE, wakeup_bytes=wakeup_bytes)


def open_tracker(tid: int, cpu: int) -> int:
    """A dummy event on ``tid`` writing FORK/EXIT/COMM records, inherited by its new threads."""
    attr = dummy_attr(NONSTOP_SAMPLE_TYPE)
    attr.set_flag(Flag.INHERIT)
    attr.set_flag(Flag.INHERIT_THREAD)
    attr.set_flag(FLAG_TASK)
    attr.set_flag(FLAG_COMM)
    attr.set_flag(FLAG_COMM_EXEC)
    attr.set_flag(Flag.EXCLUDE_KERNEL)
    return perf_event_open(attr, tid, cpu)


class _LostFormat:
    #: Cleared once the kernel refused PERF_FORMAT_LOST (before 6.0): not asked again.
    supported = True


def open_user_breakpoint(chunk: Chunk, tid: int, cpu: int) -> tuple[int, bool]:
    """A disabled sampling breakpoint on ``tid`` for ``cpu``, copied into its later threads.

    Returns the fd and whether ``read_lost`` works on it. The lost-sample count
    is why: a PERF_RECORD_LOST is only written into a ring by the next record
    that fits, and after a burst none may come. Copies write through the
    original event, so its count covers them too.

    ``remove_on_exec``: after exec the address means something else, and the
    kernel drops the event (and its copies) before the new image runs.
    Raises OSError (ENOSPC: the thread has no free debug register).
    """
    attr = sampling_breakpoint_attr(
        chunk,
        NONSTOP_SAMPLE_TYPE,
        exclude_kernel=True,
        inherit=True,
        remove_on_exec=True,
        wakeup_events=0,
    )
    attr.set_flag(Flag.INHERIT_THREAD)
    if _LostFormat.supported:
        attr.read_format = PERF_FORMAT_LOST
        try:
            return perf_event_open(attr, tid, cpu), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        attr.read_format = 0
        fd = perf_event_open(attr, tid, cpu)
        _LostFormat.supported = False
        return fd, False
    return perf_event_open(attr, tid, cpu), False


def read_lost(fd: int) -> int:
    """Samples an event opened with PERF_FORMAT_LOST could not write, so far (OSError)."""
    data = os.read(fd, _COUNT_AND_LOST.size)
    if len(data) < _COUNT_AND_LOST.size:
        raise OSError(errno.EIO, "short read of a perf event count")
    return int(_COUNT_AND_LOST.unpack(data)[1])
