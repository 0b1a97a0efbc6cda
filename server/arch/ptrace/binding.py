"""The ptrace requests and siginfo fields python-ptrace lacks, on top of its binding layer.

python-ptrace (``ptrace.binding``) gives the classic requests, the register
structures and the option bits; it predates PTRACE_SEIZE, PTRACE_INTERRUPT,
PTRACE_LISTEN, group-stop events and the ``si_perf_*`` siginfo fields.

Its ``ptrace()`` goes through a ``CDLL`` function, which releases the GIL around
every call. The tracer thread makes several short, non-blocking calls per trap;
each release lets the event-loop thread take the GIL, and taking it back can
cost up to the interpreter's switch interval. The per-trap calls therefore go
through a ``PyDLL`` handle on the same C library, which keeps the GIL for the
microsecond a non-blocking syscall takes. Only the tracer's epoll wait blocks.

The trap path (tracer.py) calls ``raw_ptrace`` and ``raw_waitpid`` directly, with
the siginfo and the wait status landing in preallocated buffers read through
ctypes views (``SI_CODE``, ``SI_PERF_DATA``, ``STATUS``): measured here, each
wrapper layer, ``NamedTuple`` or ``struct`` decode costs a fair part of a
microsecond, and a trap takes about twenty of them in all.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import struct
from typing import NamedTuple

from ptrace.binding import func as _pt
from ptrace.binding.linux_struct import user_regs_struct
from ptrace.ctypes_libc import LIBC_FILENAME

__all__ = [
    "PTRACE_CONT",
    "PTRACE_DETACH",
    "PTRACE_EVENT_CLONE",
    "PTRACE_EVENT_EXEC",
    "PTRACE_EVENT_EXIT",
    "PTRACE_EVENT_FORK",
    "PTRACE_EVENT_STOP",
    "PTRACE_EVENT_VFORK",
    "PTRACE_EVENT_VFORK_DONE",
    "PTRACE_GETEVENTMSG",
    "PTRACE_GETSIGINFO",
    "PTRACE_INTERRUPT",
    "PTRACE_LISTEN",
    "PTRACE_O_EXITKILL",
    "PTRACE_O_TRACECLONE",
    "PTRACE_O_TRACEEXEC",
    "PTRACE_O_TRACEEXIT",
    "PTRACE_O_TRACEFORK",
    "PTRACE_O_TRACEVFORK",
    "PTRACE_PEEKDATA",
    "PTRACE_PEEKUSER",
    "PTRACE_POKEUSER",
    "PTRACE_SEIZE",
    "RIP_OFFSET",
    "SIGINFO_ADDR",
    "SI_ADDR",
    "SI_CODE",
    "SI_KERNEL",
    "SI_PERF_DATA",
    "STATUS",
    "STATUS_REF",
    "TRAP_BRKPT",
    "TRAP_HWBKPT",
    "TRAP_PERF",
    "TRAP_TRACE",
    "WALL",
    "WNOHANG_WALL",
    "SigInfo",
    "call",
    "cont",
    "detach",
    "geteventmsg",
    "getsiginfo",
    "interrupt",
    "listen",
    "peekdata",
    "peekuser",
    "pokeuser",
    "raw_ptrace",
    "raw_waitpid",
    "seize",
    "setoptions",
    "waitpid_nohang",
]

# Requests python-ptrace already names.
PTRACE_PEEKDATA: int = _pt.PTRACE_PEEKDATA
PTRACE_PEEKUSER: int = _pt.PTRACE_PEEKUSER
PTRACE_POKEUSER: int = _pt.PTRACE_POKEUSER
PTRACE_CONT: int = _pt.PTRACE_CONT
PTRACE_DETACH: int = _pt.PTRACE_DETACH
PTRACE_GETSIGINFO: int = _pt.PTRACE_GETSIGINFO
PTRACE_GETEVENTMSG: int = _pt.PTRACE_GETEVENTMSG
PTRACE_O_TRACEFORK: int = _pt.PTRACE_O_TRACEFORK
PTRACE_O_TRACEVFORK: int = _pt.PTRACE_O_TRACEVFORK
PTRACE_O_TRACECLONE: int = _pt.PTRACE_O_TRACECLONE
PTRACE_O_TRACEEXEC: int = _pt.PTRACE_O_TRACEEXEC
PTRACE_O_TRACEEXIT: int = _pt.PTRACE_O_TRACEEXIT
PTRACE_EVENT_FORK: int = _pt.PTRACE_EVENT_FORK
PTRACE_EVENT_VFORK: int = _pt.PTRACE_EVENT_VFORK
PTRACE_EVENT_CLONE: int = _pt.PTRACE_EVENT_CLONE
PTRACE_EVENT_EXEC: int = _pt.PTRACE_EVENT_EXEC
PTRACE_EVENT_VFORK_DONE: int = _pt.PTRACE_EVENT_VFORK_DONE
PTRACE_EVENT_EXIT: int = _pt.PTRACE_EVENT_EXIT
#: waitpid flag: wait for clone children (threads) too.
WALL: int = _pt.THREAD_TRACE_FLAGS

# What python-ptrace lacks (include/uapi/linux/ptrace.h, Linux 3.4+).
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_SETOPTIONS = 0x4200
#: The kernel kills the tracee when its tracer exits (Linux 3.8+).
PTRACE_O_EXITKILL = 1 << 20
#: The stop of PTRACE_INTERRUPT, of a new SEIZEd thread, and of a group-stop.
PTRACE_EVENT_STOP = 128

# si_code values of SIGTRAP (include/uapi/asm-generic/siginfo.h) and of kernel-sent signals.
TRAP_BRKPT = 1
TRAP_TRACE = 2
TRAP_HWBKPT = 4
TRAP_PERF = 6
SI_KERNEL = 0x80

#: offsetof(struct user, regs.rip): PTRACE_PEEKUSER of the instruction pointer, one syscall.
RIP_OFFSET: int = user_regs_struct.rip.offset

_fast = ctypes.PyDLL(LIBC_FILENAME, use_errno=True)
_ptrace = _fast.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_waitpid = _fast.waitpid
_waitpid.restype = ctypes.c_int
_waitpid.argtypes = (ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int)
# The trap path's handles: no argtypes (ctypes then passes small ints as C ints, which
# libffi sign-extends into the 64-bit argument registers, and c_void_p objects as
# pointers), which saves about 0.3 us a call over converting through argtypes.
#: ptrace(request, tid, addr, data) -> long, keeping the GIL; -1 and ctypes.get_errno() on
#: error. Pass addresses as prebuilt ``ctypes.c_void_p``, small numbers as ints.
raw_ptrace = _fast["ptrace"]
raw_ptrace.restype = ctypes.c_long
#: waitpid(tid, STATUS_REF, options) -> pid, 0 or -1, keeping the GIL (call it WNOHANG only).
raw_waitpid = _fast["waitpid"]
raw_waitpid.restype = ctypes.c_int
_get_errno = ctypes.get_errno
_set_errno = ctypes.set_errno

# si_signo, (si_errno), si_code, (pad), si_addr, si_perf_data, si_perf_type.
# The sigfault union is 8-aligned after si_addr, so si_perf_data sits at offset 24.
_SIGINFO = struct.Struct("<i4xi4xQQI")


class SigInfo(NamedTuple):
    signo: int
    code: int
    addr: int
    perf_data: int
    perf_type: int


def call(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
    """One ptrace request; raises OSError with the kernel's errno on failure."""
    result: int = _ptrace(request, tid, addr, data)
    if result == -1:
        err = _get_errno()
        if err:
            raise OSError(err, f"ptrace({request:#x}, {tid}): {os.strerror(err)}")
    return result


def seize(tid: int, options: int) -> None:
    call(PTRACE_SEIZE, tid, 0, options)


def setoptions(tid: int, options: int) -> None:
    """Replace the PTRACE_O_* options of a thread in a ptrace-stop."""
    call(PTRACE_SETOPTIONS, tid, 0, options)


def interrupt(tid: int) -> None:
    call(PTRACE_INTERRUPT, tid)


def listen(tid: int) -> None:
    call(PTRACE_LISTEN, tid)


def cont(tid: int, signal: int = 0) -> None:
    if _ptrace(PTRACE_CONT, tid, 0, signal) == -1:
        err = _get_errno()
        raise OSError(err, f"PTRACE_CONT {tid}: {os.strerror(err)}")


def detach(tid: int, signal: int = 0) -> None:
    call(PTRACE_DETACH, tid, 0, signal)


def peekuser(tid: int, offset: int) -> int:
    """A word of ``struct user`` (registers, debug registers); -1 is a valid value."""
    return _peek(PTRACE_PEEKUSER, tid, offset, f"PTRACE_PEEKUSER {tid}+{offset}")


def peekdata(tid: int, address: int) -> int:
    """The word at ``address`` in the thread's memory; -1 is a valid value."""
    return _peek(PTRACE_PEEKDATA, tid, address, f"PTRACE_PEEKDATA {tid} at {address:#x}")


def _peek(request: int, tid: int, addr: int, what: str) -> int:
    # A peek returns the word itself: only errno tells a failure from a word of -1.
    _set_errno(0)
    value: int = _ptrace(request, tid, addr, 0)
    if value == -1:
        err = _get_errno()
        if err:
            raise OSError(err, f"{what}: {os.strerror(err)}")
    return value & 0xFFFF_FFFF_FFFF_FFFF


def pokeuser(tid: int, offset: int, value: int) -> None:
    call(PTRACE_POKEUSER, tid, offset, value)


def geteventmsg(tid: int) -> int:
    msg = ctypes.c_ulong()
    call(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(msg))
    return msg.value


_tuple_new = tuple.__new__
_siginfo_buf = ctypes.create_string_buffer(128)
_siginfo_addr = ctypes.addressof(_siginfo_buf)
#: Where PTRACE_GETSIGINFO writes (one buffer: only the tracer thread uses it).
SIGINFO_ADDR = ctypes.c_void_p(_siginfo_addr)
#: Views on that buffer: si_code, si_addr and si_perf_data (offsets: see _SIGINFO).
SI_CODE = ctypes.c_int.from_buffer(_siginfo_buf, 8)
SI_ADDR = ctypes.c_uint64.from_buffer(_siginfo_buf, 16)
SI_PERF_DATA = ctypes.c_uint64.from_buffer(_siginfo_buf, 24)


def getsiginfo(tid: int) -> SigInfo:
    """PTRACE_GETSIGINFO, decoded (not thread-safe: only the tracer thread calls it)."""
    if _ptrace(PTRACE_GETSIGINFO, tid, 0, _siginfo_addr) == -1:
        err = _get_errno()
        raise OSError(err, f"PTRACE_GETSIGINFO {tid}: {os.strerror(err)}")
    return _tuple_new(SigInfo, _SIGINFO.unpack_from(_siginfo_buf))


_status = ctypes.c_int()
_status_ref = ctypes.byref(_status)
_WNOHANG_WALL = os.WNOHANG | WALL
#: Where ``raw_waitpid`` writes the status (the tracer thread's only), and its address.
STATUS = _status
STATUS_REF = ctypes.c_void_p(ctypes.addressof(_status))
WNOHANG_WALL = _WNOHANG_WALL


def waitpid_nohang(tid: int) -> int | None:
    """waitpid(tid, WNOHANG|__WALL): the status, None if nothing is pending.

    Raises ChildProcessError (ECHILD) when the tid is not (or no longer) ours to wait for.
    """
    got = _waitpid(tid, _status_ref, _WNOHANG_WALL)
    if got > 0:
        return _status.value
    if got == 0:
        return None
    err = _get_errno()
    if err == _errno.EINTR:
        return waitpid_nohang(tid)
    if err == _errno.ECHILD:
        raise ChildProcessError(err, f"waitpid {tid}: {os.strerror(err)}")
    raise OSError(err, f"waitpid {tid}: {os.strerror(err)}")
