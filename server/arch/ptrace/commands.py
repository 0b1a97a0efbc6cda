"""The tracer's operations: attach, apply, resume, detach, close (launch.py: launch, release).

Each public method queues a command for the tracer thread and returns a
``concurrent.futures.Future``; the command body runs on the tracer thread, which
makes every ptrace call. Bodies raise ``BrokerError`` subclasses for what a
client can cause; the future carries them to the caller.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import os
from collections.abc import Sequence
from typing import Any

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace import launch, procfs
from hwbkptd.arch.ptrace.launch import LaunchCommands, trace_options
from hwbkptd.arch.ptrace.state import HOLD_HALT, HOLD_LAUNCH, HOLD_NEW, ApplyBarrier, Proc, Tracee
from hwbkptd.core.errors import (
    BrokerError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from hwbkptd.core.mechanism import Refusal, SlotWrite
from hwbkptd.core.model import CPU_CONTEXT

__all__ = ["Tracer"]

Future = concurrent.futures.Future


class Tracer(LaunchCommands):
    # --- the operations (any thread) ---------------------------------------------------
    def attach(self, pid: int, follow_fork: bool) -> Future[list[int]]:
        return self.submit(lambda f: self._attach(f, pid, follow_fork))

    def apply(self, writes: Sequence[SlotWrite]) -> Future[list[Refusal]]:
        return self.submit(lambda f: self._apply(f, writes))

    def resume(self, tid: int) -> Future[None]:
        return self.submit(lambda f: self._resume(f, tid))

    def detach(self, pid: int) -> Future[None]:
        return self.submit(lambda f: self._detach(f, pid))

    def close(self) -> Future[None]:
        return self.submit(self._close)

    def stop_now(self) -> Future[None]:
        """End the thread whatever is still attached (the kernel detaches the rest)."""
        return self.submit(self._stop_now)

    # --- bodies (tracer thread) ----------------------------------------------------------
    def _attach(self, future: Future[Any], pid: int, follow_fork: bool) -> None:
        known = self.procs.get(pid)
        if known is not None and not known.quiet:
            self.resolve(future, sorted(known.tids))
            return
        self._check_attachable(pid)
        proc = Proc(pid, follow_fork)
        self.procs[pid] = proc
        options = trace_options(follow_fork)
        seized: list[int] = []
        skipped: set[int] = set()
        try:
            # Threads may be created meanwhile: list again until nothing is new.
            while True:
                fresh = [
                    tid
                    for tid in procfs.task_ids(pid)
                    if tid not in self.threads and tid not in skipped
                ]
                if not fresh:
                    break
                for tid in fresh:
                    try:
                        pt.seize(tid, options)
                    except OSError as err:
                        skipped.add(tid)
                        if err.errno == errno.ESRCH:
                            continue  # it exited meanwhile
                        status = procfs.read_status(tid)
                        if status is not None and status.tracer_pid == self.native_id:
                            continue  # seized by its creator's clone event, which will announce it
                        raise self._seize_refused(pid, err) from None
                    self.add(proc, tid)
                    seized.append(tid)
        except BaseException:
            if proc.tids:
                self._start_detach(proc, None)
            else:
                self.procs.pop(pid, None)
            raise
        if not proc.tids:
            self.procs.pop(pid, None)
            raise NotFound("pid", f"process {pid} exited while being attached")
        for tid in seized:
            self.out.append(("on_thread_started", (pid, tid)))
        self.resolve(future, seized)

    def _check_attachable(self, pid: int) -> None:
        status = procfs.read_status(pid)
        if status is None:
            raise NotFound("pid", f"no process {pid}")
        if status.tgid != pid:
            raise InvalidArgument(
                "pid", f"{pid} is a thread of process {status.tgid}: attach to the process"
            )
        if pid == os.getpid():
            raise FailedPrecondition("the broker cannot trace itself")
        if status.state in ("Z", "X"):
            raise NotFound("pid", f"process {pid} has exited (zombie)")
        if status.tracer_pid:
            raise _already_traced(pid, status.tracer_pid)

    def _seize_refused(self, pid: int, err: OSError) -> BrokerError:
        if err.errno == errno.ESRCH:
            return NotFound("pid", f"process {pid} exited while being attached")
        if err.errno != errno.EPERM:
            return FailedPrecondition(f"PTRACE_SEIZE of process {pid} failed: {err.strerror}")
        status = procfs.read_status(pid)
        if status is not None and status.tracer_pid:
            return _already_traced(pid, status.tracer_pid)
        missing = f"CAP_SYS_PTRACE (the broker runs as uid {os.geteuid()})"
        scope = procfs.yama_ptrace_scope()
        if scope is not None and scope > 0:
            missing += f"; Yama's {procfs.YAMA_SCOPE_PATH} is {scope}" + (
                " (3: no process may attach at all)" if scope == 3 else ""
            )
        return PermissionDenied(f"ptrace of process {pid} refused (EPERM): needs {missing}")

    def _apply(self, future: Future[Any], writes: Sequence[SlotWrite]) -> None:
        barrier = ApplyBarrier(future, self.resolve)
        for w in writes:
            if w.tid == CPU_CONTEXT:
                for pool, entries in w.pools.items():
                    barrier.refusals.extend(
                        Refusal(w.tid, pool, i, w.generation, "kernel scope: not armed by ptrace")
                        for i, entry in enumerate(entries)
                        if entry is not None
                    )
                continue
            t = self.threads.get(w.tid)
            if t is None or t.detaching:
                continue  # gone: its table went with it
            if self.arming.needs_stop and not t.stopped:
                t.pending = w
                t.waiters.append(barrier)
                barrier.waiting += 1
                if not t.expect_stop and not t.interrupted:
                    try:
                        pt.interrupt(t.tid)
                        t.interrupted = True
                    except OSError:
                        pass  # dying: its death releases the barrier
                continue
            barrier.refusals.extend(self.write(t, w))
            self.settle(t)
        barrier.maybe_finish()

    def _resume(self, future: Future[Any], tid: int) -> None:
        t = self.threads.get(tid)
        if t is None:
            raise NotFound("tid", f"thread {tid} is not traced")
        t.holds &= ~HOLD_HALT
        self.settle(t)
        self.resolve(future, None)

    def _detach(self, future: Future[Any], pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is None or proc.quiet:
            self.resolve(future, None)  # not ours (any more): nothing to undo
            return
        if self.unreleased(proc):
            self.kill(proc, future)  # nobody released it: a launch given up, never run
            return
        self._start_detach(proc, future)

    def _start_detach(self, proc: Proc, future: Future[Any] | None) -> None:
        if future is not None:
            proc.detach_futures.append(future)
        for tid in list(proc.tids):
            t = self.threads.get(tid)
            if t is None or t.detaching:
                continue
            t.detaching = True
            t.holds = 0
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

    def process_ended(self, proc: Proc) -> None:
        if proc.launch_future is not None and not proc.launch_future.done():
            reason = launch.exec_error(proc.errpipe) if proc.errpipe >= 0 else ""
            proc.errpipe = -1
            why = reason or "it exited before exec"
            self.fail(proc.launch_future, NotFound("argv", f"the program did not start: {why}"))
            proc.launch_future = None
        if proc.errpipe >= 0:
            os.close(proc.errpipe)
            proc.errpipe = -1
        for future in proc.detach_futures:
            self.resolve(future, None)
        proc.detach_futures.clear()
        self._maybe_closed()

    # --- hooks from the stop handling ----------------------------------------------------
    def on_new_task(self, t: Tracee, event: int, new: int) -> None:
        proc = self.procs.get(t.pid)
        if proc is None or new in self.threads:
            return
        if event == pt.PTRACE_EVENT_CLONE and procfs.thread_belongs(t.pid, new):
            child = self.add(proc, new)
            child.holds = HOLD_NEW
            if not proc.quiet:
                self.out.append(("on_thread_started", (proc.pid, new)))
        else:
            # A new process (fork, vfork, clone without CLONE_THREAD).
            fork = Proc(new, proc.follow_fork)
            self.procs[new] = fork
            child = self.add(fork, new)
            if proc.follow_fork and not proc.quiet:
                child.holds = HOLD_NEW
                self.out.append(("on_thread_started", (new, new)))
            else:
                # Not followed: let it go at its first stop, with cleared registers.
                fork.quiet = True
                child.detaching = True
                child.dr7 = -1  # unknown: whatever it inherited gets cleared
        child.expect_stop = True
        self.reap(new)  # its first stop may have come before this event

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
            proc.quiet = False
            t.holds |= HOLD_LAUNCH | HOLD_NEW
            self.out.append(("on_thread_started", (proc.pid, t.tid)))
            self.resolve(proc.launch_future, proc.pid)
            proc.launch_future = None
        elif not proc.quiet:
            self.out.append(("on_process_exec", (proc.pid,)))

    def _close(self, future: Future[Any]) -> None:
        self.close_futures.append(future)
        for proc in list(self.procs.values()):
            if self.unreleased(proc):
                self.kill(proc, None)  # a launch never released leaves no process behind
            else:
                self._start_detach(proc, None)
        self._maybe_closed()

    def _maybe_closed(self) -> None:
        if self.close_futures and not self.procs:
            self.stopping = True
            for future in self.close_futures:
                self.resolve(future, None)
            self.close_futures.clear()

    def _stop_now(self, future: Future[Any]) -> None:
        self.stopping = True
        self.resolve(future, None)


def _already_traced(pid: int, tracer: int) -> FailedPrecondition:
    name = procfs.comm(tracer)
    who = f"pid {tracer} ({name})" if name else f"pid {tracer}"
    return FailedPrecondition(
        f"process {pid} is already traced by {who}; a thread has one tracer at a time. "
        "Detach that debugger, or watch in non-stop mode (--nonstop), which uses perf "
        "events without ptrace and works beside another debugger"
    )
