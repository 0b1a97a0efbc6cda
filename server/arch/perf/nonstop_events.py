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

import ctypes
import errno
import os
import struct
import time

from hwbkptd.arch.linux.perf_event import (
    SAMPLE_ADDR,
    SAMPLE_CPU,
    SAMPLE_IP,
    SAMPLE_TID,
    SAMPLE_TIME,
    Flag,
    PerfEventAttr,
    breakpoint_attr,
    perf_event_open,
)
from hwbkptd.arch.perf.percpu import CpuRing, bp_type_for
from hwbkptd.arch.perf.ring import SAMPLE_IDENTIFIER
from hwbkptd.core.model import Access, Chunk

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

NONSTOP_SAMPLE_TYPE = (
    SAMPLE_IDENTIFIER | SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME | SAMPLE_ADDR | SAMPLE_CPU
)

# perf_event_attr flag bits perf_event.Flag lacks.
FLAG_COMM = 9
FLAG_TASK = 13
FLAG_COMM_EXEC = 24

#: read_format bit: read() also returns the samples the event could not write (Linux 6.0).
PERF_FORMAT_LOST = 1 << 4
_COUNT_AND_LOST = struct.Struct("=QQ")

_PERF_TYPE_SOFTWARE = 1
_PERF_COUNT_SW_DUMMY = 9
_EXEC_LEN = ctypes.sizeof(ctypes.c_long)


def _clock_and_ids(attr: PerfEventAttr) -> None:
    attr.set_flag(Flag.USE_CLOCKID)
    attr.clockid = time.CLOCK_MONOTONIC
    attr.set_flag(Flag.SAMPLE_ID_ALL)


def _dummy_attr() -> PerfEventAttr:
    attr = PerfEventAttr()
    attr.type = _PERF_TYPE_SOFTWARE
    attr.size = ctypes.sizeof(PerfEventAttr)
    attr.config = _PERF_COUNT_SW_DUMMY
    attr.sample_type = NONSTOP_SAMPLE_TYPE
    _clock_and_ids(attr)
    return attr


class NonstopRing(CpuRing):
    """One CPU's ring, owned by a CPU-wide dummy event that records nothing itself; it
    wakes its reader once ``wakeup_bytes`` wait (1: every record)."""

    def __init__(self, cpu: int, data_pages: int, wakeup_bytes: int = 1) -> None:
        super().__init__(cpu, data_pages, NONSTOP_SAMPLE_TYPE, wakeup_bytes=wakeup_bytes)


def open_tracker(tid: int, cpu: int) -> int:
    """A dummy event on ``tid`` writing FORK/EXIT/COMM records, inherited by its new threads."""
    attr = _dummy_attr()
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
    length = _EXEC_LEN if chunk.access is Access.EXEC else chunk.length
    attr = breakpoint_attr(
        chunk.address,
        length,
        bp_type_for(chunk.access),
        sample_type=NONSTOP_SAMPLE_TYPE,
        sample_period=1,
        disabled=True,
        exclude_kernel=True,
        inherit=True,
        remove_on_exec=True,
        wakeup_events=0,
    )
    attr.set_flag(Flag.INHERIT_THREAD)
    _clock_and_ids(attr)
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
