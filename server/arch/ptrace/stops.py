"""Collecting and answering the traced threads' stops: the tracer's hot path.

``StopHandler`` is the part of the tracer thread (tracer.py) that runs after a
SIGCHLD was read; the table of tracees (table.py) it is built on resumes the
threads it cannot answer itself and records births, execs and deaths. Per
hit it makes the fewest system calls that report one, through libc directly
(binding.raw_ptrace, buffers preallocated): PTRACE_GETSIGINFO,
PTRACE_PEEKUSER of the instruction pointer (perf arming; a debug-register
trap has it in si_addr) or of DR6 (debugreg arming: which slot fired), the
values through the slot's ``RegionReader`` (PTRACE_PEEKDATA for one word),
and PTRACE_CONT; the ``HitReport`` is built after the thread runs again, and
consecutive hits join one ``Hits`` message that the event loop hands to the
sink as is.

No waitpid for a trap the SIGCHLD announced. When the signalfd says the
sender is a thread of ours in a SIGTRAP ptrace-stop (CLD_TRAPPED) that we have
not collected yet, PTRACE_GETSIGINFO both proves the thread is in a
ptrace-stop (ptrace refuses otherwise) and tells which stop (a perf trap's
si_code is TRAP_PERF, a debug-register trap's TRAP_HWBKPT; a PTRACE_EVENT
stop's is SIGTRAP | event << 8). Such a trap is answered with PTRACE_CONT,
which clears the stop's wait status: no later waitpid reports it. Anything
else (not ours, a HALT slot, a thread held, detaching or waiting for a table,
a failed request) takes the waitpid path (``reap``), which sees that stop
again and handles it in full.

A SIGCHLD read may stand for several stops (waiter.py), so the other tids are
swept too: at once while they are few (``SWEEP_NOW``), otherwise by the
``SWEEP_EVERY``-th wake-up or after ``SWEEP_DELAY`` of quiet, whichever comes
first, so one busy thread among many idle ones does not pay their waitpid at
every trap.

A #DB that DR6 gives no cause for (x86). The kernel sends such a trap to the
thread as an ``icebp`` (SIGTRAP, si_code TRAP_BRKPT), and with the default
action the process dies. On this project's VM it happens without any icebp, to
between one in 12,000 and one in 200 watched processes as the host goes, with or
without ptrace: DR6 is lost between the trap and the guest kernel's read of it
(docs/decisions.md, "A watched target killed by SIGTRAP"). So a TRAP_BRKPT whose
instruction pointer does not follow an icebp byte (0xF1) is not delivered: it is
a trap of a breakpoint, ours or the target's own debug registers' (only a tracer
sets them), not the program's doing. On x86 int3 is SI_KERNEL and a single step
TRAP_TRACE, so nothing else is taken. The hit it stood for is lost; a warning
says so.

Measured, and left out: retrying waitpid on the same tid right after
PTRACE_CONT (the target runs on the tracer's CPU, so it has not trapped again
yet: 1 % of the retries found a stop, and the rate went down); reading the
instruction pointer from a perf sample ring (PERF_SAMPLE_IP, mmap'd) instead of
PTRACE_PEEKUSER (in C, writing the sample costs the target 0.75 us a trap, the
PEEKUSER 0.85 us: nothing to gain for the memory and the code).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import signal
import time

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace.messages import Hits
from hwbkptd.arch.ptrace.state import HOLD_HALT, ArmedSlot, Tracee
from hwbkptd.arch.ptrace.table import TraceeTable
from hwbkptd.arch.ptrace.waiter import Waiter
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access

__all__ = ["SWEEP_DELAY", "SWEEP_EVERY", "SWEEP_NOW", "StopHandler"]

#: Sweeps of fewer than this many other tids (and orphans) are not deferred.
SWEEP_NOW = 4
#: A deferred sweep runs by the SWEEP_EVERY-th wake-up after it became owed...
SWEEP_EVERY = 16
#: ... or when nothing happened for this long (seconds), whichever comes first.
SWEEP_DELAY = 0.0005

_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_SIGTRAP = int(signal.SIGTRAP)
#: The wait status of a SIGTRAP signal-delivery-stop (no PTRACE_EVENT): a trap.
_TRAP_STOP = (_SIGTRAP << 8) | 0x7F
_ptrace = pt.raw_ptrace
_waitpid = pt.raw_waitpid
_get_errno = ctypes.get_errno
_STATUS = pt.STATUS
_STATUS_REF = pt.STATUS_REF
_WNOHANG_WALL = pt.WNOHANG_WALL
_GETSIGINFO = pt.PTRACE_GETSIGINFO
_SIGINFO_ADDR = pt.SIGINFO_ADDR
_SI_CODE = pt.SI_CODE
_SI_PERF_DATA = pt.SI_PERF_DATA
_SI_ADDR = pt.SI_ADDR
_PEEKUSER = pt.PTRACE_PEEKUSER
_RIP = pt.RIP_OFFSET
_CONT = pt.PTRACE_CONT
_time_ns = time.time_ns
_EV_STOP = pt.PTRACE_EVENT_STOP
_EV_EXEC = pt.PTRACE_EVENT_EXEC
_EV_NEW = frozenset({pt.PTRACE_EVENT_CLONE, pt.PTRACE_EVENT_FORK, pt.PTRACE_EVENT_VFORK})
_EXEC = Access.EXEC
_TRAP_BRKPT = pt.TRAP_BRKPT
#: The one-byte icebp (int1) instruction: a TRAP_BRKPT after it is the program's own.
ICEBP = 0xF1
_X86 = platform.machine() in ("x86_64", "i686")

Found = list[tuple[ArmedSlot, int, tuple[bytes, ...]]]


class StopHandler:
    """Stops in, answers and hits out."""

    def __init__(self, table: TraceeTable, waiter: Waiter) -> None:
        self.table = table
        self.arming = table.arming
        self.waiter = waiter
        self.outbox = table.outbox
        # The table's own dict and set (it never replaces them), for the hot path.
        self.threads = table.threads
        self.orphans = table.orphans
        #: The Hits message that new hits join while it is the last one in the outbox.
        self._hits: Hits | None = None
        #: Wake-ups since a deferred sweep became due; -1: none is due.
        self.wakeups_since_sweep_due = -1

    # --- which threads to look at ----------------------------------------------------
    def collect(self, hint: int) -> None:
        """A SIGCHLD was read: answer its sender, and owe (or run) a sweep of the others."""
        threads = self.threads
        # Counted before the reap, which may forget threads (an exit ends its process).
        others = len(threads) + len(self.orphans)
        t = threads.get(hint)
        if t is not None:
            others -= 1
            if not (self.waiter.sigtrap and not t.stopped and self._unwaited_trap(t)):
                self.reap(hint)
        # else: not a thread of ours (an orphan, the broker's own child, or unknown).
        if others <= 0:
            return
        if others < SWEEP_NOW:
            self.sweep(hint)
        elif self.wakeups_since_sweep_due < 0:
            self.wakeups_since_sweep_due = 0

    def sweep_timeout(self) -> float:
        """How long the tracer may sleep (seconds, -1: until woken) before a due sweep."""
        return SWEEP_DELAY if self.wakeups_since_sweep_due >= 0 else -1

    def after_wakeup(self, hint: int, woken: bool) -> None:
        """Run a deferred sweep by its ``SWEEP_EVERY``-th wake-up or after a quiet wait."""
        if self.wakeups_since_sweep_due >= 0:
            self.wakeups_since_sweep_due += 1
            if self.wakeups_since_sweep_due > SWEEP_EVERY or (hint < 0 and not woken):
                self.sweep()

    def sweep(self, skip: int = 0) -> None:
        """Reap every tid (but ``skip``, answered just now) and every orphan."""
        self.wakeups_since_sweep_due = -1
        for tid in list(self.threads):
            if tid != skip:
                self.reap(tid)
        for pid in list(self.orphans):
            self.table.reap_orphan(pid)

    def reap(self, tid: int) -> None:
        """Collect and handle what one traced thread has to report, if anything."""
        t = self.threads.get(tid)
        if t is None:
            return
        got = _waitpid(tid, _STATUS_REF, _WNOHANG_WALL)
        if got == 0:
            return
        if got < 0:
            err = _get_errno()
            if err == errno.EINTR:
                self.reap(tid)
            elif err == errno.ECHILD:
                self._gone(t, None)
            else:
                raise OSError(err, f"waitpid {tid}: {os.strerror(err)}")
            return
        status = _STATUS.value
        if status == _TRAP_STOP:
            self._on_trap(t)
        elif status & 0xFF == 0x7F:
            self._on_stop(t, status)
        else:
            self._gone(t, status)

    def _gone(self, t: Tracee, status: int | None) -> None:
        then = self.table.gone(t, status)
        if then:
            self.reap(then)

    # --- traps -------------------------------------------------------------------------
    def _unwaited_trap(self, t: Tracee) -> bool:
        """The SIGTRAP stop the SIGCHLD announced, answered without waitpid if it is a hit
        that resumes at once (see the module's docstring); False: not handled, reap it."""
        if t.hold_reasons or t.detaching or t.pending is not None:
            return False
        tid = t.tid
        if _ptrace(_GETSIGINFO, tid, None, _SIGINFO_ADDR) == -1:
            return False  # not in a ptrace-stop (any more): waitpid says what happened
        slots = self.arming.attribute(t, _SI_CODE.value, _SI_PERF_DATA.value)
        if not slots:
            return False  # not ours, or a replaced slot's
        for slot in slots:
            if slot.halt:
                return False
        t.stopped = True
        t.expect_stop = False
        t.listen = False
        t.resume_sig = 0
        found = self._read(t, slots)
        t.stopped = False
        if _ptrace(_CONT, tid, None, 0) == -1:
            self.outbox.note(f"resuming {tid} failed: {os.strerror(_get_errno())}")
        if found:
            self._emit_hits(t, found)
        return True

    def _on_trap(self, t: Tracee) -> None:
        """A SIGTRAP signal-delivery-stop, collected: a hit of ours, or the target's own."""
        t.stopped = True
        t.expect_stop = False
        t.listen = False
        t.resume_sig = 0
        tid = t.tid
        found: Found | None = None
        if _ptrace(_GETSIGINFO, tid, None, _SIGINFO_ADDR) == -1:
            # ESRCH: killed while stopped (SIGKILL); its death is reported next.
            self.outbox.note(f"PTRACE_GETSIGINFO {tid} failed: {os.strerror(_get_errno())}")
        else:
            try:
                slots = self.arming.attribute(t, _SI_CODE.value, _SI_PERF_DATA.value)
            except OSError as err:
                self.outbox.note(f"ptrace request on {tid} failed: {err}")
                slots = []
            if slots is None:
                if not self._lost_dr6(t):
                    t.resume_sig = _SIGTRAP  # the target's own (int3, its own perf events...)
            elif slots:
                for slot in slots:
                    if slot.halt:
                        t.hold_reasons |= HOLD_HALT
                found = self._read(t, slots)
        if t.hold_reasons or t.detaching or t.pending is not None:
            self.table.resume_unless_held(t)
        else:
            t.stopped = False
            if _ptrace(_CONT, tid, None, t.resume_sig) == -1:
                self.outbox.note(f"resuming {tid} failed: {os.strerror(_get_errno())}")
        if found:
            self._emit_hits(t, found)

    def _lost_dr6(self, t: Tracee) -> bool:
        """A #DB with no cause in DR6 (see the module's docstring): swallowed, and said."""
        if not _X86 or _SI_CODE.value != _TRAP_BRKPT:
            return False
        ip = _SI_ADDR.value
        try:
            if ip > 0 and pt.peekdata(t.tid, ip - 1) & 0xFF == ICEBP:
                return False
        except OSError:
            pass  # nothing mapped before ip: no icebp ran there
        self.outbox.note(
            f"thread {t.tid}: a debug trap at {ip:#x} with no cause in DR6 (lost?) was not "
            "delivered to the target, which it would have killed; a hit may be missing",
            logging.WARNING,
        )
        return True

    def _read(self, t: Tracee, slots: list[ArmedSlot]) -> Found | None:
        """(slot, address, values) of each slot, read while the thread is stopped."""
        tid = t.tid
        pid = t.pid
        found: Found = []
        # The siginfo of this very stop is still in its buffer (attribute reads no other).
        ip = _SI_ADDR.value if self.arming.ip_in_siginfo else -1
        for slot in slots:
            if slot.access is _EXEC:
                at = slot.address
            else:
                if ip < 0:
                    ip = _ptrace(_PEEKUSER, tid, _RIP, None)
                    if ip == -1:  # no user-space address: the error value only
                        # ESRCH: killed while stopped (SIGKILL); its death is reported next.
                        err = os.strerror(_get_errno())
                        self.outbox.note(f"PTRACE_PEEKUSER {tid} failed: {err}")
                        return None
                at = ip
            reader = slot.reader
            found.append((slot, at, reader.read_stopped(pid, tid) if reader is not None else ()))
        return found

    def _emit_hits(self, t: Tracee, found: Found) -> None:
        now = _time_ns()
        items = self.outbox.items
        entry = self._hits
        if items and items[-1] is entry and entry is not None:
            hits = entry.reports
        else:
            hits = []
            self._hits = Hits(hits)
            items.append(self._hits)
        pid = t.pid
        tid = t.tid
        for slot, at, values in found:
            hits.append(
                HitReport(
                    pid,
                    tid,
                    slot.pool,
                    slot.index,
                    slot.generation,
                    at,
                    slot.address,
                    now,
                    access=slot.access,
                    values=values,
                    halted=slot.halt,
                )
            )

    # --- other stops -------------------------------------------------------------------
    def _on_stop(self, t: Tracee, status: int) -> None:
        """Any other stop: a signal to deliver, a group-stop, an event (clone, exec...)."""
        t.stopped = True
        t.expect_stop = False
        sig = (status >> 8) & 0xFF
        event = status >> 16
        t.listen = False
        t.resume_sig = 0
        try:
            if event == 0:
                t.resume_sig = sig
            elif event == _EV_STOP:
                t.interrupted = False
                t.listen = sig in _STOP_SIGNALS
            elif event in _EV_NEW:
                new = self.table.on_new_task(t, event, pt.geteventmsg(t.tid))
                if new:
                    self.reap(new)
            elif event == _EV_EXEC:
                self.table.on_exec(t, pt.geteventmsg(t.tid))
        except OSError as err:
            # ESRCH: killed while stopped (SIGKILL); its death is reported next.
            self.outbox.note(f"ptrace request on {t.tid} failed: {err}")
        self.table.resume_unless_held(t)
