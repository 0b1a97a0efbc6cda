"""Per-CPU perf plumbing: one sample ring per CPU and breakpoint events writing into it.

Each CPU's ring belongs to a software *dummy* event (it counts nothing) opened
on that CPU; every breakpoint event on the CPU is redirected into that ring
with PERF_EVENT_IOC_SET_OUTPUT. So one mapping and one ``add_reader`` serve
all slots of a CPU, and closing a slot's events never takes a ring with it
(a mapped event lives as long as its mapping). Samples carry
``SAMPLE_IDENTIFIER`` first so the reader knows which event wrote each one.

Timestamps use CLOCK_MONOTONIC (``use_clockid``) so they compare with
``time.monotonic_ns()``; events sharing a ring must share the clock.
"""

from __future__ import annotations

import array
import ctypes
import errno
import fcntl
import os
import platform
import time

from hwbkptd.arch.linux.perf_event import (
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    IOC_ENABLE,
    SAMPLE_ADDR,
    SAMPLE_CALLCHAIN,
    SAMPLE_CPU,
    SAMPLE_IP,
    SAMPLE_TID,
    SAMPLE_TIME,
    Flag,
    PerfEventAttr,
    breakpoint_attr,
    ioctl,
    perf_event_open,
)
from hwbkptd.arch.perf.ring import SAMPLE_IDENTIFIER, RingBuffer, map_ring
from hwbkptd.core.model import Access, Chunk

__all__ = [
    "CHAIN_SAMPLE_TYPE",
    "IOC_ID",
    "IOC_SET_OUTPUT",
    "KERNEL_SAMPLE_TYPE",
    "CpuRing",
    "bp_type_for",
    "dummy_attr",
    "enable",
    "errno_text",
    "event_id",
    "open_kernel_breakpoint",
    "sampling_breakpoint_attr",
]

IOC_SET_OUTPUT = 0x2405  # _IO('$', 5)
IOC_ID = 0x80082407  # _IOR('$', 7, __u64)

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_DUMMY = 9

KERNEL_SAMPLE_TYPE = (
    SAMPLE_IDENTIFIER | SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME | SAMPLE_ADDR | SAMPLE_CPU
)
#: For slots whose holders asked for call chains: the kernel walks the stack per hit,
#: so only those pay for it (their events write to a ring of their own).
CHAIN_SAMPLE_TYPE = KERNEL_SAMPLE_TYPE | SAMPLE_CALLCHAIN

# x86 debug registers have no read-only condition: a read watch is armed read/write
# (the core filters writes out, see Arch.read_emulated).
_READ_TYPE = HW_BREAKPOINT_RW if platform.machine() == "x86_64" else HW_BREAKPOINT_R
_BP_TYPE = {
    Access.EXEC: HW_BREAKPOINT_X,
    Access.WRITE: HW_BREAKPOINT_W,
    Access.READ: _READ_TYPE,
    Access.READ_WRITE: HW_BREAKPOINT_RW,
}
#: perf wants exec breakpoints with bp_len == sizeof(long) on x86.
_EXEC_LEN = ctypes.sizeof(ctypes.c_long)


def bp_type_for(access: Access) -> int:
    return _BP_TYPE[access]


def _use_monotonic(attr: PerfEventAttr) -> None:
    attr.set_flag(Flag.USE_CLOCKID)
    attr.clockid = time.CLOCK_MONOTONIC
    attr.set_flag(Flag.SAMPLE_ID_ALL)


def dummy_attr(sample_type: int) -> PerfEventAttr:
    """A software dummy event (it counts nothing): a ring's owner, or a task tracker."""
    attr = PerfEventAttr()
    attr.type = PERF_TYPE_SOFTWARE
    attr.size = ctypes.sizeof(PerfEventAttr)
    attr.config = PERF_COUNT_SW_DUMMY
    attr.sample_type = sample_type
    _use_monotonic(attr)
    return attr


def sampling_breakpoint_attr(
    chunk: Chunk,
    sample_type: int,
    *,
    exclude_user: bool = False,
    exclude_kernel: bool = False,
    inherit: bool = False,
    remove_on_exec: bool = False,
    wakeup_events: int = 1,
) -> PerfEventAttr:
    """A disabled breakpoint sampling every hit, on the monotonic clock its ring shares."""
    length = _EXEC_LEN if chunk.access is Access.EXEC else chunk.length
    attr = breakpoint_attr(
        chunk.address,
        length,
        bp_type_for(chunk.access),
        sample_type=sample_type,
        sample_period=1,
        disabled=True,
        exclude_user=exclude_user,
        exclude_kernel=exclude_kernel,
        inherit=inherit,
        remove_on_exec=remove_on_exec,
        wakeup_events=wakeup_events,
    )
    _use_monotonic(attr)
    return attr


def event_id(fd: int) -> int:
    """The kernel's id of an event (what SAMPLE_IDENTIFIER reports)."""
    buf = array.array("Q", [0])
    fcntl.ioctl(fd, IOC_ID, buf, True)
    return int(buf[0])


def open_kernel_breakpoint(chunk: Chunk, cpu: int, sample_type: int) -> int:
    """A disabled sampling breakpoint on a kernel address, on one CPU (pid -1).

    Disabled so that a slot is enabled on every CPU only once it opened on all
    of them (all or nothing); raises OSError (ENOSPC: a slot is held elsewhere).
    """
    attr = sampling_breakpoint_attr(chunk, sample_type, exclude_user=True, wakeup_events=1)
    if sample_type & SAMPLE_CALLCHAIN:
        attr.set_flag(Flag.EXCLUDE_CALLCHAIN_USER)
    return perf_event_open(attr, -1, cpu)


class CpuRing:
    """The sample ring of one CPU, owned by a dummy event on that CPU."""

    def __init__(
        self, cpu: int, data_pages: int, sample_type: int, *, wakeup_bytes: int = 0
    ) -> None:
        """``wakeup_bytes``: wake readers once that many bytes wait (a watermark), instead
        of when an event's own ``wakeup_events`` says so."""
        attr = dummy_attr(sample_type)
        if wakeup_bytes:
            attr.set_flag(Flag.WATERMARK)
            attr.wakeup_events = wakeup_bytes  # wakeup_watermark shares this word
        self.cpu = cpu
        #: What every event writing here samples (they must agree).
        self.sample_type = sample_type
        self.fd = perf_event_open(attr, -1, cpu)
        try:
            self.ring: RingBuffer = map_ring(self.fd, data_pages)
        except BaseException:
            os.close(self.fd)
            raise

    def attach(self, event_fd: int) -> None:
        """Send ``event_fd``'s records into this ring (same CPU, same clock)."""
        fcntl.ioctl(event_fd, IOC_SET_OUTPUT, self.fd)

    def close(self) -> None:
        self.ring.close()
        os.close(self.fd)


def enable(fd: int) -> None:
    ioctl(fd, IOC_ENABLE)


def errno_text(exc: OSError) -> str:
    """``ENOSPC (No space left on device)`` style text for logs and refusals."""
    code = exc.errno or 0
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"
