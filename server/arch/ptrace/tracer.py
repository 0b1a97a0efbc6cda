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
"""

from __future__ import annotations

import concurrent.futures
import contextlib
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
from hwbkptd.arch.ptrace.state import HOLD_HALT, HOLD_NEW, ArmedSlot, Arming, Proc, Tracee
from hwbkptd.arch.ptrace.waiter import Waiter, block_sigchld, private_fd_table
from hwbkptd.core.mechanism import HitReport
from hwbkptd.core.model import Access

__all__ = ["Out", "TracerCore"]

#: One event for the sink: (callback name, arguments).
Out = tuple[str, tuple[Any, ...]]
Command = Callable[[concurrent.futures.Future[Any]], None]

_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_SIGTRAP = int(signal.SIGTRAP)
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
            while not self.stopping:
                hints, woken = self.waiter.wait()
                if woken:
                    self._run_commands()
                if hints is not None:
                    self._sweep(hints)
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
    def _sweep(self, hints: list[int]) -> None:
        threads = self.threads
        for tid in hints:
            if tid in threads:
                self.reap(tid)
        if len(threads) > 1 or not hints or hints[0] not in threads:
            seen = set(hints)
            for tid in list(threads):
                if tid not in seen:
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
        try:
            status = pt.waitpid_nohang(tid)
        except ChildProcessError:
            self._gone(t, None)
            return
        if status is None:
            return
        if status & 0xFF == 0x7F:
            self._on_stop(t, status)
        else:
            self._gone(t, status)

    def _on_stop(self, t: Tracee, status: int) -> None:
        t.stopped = True
        t.expect_stop = False
        sig = (status >> 8) & 0xFF
        event = status >> 16
        t.listen = False
        t.resume_sig = 0
        raw: list[tuple[ArmedSlot, int, tuple[bytes, ...]]] | None = None
        try:
            if event == 0:
                if sig == _SIGTRAP:
                    raw = self._on_sigtrap(t)
                else:
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
        now = time.time_ns()
        self.settle(t)
        if raw:
            # Built after the thread runs again: it need not wait for our bookkeeping.
            out = self.out
            pid, tid = t.pid, t.tid
            for slot, at, values in raw:
                report = HitReport(
                    pid,
                    tid,
                    slot.pool,
                    slot.index,
                    slot.generation,
                    at,
                    slot.entry.chunk.address,
                    now,
                    -1,
                    slot.access,
                    values,
                    slot.entry.halt,
                )
                out.append(("hit", (report,)))

    def _on_sigtrap(self, t: Tracee) -> list[tuple[ArmedSlot, int, tuple[bytes, ...]]] | None:
        """What a SIGTRAP stop needs while the thread is stopped: (slot, ip, values)."""
        si = pt.getsiginfo(t.tid)
        slots = self.arming.attribute(t, si)
        if slots is None:
            t.resume_sig = _SIGTRAP  # the target's own (int3, its own perf events...)
            return None
        raw: list[tuple[ArmedSlot, int, tuple[bytes, ...]]] = []
        ip = -1
        for slot in slots:
            if slot.access is _EXEC:
                at = slot.entry.chunk.address
            else:
                if ip < 0:
                    ip = pt.peekuser(t.tid, pt.RIP_OFFSET)
                at = ip
            if slot.entry.halt:
                t.holds |= HOLD_HALT
            raw.append((slot, at, slot.reader.read(t.pid) if slot.reader is not None else ()))
        return raw

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
