"""The tracer thread: the one OS thread that makes every ptrace call (DESIGN section 5).

It blocks in epoll on a SIGCHLD signalfd and a command eventfd (waiter.py),
never sleeps on a timer and never waits for anything but its own tids (while
a thread traps in a loop, a tracer without real-time priority polls a little
before blocking: ``SPIN_NS``; see ``RT_PRIORITY``). Each
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
``commands.py``; the stops (the hot path: traps) in ``stops.py``; this module
runs the loop and keeps the threads' bookkeeping.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from hwbkptd.arch.ptrace import binding as pt
from hwbkptd.arch.ptrace import procfs
from hwbkptd.arch.ptrace.state import HOLD_NEW, Arming, Proc, Tracee
from hwbkptd.arch.ptrace.stops import SWEEP_DELAY, SWEEP_EVERY, Out, StopHandler
from hwbkptd.arch.ptrace.waiter import Waiter, block_sigchld, private_fd_table

__all__ = ["RT_PRIORITY", "SPIN_NEAR_NS", "SPIN_NS", "Out", "TracerCore"]

#: The tracer thread runs SCHED_FIFO at this priority (the lowest real-time one) where it
#: may (root, CAP_SYS_NICE), with SCHED_RESET_ON_FORK so launched programs do not inherit
#: it. A thread that traps waits in a ptrace-stop that the kernel ends with the SIGTRAP,
#: which kills it, if the tracer dies before collecting that stop (waitpid) or resuming
#: it: how soon the tracer runs after a trap, and after a SIGKILL how soon it exits
#: (closing the events, see waiter.private_fd_table) sets how often a kill -9 of the
#: broker kills a NOTIFY target. Measured here (tests/e2e_native/kill_rate.py, four
#: watches, 50 runs each, normal priority then real time): written every 1 ms, 32 then 7
#: deaths; every 100 us, 47 then 17 (docs/decisions.md).
RT_PRIORITY = 1
#: After a trap, the tracer polls for up to SPIN_NS before it sleeps, when the wait for
#: that trap took less than SPIN_NEAR_NS (spin included). On two CPUs a trap loop then
#: costs one wake-up of an idle CPU per trap instead of two: measured here, a trap
#: loop's hits/s went from about 12,000 to 22,000 (tests/native/ptrace/trap_rate.py,
#: unpinned), and with the tracer and the target on one CPU it did not go down. A
#: wait longer than SPIN_NEAR_NS stops the spinning, so at most SPIN_NS of every
#: SPIN_NEAR_NS is spent polling, and none while traps are rarer. A real-time tracer
#: never spins: yielding lets no normal thread run on its CPU, so a spin would hold back
#: the very target it waits for (trap_rate.py, same hour: 7,600 hits/s spinning in real
#: time, 15,600 without, 12,900 in normal priority with the spin).
SPIN_NS = 75_000
SPIN_NEAR_NS = 150_000
_FAR = 1 << 62
_monotonic_ns = time.monotonic_ns

Command = Callable[[concurrent.futures.Future[Any]], None]


class TracerCore(StopHandler):
    """Threads and the loop; stops.py answers the stops, commands.py adds the operations."""

    def __init__(self, arming: Arming, emit: Callable[[list[Out]], None]) -> None:
        super().__init__()
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
        self.stopping = False
        #: close() callers, answered once every process is let go of.
        self.close_futures: list[concurrent.futures.Future[Any]] = []
        self.native_id = 0
        #: Waits that began with a spin (see SPIN_NS).
        self.spins = 0
        #: The thread runs SCHED_FIFO (RT_PRIORITY), or why it could not (once started).
        self.realtime = False
        self.realtime_refused = ""
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
        self._go_realtime()
        try:
            private_fd_table(keep=set(self.shared_fds))
            waiter = self.waiter
            wait = waiter.wait
            gap = _FAR
            may_spin = not self.realtime
            while not self.stopping:
                t0 = _monotonic_ns()
                # Spin only right after a trap that came soon after the one before: a
                # thread trapping in a loop (see SPIN_NS); rare traps never spin.
                spin = 0
                if may_spin and gap < SPIN_NEAR_NS and waiter.sigtrap:
                    spin = SPIN_NS
                    self.spins += 1
                hint, woken = wait(SWEEP_DELAY if self.owed >= 0 else -1, spin)
                gap = _monotonic_ns() - t0
                if woken:
                    self._run_commands()
                if hint >= 0:
                    self.collect(hint)
                if self.owed >= 0:
                    self.owed += 1
                    if self.owed > SWEEP_EVERY or (hint < 0 and not woken):
                        self.sweep()
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

    def _go_realtime(self) -> None:
        """SCHED_FIFO for this thread (``RT_PRIORITY``), or the reason it stays normal."""
        try:
            policy = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
            os.sched_setscheduler(0, policy, os.sched_param(RT_PRIORITY))  # this thread
        except OSError as err:
            self.realtime_refused = f"{err.strerror} (needs CAP_SYS_NICE)"
            return
        self.realtime = True

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

    def add(self, proc: Proc, tid: int) -> Tracee:
        """Start the bookkeeping of a thread of ``proc`` (seized by the caller)."""
        t = Tracee(proc.pid, tid)
        self.threads[tid] = t
        proc.tids.add(tid)
        return t

    # --- answering stops ---------------------------------------------------------------
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
    def gone(self, t: Tracee, status: int | None) -> None:
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

    # --- hooks commands.py provides (with on_new_task and on_exec, see stops.py) --------
    def detach_now(self, t: Tracee) -> None:
        raise NotImplementedError

    def process_ended(self, proc: Proc) -> None:
        raise NotImplementedError
