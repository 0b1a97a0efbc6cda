"""The tracer thread's only blocking point: epoll on a SIGCHLD signalfd and a command eventfd.

Every ptrace stop and every traced thread's death sends SIGCHLD to the tracer's
process. With SIGCHLD blocked in every thread, the kernel keeps it pending and
the signalfd becomes readable; nothing polls on a timer. SIGCHLD is a classic
signal, so several stops between two reads leave one pending signal: the
signalfd's ``ssi_pid`` is only a hint of which tid to wait for first, and the
tracer then sweeps its other tids with ``waitpid(tid, WNOHANG|__WALL)`` (at
once or a little later: see tracer.py). Nothing tells how many signals were
merged into the one read, so that sweep cannot be skipped, only deferred.

The one exception to blocking: while traps come back to back, the tracer
(tracer.py) asks ``wait`` to spin a little before it sleeps (``_spin``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import time

from ptrace.ctypes_libc import LIBC_FILENAME

__all__ = ["Waiter", "block_sigchld", "private_fd_table", "threads_not_blocking_sigchld"]

_SFD_NONBLOCK = os.O_NONBLOCK
_SFD_CLOEXEC = os.O_CLOEXEC
#: struct signalfd_siginfo is 128 bytes: ssi_code at offset 8, ssi_pid 12, ssi_status 40.
_SSI_SIZE = 128
_SSI_CODE_OFFSET = 8
_SSI_PID_OFFSET = 12
_SSI_STATUS_OFFSET = 40
#: SIGCHLD's si_code for a ptrace-stop (its si_status is the stop signal, without event).
_CLD_TRAPPED = 4
_SIGTRAP = int(signal.SIGTRAP)
_SIGSET_BYTES = 128

_libc = ctypes.CDLL(LIBC_FILENAME, use_errno=True)
_libc.signalfd.restype = ctypes.c_int
_libc.signalfd.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
_libc.unshare.restype = ctypes.c_int
_libc.unshare.argtypes = (ctypes.c_int,)
_CLONE_FILES = 0x400
# Reading the (non-blocking) signalfd keeps the GIL, and takes no argtypes: see binding.py.
_read = ctypes.PyDLL(LIBC_FILENAME, use_errno=True)["read"]
_read.restype = ctypes.c_ssize_t
_monotonic_ns = time.monotonic_ns
_sched_yield = os.sched_yield


def block_sigchld() -> None:
    """Block SIGCHLD in the calling thread; threads it starts afterwards inherit the mask."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})


def private_fd_table(keep: set[int]) -> None:
    """Give the calling thread its own copy of the descriptor table (unshare CLONE_FILES).

    The tracer opens its perf events there (and keeps only ``keep`` and stdio of
    the copied descriptors). When the broker is killed, each thread
    exits on its own; with a shared table the events would live until the last thread
    is gone, while the tracer's exit has already detached the targets, and an
    untraced target that hits a live sigtrap event dies of SIGTRAP. With a private
    table the tracer's own exit closes the events (exit_files) before it detaches
    the targets (exit_notify).
    """
    if _libc.unshare(_CLONE_FILES) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_FILES): {os.strerror(err)}")
    # Our copies of everyone else's descriptors would keep their files open (a pipe's
    # reader would never see EOF, a closed socket would stay connected): close them.
    for name in os.listdir("/proc/thread-self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def threads_not_blocking_sigchld() -> list[int]:
    """Threads of this process that could take a SIGCHLD away from the signalfd."""
    bit = 1 << (signal.SIGCHLD - 1)
    missing: list[int] = []
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return missing
    for name in tids:
        try:
            with open(f"/proc/self/task/{name}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("SigBlk:"):
                        if not int(line.split()[1], 16) & bit:
                            missing.append(int(name))
                        break
        except OSError:
            continue
    return missing


def _signalfd_sigchld() -> int:
    mask = ctypes.create_string_buffer(_SIGSET_BYTES)
    bit = signal.SIGCHLD - 1
    mask[bit // 8] = bytes([1 << (bit % 8)])
    fd = _libc.signalfd(-1, ctypes.addressof(mask), _SFD_NONBLOCK | _SFD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"signalfd: {os.strerror(err)}")
    return int(fd)


class Waiter:
    """epoll on the SIGCHLD signalfd and a command eventfd."""

    def __init__(self) -> None:
        self.sigfd = _signalfd_sigchld()
        self.evfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep = select.epoll()
        self._ep.register(self.sigfd, select.EPOLLIN)
        self._ep.register(self.evfd, select.EPOLLIN)
        # SIGCHLD is the only signal in the mask and a classic one: at most one is pending.
        self._ssi = ctypes.create_string_buffer(_SSI_SIZE)
        self._ssi_addr = ctypes.c_void_p(ctypes.addressof(self._ssi))
        self._ssi_pid = ctypes.c_uint32.from_buffer(self._ssi, _SSI_PID_OFFSET)
        self._ssi_code = ctypes.c_int32.from_buffer(self._ssi, _SSI_CODE_OFFSET)
        self._ssi_status = ctypes.c_int32.from_buffer(self._ssi, _SSI_STATUS_OFFSET)
        #: The last SIGCHLD read said its sender entered a ptrace-stop with SIGTRAP (a
        #: trap, or a PTRACE_EVENT stop: PTRACE_GETSIGINFO tells which).
        self.sigtrap = False

    def wake(self) -> None:
        """Called from any thread: the tracer returns from ``wait`` soon."""
        os.eventfd_write(self.evfd, 1)

    def wait(self, timeout: float = -1, spin_ns: int = 0) -> tuple[int, bool]:
        """Block until a SIGCHLD or a wake-up, or ``timeout`` seconds (-1: no limit);
        with ``spin_ns``, poll without sleeping for up to that long first (``spin``).

        Returns the ``ssi_pid`` hint (-1 when no SIGCHLD came, 0 when it could not
        be read; ``sigtrap`` says more about it) and whether a command wake-up
        came. Both are drained before returning, so a SIGCHLD sent after this
        returns makes the next ``wait`` return at once.
        """
        hint = -1
        woken = False
        events = self._spin(spin_ns) if spin_ns > 0 else None
        if not events:
            events = self._ep.poll(timeout)
        for fd, _ in events:
            if fd == self.sigfd:
                if _read(fd, self._ssi_addr, _SSI_SIZE) > 0:
                    hint = self._ssi_pid.value
                    self.sigtrap = (
                        self._ssi_code.value == _CLD_TRAPPED and self._ssi_status.value == _SIGTRAP
                    )
                else:
                    hint = 0
                    self.sigtrap = False
            else:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(fd)
                woken = True
        return hint, woken

    def _spin(self, budget_ns: int) -> list[tuple[int, int]]:
        """Poll, yield the CPU, poll again... for up to ``budget_ns``: what became ready.

        The CPU never goes idle meanwhile, so a SIGCHLD that comes within the budget
        costs no wake-up of an idle CPU (the tracer's share of a trap's round trip on
        two CPUs: about a third). ``sched_yield`` lets whatever else is runnable on
        this CPU go first (the target itself, when both share it: spinning without
        yielding there halves the rate); both calls release the GIL.
        """
        poll = self._ep.poll
        deadline = _monotonic_ns() + budget_ns
        while True:
            events = poll(0)
            if events or _monotonic_ns() >= deadline:
                return events
            _sched_yield()

    def fds(self) -> tuple[int, int, int]:
        return (self._ep.fileno(), self.sigfd, self.evfd)

    def close(self) -> None:
        self._ep.close()
        os.close(self.sigfd)
        os.close(self.evfd)
