"""The tracer's bookkeeping: traced threads, processes, armed slots, the arming protocol.

Only the tracer thread touches these objects.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from hwbkptd.arch.ptrace.memory import RegionReader
from hwbkptd.core.mechanism import Refusal, SlotEntry, SlotWrite
from hwbkptd.core.model import Access

__all__ = [
    "HOLD_HALT",
    "HOLD_LAUNCH",
    "HOLD_NEW",
    "ApplyBarrier",
    "ArmedSlot",
    "Arming",
    "Proc",
    "Tracee",
]

# Reasons to keep a thread stopped; it runs again when none is left.
#: A new thread waits for its first slot table (it runs no instruction unarmed).
HOLD_NEW = 1
#: A HALT slot trapped; ``resume`` lifts it.
HOLD_HALT = 2
#: A launched program waits at its first instruction for ``release``.
HOLD_LAUNCH = 4


class ArmedSlot:
    """One occupied slot as armed in one thread: what a trap on it is attributed to."""

    __slots__ = (
        "access",
        "address",
        "cookie",
        "entry",
        "fd",
        "generation",
        "halt",
        "index",
        "pool",
        "reader",
    )

    def __init__(
        self,
        pool: str,
        index: int,
        generation: int,
        entry: SlotEntry,
        cookie: int = 0,
        fd: int = -1,
    ) -> None:
        self.pool = pool
        self.index = index
        self.generation = generation
        self.entry = entry
        self.cookie = cookie
        self.fd = fd
        self.reader = RegionReader(entry.regions) if entry.regions else None
        access = entry.chunk.access
        # x86 does not say whether a read/write watch was read or written.
        self.access: Access | None = None if access is Access.READ_WRITE else access
        # Copied out of the entry for the trap path.
        self.address = entry.chunk.address
        self.halt = entry.halt


class ApplyBarrier:
    """Completes an ``apply`` future once every thread of it has its table."""

    __slots__ = ("finish", "future", "refusals", "waiting")

    def __init__(
        self,
        future: concurrent.futures.Future[Any],
        finish: Callable[[concurrent.futures.Future[Any], Any], None],
    ) -> None:
        self.future = future
        #: How the tracer completes a future (never directly: see tracer.py).
        self.finish = finish
        self.refusals: list[Refusal] = []
        self.waiting = 0

    def done_one(self, refusals: Sequence[Refusal] = ()) -> None:
        self.refusals.extend(refusals)
        self.waiting -= 1
        self.maybe_finish()

    def maybe_finish(self) -> None:
        if self.waiting == 0:
            self.waiting = -1
            self.finish(self.future, self.refusals)


class Tracee:
    """One traced thread."""

    __slots__ = (
        "cookies",
        "detaching",
        "dr7",
        "expect_stop",
        "generation",
        "hold_reasons",
        "interrupted",
        "listen",
        "pending",
        "pid",
        "resume_sig",
        "slots",
        "stopped",
        "tid",
        "waiters",
    )

    def __init__(self, pid: int, tid: int) -> None:
        self.pid = pid
        self.tid = tid
        #: In a ptrace-stop we have collected and not yet ended.
        self.stopped = False
        #: A stop is on its way (a new thread's first stop, or after PTRACE_INTERRUPT).
        self.expect_stop = False
        self.interrupted = False
        #: Resume with PTRACE_LISTEN: the stop is a group-stop (job control).
        self.listen = False
        #: The signal to deliver when the thread resumes (0: none).
        self.resume_sig = 0
        self.hold_reasons = 0
        self.detaching = False
        self.generation = 0
        #: A table that needs the thread stopped (debug register arming), and who waits for it.
        self.pending: SlotWrite | None = None
        self.waiters: list[ApplyBarrier] = []
        #: (pool, index) -> the slot armed there now.
        self.slots: dict[tuple[str, int], ArmedSlot] = {}
        #: cookie -> slot, for the current slots and recently replaced ones (traps in flight).
        self.cookies: dict[int, ArmedSlot] = {}
        self.dr7 = 0


class Proc:
    """One traced process."""

    __slots__ = (
        "detach_futures",
        "errpipe",
        "follow_fork",
        "launch_future",
        "launched",
        "pid",
        "tids",
        "unannounced",
    )

    def __init__(self, pid: int, follow_fork: bool) -> None:
        self.pid = pid
        self.follow_fork = follow_fork
        self.tids: set[int] = set()
        #: Not (yet) known to the sink: no events are sent for it (a launch before its
        #: exec, a forked child we only hold to let go of).
        self.unannounced = False
        #: Started by ``launch``: our child, held at its first exec until ``release``.
        self.launched = False
        self.launch_future: concurrent.futures.Future[Any] | None = None
        #: Read end of the launched child's exec-error pipe (-1: none).
        self.errpipe = -1
        #: Answered once it is let go of or has ended (detach, kill_launched).
        self.detach_futures: list[concurrent.futures.Future[Any]] = []


class Arming(Protocol):
    """How slots become real in one thread: perf events or debug registers."""

    name: str
    #: True when rewriting a thread's slots needs the thread in a ptrace-stop.
    needs_stop: bool
    #: True when a trap's si_addr is the instruction pointer (no PTRACE_PEEKUSER of it).
    ip_in_siginfo: bool

    def write(self, t: Tracee, w: SlotWrite) -> list[Refusal]:
        """Make ``w`` the thread's table; return the slots the kernel refused."""

    def clear(self, t: Tracee) -> None:
        """Disarm every slot of a live thread (stopped, if ``needs_stop``)."""

    def drop(self, t: Tracee) -> None:
        """The thread is gone or exec'd: release what we hold without touching it."""

    def attribute(self, t: Tracee, code: int, perf_data: int) -> list[ArmedSlot] | None:
        """The slots a SIGTRAP (si_code, si_perf_data) came from; None when the trap is
        not ours (deliver it). Called with the thread in the trap's signal-delivery-stop,
        possibly twice for one trap (stops.py): it must not change what it reads."""
