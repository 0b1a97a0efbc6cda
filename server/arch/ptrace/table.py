"""The table of traced threads and processes, and what keeps it true as they come and go.

Only the tracer thread uses it. The stop handler (stops.py) and the command
executor (commands.py) are built on it: they collect stops and run commands,
and call it to resume a stopped thread (``resume_unless_held``), to let a process go, or
to record a new thread, an exec, a death. It never waits for a stop itself:
where a thread's next stop must be collected now, its methods return the tid
to reap, and the stop handler reaps it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
from typing import Any

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace import launch, procfs
from hwbkptd.arch.ptrace.messages import (
    Outbox,
    ProcessExec,
    ProcessExited,
    ThreadExited,
    ThreadStarted,
)
from hwbkptd.arch.ptrace.state import HOLD_LAUNCH, HOLD_NEW, Arming, Proc, Tracee
from hwbkptd.core.errors import NotFound
from hwbkptd.core.mechanism import Refusal, SlotWrite

__all__ = ["TraceeTable"]

Future = concurrent.futures.Future


class TraceeTable:
    """Traced threads by tid, traced processes by pid, and launched children let go of."""

    def __init__(self, arming: Arming, outbox: Outbox) -> None:
        self.arming = arming
        self.outbox = outbox
        self.threads: dict[int, Tracee] = {}
        self.procs: dict[int, Proc] = {}
        #: Launched children we let go of: still ours to reap.
        self.orphans: set[int] = set()
        #: close() callers, answered once every process is let go of.
        self.close_futures: list[Future[Any]] = []
        #: The tracer thread ends after this wake-up.
        self.stopping = False

    def add(self, proc: Proc, tid: int) -> Tracee:
        """Start the bookkeeping of a thread of ``proc`` (seized by the caller)."""
        t = Tracee(proc.pid, tid)
        self.threads[tid] = t
        proc.tids.add(tid)
        return t

    # --- answering stops ---------------------------------------------------------------
    def resume_unless_held(self, t: Tracee) -> None:
        """A stopped thread: apply what waits for a stop, then resume it unless held."""
        if not t.stopped:
            return
        if t.detaching:
            self.detach_now(t)
            return
        if t.pending is not None and not procfs.sigtrap_pending(t.pid, t.tid):
            self.apply_pending(t)
        if t.hold_reasons or not t.stopped:
            return
        t.stopped = False
        try:
            if t.listen:
                pt.listen(t.tid)
            else:
                pt.cont(t.tid, t.resume_sig)
        except OSError as err:
            self.outbox.note(f"resuming {t.tid} failed: {err}")

    def apply_pending(self, t: Tracee) -> None:
        write, t.pending = t.pending, None
        waiters, t.waiters = t.waiters, []
        refusals = self.write(t, write) if write is not None else []
        for barrier in waiters:
            barrier.done_one(refusals)

    def write(self, t: Tracee, w: SlotWrite) -> list[Refusal]:
        try:
            refusals = self.arming.write(t, w)
        except OSError as err:
            self.outbox.note(f"arming {t.tid} failed: {err}")
            refusals = []
        t.hold_reasons &= ~HOLD_NEW
        return refusals

    def release_waiters(self, t: Tracee) -> None:
        waiters, t.waiters = t.waiters, []
        t.pending = None
        for barrier in waiters:
            barrier.done_one()

    # --- new threads, exec ---------------------------------------------------------------
    def on_new_task(self, t: Tracee, event: int, new: int) -> int:
        """A clone, fork or vfork event of ``t``; returns the new tid to reap (0: none)."""
        proc = self.procs.get(t.pid)
        if proc is None or new in self.threads:
            return 0
        if event == pt.PTRACE_EVENT_CLONE and procfs.thread_belongs(t.pid, new):
            child = self.add(proc, new)
            child.hold_reasons = HOLD_NEW
            if not proc.unannounced:
                self.outbox.send(ThreadStarted(proc.pid, new))
        else:
            # A new process (fork, vfork, clone without CLONE_THREAD).
            fork = Proc(new, proc.follow_fork)
            self.procs[new] = fork
            child = self.add(fork, new)
            if proc.follow_fork and not proc.unannounced:
                child.hold_reasons = HOLD_NEW
                self.outbox.send(ThreadStarted(new, new))
            else:
                # Not followed: let it go at its first stop, with cleared registers.
                fork.unannounced = True
                child.detaching = True
                child.dr7 = -1  # unknown: whatever it inherited gets cleared
        child.expect_stop = True
        return new  # its first stop may have come before this event

    def on_exec(self, t: Tracee, former: int) -> None:
        if former != t.tid:
            # A non-leader thread exec'd: it took the leader's tid and its own vanished.
            old = self.threads.get(former)
            if old is not None:
                self.forget(old)
        self.arming.drop(t)
        self.release_waiters(t)
        proc = self.procs.get(t.pid)
        if proc is None:
            return
        if proc.launch_future is not None and not proc.launch_future.done():
            launch.exec_error(proc.errpipe)
            proc.errpipe = -1
            proc.unannounced = False
            t.hold_reasons |= HOLD_LAUNCH | HOLD_NEW
            self.outbox.send(ThreadStarted(proc.pid, t.tid))
            self.outbox.resolve(proc.launch_future, proc.pid)
            proc.launch_future = None
        elif not proc.unannounced:
            self.outbox.send(ProcessExec(proc.pid))

    # --- deaths -------------------------------------------------------------------
    def gone(self, t: Tracee, status: int | None) -> int:
        """The thread has exited (status) or vanished (None: exec'd away, reaped); returns
        a tid to reap now (0: none)."""
        code = 0
        if status is not None:
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        self.forget(t)
        proc = self.procs.get(t.pid)
        if proc is None:
            return 0
        if not proc.unannounced:
            self.outbox.send(ThreadExited(t.pid, t.tid, code))
        if t.tid == proc.pid or not proc.tids:
            self.end_process(proc, code)
        elif proc.pid in self.threads:
            # A leader's death is reported once its last other thread is reaped.
            return proc.pid
        return 0

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
        if not proc.unannounced:
            self.outbox.send(ProcessExited(proc.pid, code))
        self.process_ended(proc)

    def process_ended(self, proc: Proc) -> None:
        """Answer who waited for the process: its launch, its detach, a close."""
        outbox = self.outbox
        if proc.launch_future is not None and not proc.launch_future.done():
            reason = launch.exec_error(proc.errpipe) if proc.errpipe >= 0 else ""
            proc.errpipe = -1
            why = reason or "it exited before exec"
            outbox.fail(proc.launch_future, NotFound("argv", f"the program did not start: {why}"))
            proc.launch_future = None
        if proc.errpipe >= 0:
            os.close(proc.errpipe)
            proc.errpipe = -1
        for future in proc.detach_futures:
            outbox.resolve(future, None)
        proc.detach_futures.clear()
        self.maybe_closed()

    def maybe_closed(self) -> None:
        if self.close_futures and not self.procs:
            self.stopping = True
            for future in self.close_futures:
                self.outbox.resolve(future, None)
            self.close_futures.clear()

    # --- letting go -----------------------------------------------------------------------
    def start_detach(self, proc: Proc, future: Future[Any] | None) -> None:
        """Detach every thread of ``proc``: at once if stopped, else at its next stop."""
        if future is not None:
            proc.detach_futures.append(future)
        for tid in list(proc.tids):
            t = self.threads.get(tid)
            if t is None or t.detaching:
                continue
            t.detaching = True
            t.hold_reasons = 0
            if not self.arming.needs_stop:
                self.arming.clear(t)  # perf events close without a stop
            if t.stopped:
                self.detach_now(t)
            elif not t.expect_stop and not t.interrupted:
                try:
                    pt.interrupt(tid)
                    t.interrupted = True
                except OSError:
                    pass  # dying: reaped as an exit
        if not proc.tids:
            self._detached(proc)

    def detach_now(self, t: Tracee) -> None:
        if procfs.sigtrap_pending(t.pid, t.tid):
            # A trap is queued: detached now, the thread would die of it. Let it be
            # reported first (ours are swallowed) and detach at that stop.
            t.stopped = False
            with contextlib.suppress(OSError):
                pt.cont(t.tid, t.resume_sig)
            return
        with contextlib.suppress(OSError):
            self.arming.clear(t)
        with contextlib.suppress(OSError):
            pt.detach(t.tid, t.resume_sig)
        self.forget(t)
        proc = self.procs.get(t.pid)
        if proc is not None and not proc.tids:
            self._detached(proc)

    def _detached(self, proc: Proc) -> None:
        self.procs.pop(proc.pid, None)
        if proc.launched:
            self.orphans.add(proc.pid)  # our child: reap it when it ends
            self.reap_orphan(proc.pid)
        self.process_ended(proc)

    def reap_orphan(self, pid: int) -> None:
        try:
            if pt.waitpid_nohang(pid) is not None:
                self.orphans.discard(pid)
        except ChildProcessError:
            self.orphans.discard(pid)

    def unreleased(self, proc: Proc) -> bool:
        """Launched and not let run yet (before its exec, or held at it)."""
        if not proc.launched:
            return False
        t = self.threads.get(proc.pid)
        return proc.launch_future is not None or (
            t is not None and bool(t.hold_reasons & HOLD_LAUNCH)
        )

    def kill(self, proc: Proc, future: Future[Any] | None) -> None:
        """SIGKILL a launch given up; ``future`` is answered once it has been reaped (its
        exit is collected like any traced thread's, and ``process_ended`` answers it)."""
        if future is not None:
            proc.detach_futures.append(future)
        for tid in proc.tids:
            t = self.threads.get(tid)
            if t is not None:
                t.hold_reasons = 0  # an exit stop, if one is reported, must not be held
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
