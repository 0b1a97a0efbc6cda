"""The tracer thread: the one OS thread that makes every ptrace call (DESIGN section 5).

It blocks in epoll on a SIGCHLD signalfd and a command eventfd (waiter.py),
never sleeps on a timer and never waits for anything but its own tids. Each
wake-up runs the queued commands, collects the stops of the traced threads,
answers them (a trap of ours: read the values, resume at once unless HALT;
anything else: deliver the signal unchanged, or PTRACE_LISTEN in a
group-stop) and hands everything it gathered to ``emit`` in one batch.
Commands come in with a ``concurrent.futures.Future``; their completions travel
in the same batch, after the events they follow, so the event loop sees the
events (threads started, ...) before the answer.

The thread works on a private copy of the descriptor table (see
``waiter.private_fd_table``) and closes every copied descriptor but its own:
it must therefore never touch a descriptor of the rest of the broker. It does
not log, and it does not complete futures itself (a completion callback would
write to the event loop's wake-up socket): both go through ``emit``, whose
only wake-up is the ``relay`` eventfd, created before the copy and kept.

The command implementations (attach, apply, detach, launch, ...) are in
``commands.py``; this module handles stops.

The trap path (``reap`` -> ``_on_trap``) is the broker's hot loop: per hit it
makes the fewest system calls that report one (waitpid on the hinted tid,
PTRACE_GETSIGINFO into a preallocated buffer, PTRACE_PEEKUSER of the
instruction pointer, the values through the slot's ``RegionReader``,
PTRACE_CONT) with libc called directly, and it resumes the thread before it
builds the ``HitReport``. Consecutive hits are gathered in one list that the
event loop hands to the sink as is. A SIGCHLD read may stand for several
stops (see waiter.py), so the other tids are swept too: at once while they are
few, otherwise after ``SWEEP_EVERY`` wake-ups or ``SWEEP_DELAY`` of quiet,
whichever comes first, so one busy thread among many does not pay for the
others' waitpid at every trap.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import errno
import logging
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace import procfs
from hwbkptd.arch.ptrace.hits import make_hit
from hwbkptd.arch.ptrace.state import HOLD_HALT, HOLD_NEW, ArmedSlot, Arming, Proc, Tracee
from hwbkptd.arch.ptrace.waiter import Waiter, block_sigchld, private_fd_table
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access

__all__ = ["SWEEP_DELAY", "SWEEP_EVERY", "SWEEP_NOW", "Out", "TracerCore"]

#: One event for the sink: (callback name, arguments).
Out = tuple[str, tuple[Any, ...]]
Command = Callable[[concurrent.futures.Future[Any]], None]

#: Sweeps of at most this many tids (and orphans) are not deferred.
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
_PEEKUSER = pt.PTRACE_PEEKUSER
_RIP = pt.RIP_OFFSET
_CONT = pt.PTRACE_CONT
_time_ns = time.time_ns
_EV_STOP = pt.PTRACE_EVENT_STOP
_EV_EXEC = pt.PTRACE_EVENT_EXEC
_EV_NEW = frozenset({pt.PTRACE_EVENT_CLONE, pt.PTRACE_EVENT_FORK, pt.PTRACE_EVENT_VFORK})
_EXEC = Access.EXEC


class TracerCore:
    """Threads, stops and the loop; commands.py adds the operations."""

    def __init__(self, arming: Arming, emit: Callable[[list[Out]], None]) -> None:
        self.arming = arming
        self._emit = emit
        self.waiter = Waiter()
        #: Written by ``emit``'s caller to wake the event loop (exists in both tables).
        self.relay = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        #: Descriptors in the shared table (the thread works on private copies).
        self.shared_fds = (*self.waiter.fds(), self.relay)
        self._commands: queue.SimpleQueue[tuple[Command, concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self.threads: dict[int, Tracee] = {}
        self.procs: dict[int, Proc] = {}
        #: Launched children we let go of: still ours to reap.
        self.orphans: set[int] = set()
        self.out: list[Out] = []
        #: The ("hits", (list,)) entry that new hits join while it is the last of ``out``.
        self._hits_entry: Out | None = None
        self._hits: list[HitReport] = []
        #: Wake-ups since a deferred sweep became owed; -1: none is owed.
        self._owed = -1
        self.stopping = False
        #: close() callers, answered once every process is let go of.
        self.close_futures: list[concurrent.futures.Future[Any]] = []
        self.native_id = 0
        self._thread = threading.Thread(target=self._run, name="hwbkpt-tracer", daemon=True)

    # --- the loop ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, command: Command) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._commands.put((command, future))
        self.waiter.wake()
        return future

    def _run(self) -> None:
        block_sigchld()
        self.native_id = threading.get_native_id()
        try:
            private_fd_table(keep=set(self.shared_fds))
            wait = self.waiter.wait
            while not self.stopping:
                hint, woken = wait(SWEEP_DELAY if self._owed >= 0 else -1)
                if woken:
                    self._run_commands()
                if hint >= 0:
                    self._collect(hint)
                if self._owed >= 0:
                    self._owed += 1
                    if self._owed > SWEEP_EVERY or (hint < 0 and not woken):
                        self._sweep()
                if self.out:
                    self._flush()
        except BaseException:
            # Not through logging here: a handler's descriptor may not be in our table.
            self.note("ptrace tracer thread failed:\n" + traceback.format_exc(), logging.ERROR)
            raise
        finally:
            self._abandon()
            self._flush()
            os.close(self.relay)

    def _flush(self) -> None:
        if self.out:
            out, self.out = self.out, []
            self._emit(out)

    def _run_commands(self) -> None:
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                command(future)
            except Exception as err:
                self.fail(future, err)

    def _abandon(self) -> None:
        """The thread is ending: disarm what is left so nothing traps an untraced thread."""
        for t in self.threads.values():
            with contextlib.suppress(OSError):
                self.arming.drop(t)
        self.threads.clear()
        err = RuntimeError("the ptrace tracer thread has stopped")
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                break
            self.fail(future, err)
        self.waiter.close()

    def note(self, message: str, level: int = logging.DEBUG) -> None:
        """A log line, written by the event loop (never log from this thread: see _run)."""
        self.out.append(("log", (level, message)))

    def resolve(self, future: concurrent.futures.Future[Any], value: Any) -> None:
        """Complete a command's future (on the event loop, after the events before it)."""
        self.out.append(("resolve", (future, value)))

    def fail(self, future: concurrent.futures.Future[Any], err: BaseException) -> None:
        self.out.append(("fail", (future, err)))

    # --- collecting stops ------------------------------------------------------------
    def _collect(self, hint: int) -> None:
        """A SIGCHLD was read: reap its sender, and owe (or run) a sweep of the others."""
        threads = self.threads
        if hint in threads:
            self.reap(hint)
            others = len(threads) - 1 + len(self.orphans)
        else:
            # Not a thread of ours (an orphan, the broker's own child, or unknown).
            others = len(threads) + len(self.orphans)
        if others <= 0:
            return
        if others < SWEEP_NOW:
            self._sweep(hint)
        elif self._owed < 0:
            self._owed = 0

    def _sweep(self, skip: int = 0) -> None:
        """Reap every tid (but ``skip``, reaped just now) and every orphan."""
        self._owed = -1
        for tid in list(self.threads):
            if tid != skip:
                self.reap(tid)
        for pid in list(self.orphans):
            try:
                if pt.waitpid_nohang(pid) is not None:
                    self.orphans.discard(pid)
            except ChildProcessError:
                self.orphans.discard(pid)

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

    def _on_trap(self, t: Tracee) -> None:
        """A SIGTRAP signal-delivery-stop: a hit of ours, or the target's own trap."""
        t.stopped = True
        t.expect_stop = False
        t.listen = False
        t.resume_sig = 0
        tid = t.tid
        found: list[tuple[ArmedSlot, int, tuple[bytes, ...]]] | None = None
        try:
            if _ptrace(_GETSIGINFO, tid, None, _SIGINFO_ADDR) == -1:
                err = _get_errno()
                raise OSError(err, f"PTRACE_GETSIGINFO {tid}: {os.strerror(err)}")
            slots = self.arming.attribute(t, _SI_CODE.value, _SI_PERF_DATA.value)
            if slots is None:
                t.resume_sig = _SIGTRAP  # the target's own (int3, its own perf events...)
            elif slots:
                found = []
                pid = t.pid
                ip = -1
                for slot in slots:
                    if slot.access is _EXEC:
                        at = slot.address
                    else:
                        if ip < 0:
                            # -1 is no user-space address: the error value only.
                            ip = _ptrace(_PEEKUSER, tid, _RIP, None)
                            if ip == -1:
                                err = _get_errno()
                                raise OSError(err, f"PTRACE_PEEKUSER {tid}: {os.strerror(err)}")
                        at = ip
                    if slot.halt:
                        t.holds |= HOLD_HALT
                    reader = slot.reader
                    values = reader.read_stopped(pid, tid) if reader is not None else ()
                    found.append((slot, at, values))
        except OSError as err:
            # ESRCH: killed while stopped (SIGKILL); its death is reported next.
            self.note(f"ptrace request on {tid} failed: {err}")
            found = None
        if t.holds or t.detaching or t.pending is not None:
            self.settle(t)
        else:
            t.stopped = False
            if _ptrace(_CONT, tid, None, t.resume_sig) == -1:
                self.note(f"resuming {tid} failed: {os.strerror(_get_errno())}")
        if found:
            # Built after the thread runs again: it need not wait for our bookkeeping.
            now = _time_ns()
            out = self.out
            if out and out[-1] is self._hits_entry:
                hits = self._hits
            else:
                hits = self._hits = []
                self._hits_entry = ("hits", (hits,))
                out.append(self._hits_entry)
            pid = t.pid
            for slot, at, values in found:
                hits.append(
                    make_hit(
                        pid,
                        tid,
                        slot.pool,
                        slot.index,
                        slot.generation,
                        at,
                        slot.address,
                        now,
                        slot.access,
                        values,
                        slot.halt,
                    )
                )

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
                self.on_new_task(t, event, pt.geteventmsg(t.tid))
            elif event == _EV_EXEC:
                self.on_exec(t, pt.geteventmsg(t.tid))
        except OSError as err:
            # ESRCH: killed while stopped (SIGKILL); its death is reported next.
            self.note(f"ptrace request on {t.tid} failed: {err}")
        self.settle(t)

    def settle(self, t: Tracee) -> None:
        """A stopped thread: apply what waits for a stop, then resume it unless held."""
        if not t.stopped:
            return
        if t.detaching:
            self.detach_now(t)
            return
        if t.pending is not None and not procfs.sigtrap_pending(t.pid, t.tid):
            self.apply_pending(t)
        if t.holds or not t.stopped:
            return
        t.stopped = False
        try:
            if t.listen:
                pt.listen(t.tid)
            else:
                pt.cont(t.tid, t.resume_sig)
        except OSError as err:
            self.note(f"resuming {t.tid} failed: {err}")

    def apply_pending(self, t: Tracee) -> None:
        write, t.pending = t.pending, None
        waiters, t.waiters = t.waiters, []
        refusals = self.write(t, write) if write is not None else []
        for barrier in waiters:
            barrier.done_one(refusals)

    def write(self, t: Tracee, w: Any) -> list[Any]:
        try:
            refusals = self.arming.write(t, w)
        except OSError as err:
            self.note(f"arming {t.tid} failed: {err}")
            refusals = []
        t.holds &= ~HOLD_NEW
        return refusals

    def release_waiters(self, t: Tracee) -> None:
        waiters, t.waiters = t.waiters, []
        t.pending = None
        for barrier in waiters:
            barrier.done_one()

    # --- deaths -------------------------------------------------------------------
    def _gone(self, t: Tracee, status: int | None) -> None:
        """The thread has exited (status) or vanished (None: exec'd away, reaped)."""
        code = 0
        if status is not None:
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        self.forget(t)
        proc = self.procs.get(t.pid)
        if proc is None:
            return
        if not proc.quiet:
            self.out.append(("on_thread_exited", (t.pid, t.tid, code)))
        if t.tid == proc.pid or not proc.tids:
            self.end_process(proc, code)
        elif proc.pid in self.threads:
            # A leader's death is reported once its last other thread is reaped.
            self.reap(proc.pid)

    def forget(self, t: Tracee) -> None:
        self.threads.pop(t.tid, None)
        with contextlib.suppress(OSError):
            self.arming.drop(t)
        self.release_waiters(t)
        proc = self.procs.get(t.pid)
        if proc is not None:
            proc.tids.discard(t.tid)

    def end_process(self, proc: Proc, code: int) -> None:
        for tid in list(proc.tids):
            other = self.threads.get(tid)
            if other is not None:
                self.forget(other)
        self.procs.pop(proc.pid, None)
        if not proc.quiet:
            self.out.append(("on_process_exited", (proc.pid, code)))
        self.process_ended(proc)

    # --- hooks commands.py provides -------------------------------------------------
    def on_new_task(self, t: Tracee, event: int, new: int) -> None:
        raise NotImplementedError

    def on_exec(self, t: Tracee, former: int) -> None:
        raise NotImplementedError

    def detach_now(self, t: Tracee) -> None:
        raise NotImplementedError

    def process_ended(self, proc: Proc) -> None:
        raise NotImplementedError
