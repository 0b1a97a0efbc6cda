"""The tracer's commands: attach, apply, resume, detach, launch, release, close.

``Commands`` runs on the tracer thread, built on the table of tracees
(table.py); the tracer (tracer.py) queues each call with a
``concurrent.futures.Future`` and runs it at its next wake-up. A command
answers its future through the outbox (never directly, see tracer.py), at
once or when the threads it waits for have stopped. Commands raise
``BrokerError`` subclasses for what a client can cause; the tracer fails the
future with them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace import procfs
from hwbkptd.arch.ptrace.launch import spawn_stopped, trace_options
from hwbkptd.arch.ptrace.messages import Progressed, ThreadStarted
from hwbkptd.arch.ptrace.state import HOLD_HALT, HOLD_LAUNCH, ApplyBarrier, Proc
from hwbkptd.arch.ptrace.table import TraceeTable
from hwbkptd.core.errors import (
    BrokerError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from hwbkptd.core.mechanism import Refusal, SlotWrite
from hwbkptd.core.model import CPU_CONTEXT

__all__ = ["Commands"]

Future = concurrent.futures.Future

#: An attach tells its progress every this many threads seized (issue 14); the core
#: decides what of it reaches the session (core/progress.py).
ATTACH_STEP = 64


class Commands:
    """The command bodies; each takes the future it answers first."""

    def __init__(self, table: TraceeTable) -> None:
        self.table = table
        self.arming = table.arming
        self.outbox = table.outbox
        self.threads = table.threads
        self.procs = table.procs
        #: Hands what the outbox holds to the event loop now (set by the tracer): a long
        #: command's progress must not wait for the command's end.
        self.flush: Callable[[], None] = lambda: None

    def attach(
        self,
        future: Future[Any],
        pid: int,
        follow_fork: bool,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        known = self.procs.get(pid)
        if known is not None and not known.unannounced:
            self.outbox.resolve(future, sorted(known.tids))
            return
        self._check_attachable(pid)
        proc = Proc(pid, follow_fork)
        self.procs[pid] = proc
        options = trace_options(follow_fork)
        seized: list[int] = []
        skipped: set[int] = set()
        listed = 0
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
                listed += len(fresh)
                for tid in fresh:
                    try:
                        pt.seize(tid, options)
                    except OSError as err:
                        skipped.add(tid)
                        if err.errno == errno.ESRCH:
                            continue  # it exited meanwhile
                        status = procfs.read_status(tid)
                        if status is not None and status.tracer_pid == threading.get_native_id():
                            continue  # seized by its creator's clone event, which will announce it
                        raise self._seize_refused(pid, err) from None
                    self.table.add(proc, tid)
                    seized.append(tid)
                    if progress is not None and len(seized) % ATTACH_STEP == 0:
                        self.outbox.send(Progressed(progress, len(seized), listed))
                        self.flush()
        except BaseException:
            if proc.tids:
                self.table.start_detach(proc, None)
            else:
                self.procs.pop(pid, None)
            raise
        if not proc.tids:
            self.procs.pop(pid, None)
            raise NotFound("pid", f"process {pid} exited while being attached")
        for tid in seized:
            self.outbox.send(ThreadStarted(pid, tid))
        self.outbox.resolve(future, seized)

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

    def apply(self, future: Future[Any], writes: Sequence[SlotWrite]) -> None:
        barrier = ApplyBarrier(future, self.outbox.resolve)
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
            barrier.refusals.extend(self.table.write(t, w))
            self.table.resume_unless_held(t)
        barrier.maybe_finish()

    def resume(self, future: Future[Any], tid: int) -> None:
        t = self.threads.get(tid)
        if t is None:
            raise NotFound("tid", f"thread {tid} is not traced")
        t.hold_reasons &= ~HOLD_HALT
        self.table.resume_unless_held(t)
        self.outbox.resolve(future, None)

    def detach(self, future: Future[Any], pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is None or proc.unannounced:
            self.outbox.resolve(future, None)  # not ours (any more): nothing to undo
            return
        if self.table.unreleased(proc):
            self.table.kill(proc, future)  # nobody released it: a launch given up, never run
            return
        self.table.start_detach(proc, future)

    def close(self, future: Future[Any]) -> None:
        self.table.close_futures.append(future)
        for proc in list(self.procs.values()):
            if self.table.unreleased(proc):
                self.table.kill(proc, None)  # a launch never released leaves no process behind
            else:
                self.table.start_detach(proc, None)
        self.table.maybe_closed()

    def stop_now(self, future: Future[Any]) -> None:
        self.table.stopping = True
        self.outbox.resolve(future, None)

    def launch(
        self,
        future: Future[Any],
        path: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str,
        follow_fork: bool,
    ) -> None:
        pid, errpipe = spawn_stopped(path, argv, env, cwd)
        try:
            pt.seize(pid, trace_options(follow_fork) | pt.PTRACE_O_EXITKILL)
        except OSError as err:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(errpipe)
            raise FailedPrecondition(f"PTRACE_SEIZE of the launched child failed: {err}") from None
        proc = Proc(pid, follow_fork)
        proc.launched = True
        proc.unannounced = True
        proc.launch_future = future
        proc.errpipe = errpipe
        self.procs[pid] = proc
        self.table.add(proc, pid)
        os.kill(pid, signal.SIGCONT)

    def release(self, future: Future[Any], pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is None or proc.unannounced:
            raise NotFound("pid", f"process {pid} is not traced")
        if not proc.launched:
            raise FailedPrecondition(f"process {pid} was attached, not launched: it already runs")
        t = self.threads.get(pid)
        if t is not None:
            if t.hold_reasons & HOLD_LAUNCH:
                # Released, it is a process like any other: the broker's end lets it go.
                with contextlib.suppress(OSError):  # dying: its death is reported next
                    pt.setoptions(pid, trace_options(proc.follow_fork))
            t.hold_reasons &= ~HOLD_LAUNCH
            self.table.resume_unless_held(t)
        self.outbox.resolve(future, None)

    def kill_launched(self, future: Future[Any], pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is None or proc.unannounced or not proc.launched:
            raise NotFound("pid", f"no process {pid} launched by the broker")
        if not self.table.unreleased(proc):
            raise FailedPrecondition(f"process {pid} was released: it runs")
        self.table.kill(proc, future)


def _already_traced(pid: int, tracer: int) -> FailedPrecondition:
    name = procfs.comm(tracer)
    who = f"pid {tracer} ({name})" if name else f"pid {tracer}"
    return FailedPrecondition(
        f"process {pid} is already traced by {who}; a thread has one tracer at a time. "
        "Detach that debugger, or watch in non-stop mode (--nonstop), which uses perf "
        "events without ptrace and works beside another debugger"
    )
