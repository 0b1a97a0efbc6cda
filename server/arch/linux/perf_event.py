"""perf_event_open(2) for breakpoint events: the attr struct, the syscall, the ioctls.

Shared by the ptrace mechanism (one ``sigtrap`` event per slot and thread) and
the perf helper (sampling events per CPU or per thread). Layout follows
``include/uapi/linux/perf_event.h`` (PERF_ATTR_SIZE_VER8, 136 bytes).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform

__all__ = [
    "HW_BREAKPOINT_R",
    "HW_BREAKPOINT_RW",
    "HW_BREAKPOINT_W",
    "HW_BREAKPOINT_X",
    "IOC_DISABLE",
    "IOC_ENABLE",
    "IOC_MODIFY_ATTRIBUTES",
    "IOC_REFRESH",
    "IOC_RESET",
    "PERF_FLAG_FD_CLOEXEC",
    "PERF_TYPE_BREAKPOINT",
    "SAMPLE_ADDR",
    "SAMPLE_CALLCHAIN",
    "SAMPLE_CPU",
    "SAMPLE_ID",
    "SAMPLE_IP",
    "SAMPLE_PERIOD",
    "SAMPLE_TID",
    "SAMPLE_TIME",
    "Flag",
    "PerfEventAttr",
    "breakpoint_attr",
    "ioctl",
    "perf_event_open",
]

PERF_TYPE_BREAKPOINT = 5

HW_BREAKPOINT_R = 1
HW_BREAKPOINT_W = 2
HW_BREAKPOINT_RW = 3
HW_BREAKPOINT_X = 4

SAMPLE_IP = 1 << 0
SAMPLE_TID = 1 << 1
SAMPLE_TIME = 1 << 2
SAMPLE_ADDR = 1 << 3
SAMPLE_CALLCHAIN = 1 << 5
SAMPLE_ID = 1 << 6
SAMPLE_CPU = 1 << 7
SAMPLE_PERIOD = 1 << 8

PERF_FLAG_FD_CLOEXEC = 1 << 3

IOC_ENABLE = 0x2400
IOC_DISABLE = 0x2401
IOC_REFRESH = 0x2402
IOC_RESET = 0x2403
IOC_MODIFY_ATTRIBUTES = 0x4008240B

_SYSCALL_NR = {"x86_64": 298, "aarch64": 241}


class Flag:
    """Bit numbers in perf_event_attr's flags word."""

    DISABLED = 0
    INHERIT = 1
    PINNED = 2
    EXCLUDE_USER = 4
    EXCLUDE_KERNEL = 5
    EXCLUDE_HV = 6
    WATERMARK = 14
    PRECISE_IP = 15
    SAMPLE_ID_ALL = 18
    EXCLUDE_CALLCHAIN_USER = 22
    USE_CLOCKID = 25
    INHERIT_THREAD = 35
    REMOVE_ON_EXEC = 36
    SIGTRAP = 37


class PerfEventAttr(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("bp_addr", ctypes.c_uint64),
        ("bp_len", ctypes.c_uint64),
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("reserved_2", ctypes.c_uint16),
        ("aux_sample_size", ctypes.c_uint32),
        ("aux_action", ctypes.c_uint32),
        ("sig_data", ctypes.c_uint64),
        ("config3", ctypes.c_uint64),
    ]

    def set_flag(self, bit: int, on: bool = True) -> None:
        if on:
            self.flags |= 1 << bit
        else:
            self.flags &= ~(1 << bit)


assert ctypes.sizeof(PerfEventAttr) == 136


def breakpoint_attr(
    address: int,
    length: int,
    bp_type: int,
    *,
    sample_type: int = 0,
    sample_period: int = 1,
    disabled: bool = False,
    exclude_kernel: bool = False,
    exclude_user: bool = False,
    sigtrap: bool = False,
    sig_data: int = 0,
    inherit: bool = False,
    remove_on_exec: bool = False,
    wakeup_events: int = 1,
) -> PerfEventAttr:
    """A breakpoint event attr; ``sigtrap`` needs ``remove_on_exec`` per the kernel's rules."""
    attr = PerfEventAttr()
    attr.type = PERF_TYPE_BREAKPOINT
    attr.size = ctypes.sizeof(PerfEventAttr)
    attr.bp_addr = address
    attr.bp_len = length
    attr.bp_type = bp_type
    attr.sample_period = sample_period
    attr.sample_type = sample_type
    attr.wakeup_events = wakeup_events
    attr.set_flag(Flag.DISABLED, disabled)
    attr.set_flag(Flag.EXCLUDE_KERNEL, exclude_kernel)
    attr.set_flag(Flag.EXCLUDE_USER, exclude_user)
    attr.set_flag(Flag.EXCLUDE_HV, True)
    attr.set_flag(Flag.SIGTRAP, sigtrap)
    attr.set_flag(Flag.INHERIT, inherit)
    attr.set_flag(Flag.REMOVE_ON_EXEC, remove_on_exec)
    attr.sig_data = sig_data
    return attr


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def perf_event_open(
    attr: PerfEventAttr, pid: int, cpu: int, group_fd: int = -1, flags: int = PERF_FLAG_FD_CLOEXEC
) -> int:
    """Open an event; raises OSError with the kernel's errno (ENOSPC: no slot left)."""
    nr = _SYSCALL_NR.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"perf_event_open: unknown machine {platform.machine()}")
    fd = _libc.syscall(
        ctypes.c_long(nr),
        ctypes.byref(attr),
        ctypes.c_int(pid),
        ctypes.c_int(cpu),
        ctypes.c_int(group_fd),
        ctypes.c_ulong(flags),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


def ioctl(fd: int, request: int, arg: int = 0) -> None:
    fcntl.ioctl(fd, request, arg)
