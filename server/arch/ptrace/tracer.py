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

``Tracer`` owns the thread and its loop, and composes the rest: the table of
tracees (table.py), the stop handler on it (stops.py, the hot path: traps),
the command executor on it (commands.py), and the outbox of typed messages
(messages.py) that ``emit`` hands over.
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hwbkptd.arch.ptrace.commands import Commands
from hwbkptd.arch.ptrace.messages import Message, Outbox
from hwbkptd.arch.ptrace.state import Arming
from hwbkptd.arch.ptrace.stops import StopHandler
from hwbkptd.arch.ptrace.table import TraceeTable
from hwbkptd.arch.ptrace.waiter import Waiter, block_sigchld, private_fd_table
from hwbkptd.core.mechanism import Refusal, SlotWrite

__all__ = ["RT_PRIORITY", "SPIN_NEAR_NS", "SPIN_NS", "Tracer"]

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

Future = concurrent.futures.Future
Command = Callable[[Future[Any]], None]


class Tracer:
    """The tracer thread: its commands (any thread) and its loop (its own thread)."""

    def __init__(self, arming: Arming, emit: Callable[[list[Message]], None]) -> None:
        self._emit = emit
        self.outbox = Outbox()
        self.waiter = Waiter()
        self.table = TraceeTable(arming, self.outbox)
        self.stops = StopHandler(self.table, self.waiter)
        self.commands = Commands(self.table)
        self.commands.flush = self._flush
        #: Written by ``emit``'s caller to wake the event loop (exists in both tables).
        self.relay = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        #: Descriptors in the shared table (the thread works on private copies).
        self.shared_fds = (*self.waiter.fds(), self.relay)
        self._queue: queue.SimpleQueue[tuple[Command, Future[Any]]] = queue.SimpleQueue()
        #: Waits that began with a spin (see SPIN_NS).
        self.spins = 0
        #: The thread runs SCHED_FIFO (RT_PRIORITY), or why it could not (once started).
        self.realtime = False
        self.realtime_refused = ""
        self._thread = threading.Thread(target=self._run, name="hwbkpt-tracer", daemon=True)

    # --- the commands (any thread) -----------------------------------------------------
    def attach(
        self, pid: int, follow_fork: bool, progress: Callable[[int, int], None] | None = None
    ) -> Future[list[int]]:
        return self.submit(lambda f: self.commands.attach(f, pid, follow_fork, progress))

    def apply(self, writes: Sequence[SlotWrite]) -> Future[list[Refusal]]:
        return self.submit(lambda f: self.commands.apply(f, writes))

    def resume(self, tid: int) -> Future[None]:
        return self.submit(lambda f: self.commands.resume(f, tid))

    def detach(self, pid: int) -> Future[None]:
        return self.submit(lambda f: self.commands.detach(f, pid))

    def launch(
        self, path: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, follow_fork: bool
    ) -> Future[int]:
        return self.submit(lambda f: self.commands.launch(f, path, argv, env, cwd, follow_fork))

    def release(self, pid: int) -> Future[None]:
        return self.submit(lambda f: self.commands.release(f, pid))

    def kill_launched(self, pid: int) -> Future[None]:
        return self.submit(lambda f: self.commands.kill_launched(f, pid))

    def close(self) -> Future[None]:
        return self.submit(self.commands.close)

    def stop_now(self) -> Future[None]:
        """End the thread whatever is still attached (the kernel detaches the rest)."""
        return self.submit(self.commands.stop_now)

    # --- the loop ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, command: Command) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((command, future))
        self.waiter.wake()
        return future

    def _run(self) -> None:
        block_sigchld()
        self._go_realtime()
        try:
            private_fd_table(keep=set(self.shared_fds))
            waiter = self.waiter
            wait = waiter.wait
            stops = self.stops
            table = self.table
            outbox = self.outbox
            gap = _FAR
            may_spin = not self.realtime
            while not table.stopping:
                t0 = _monotonic_ns()
                # Spin only right after a trap that came soon after the one before: a
                # thread trapping in a loop (see SPIN_NS); rare traps never spin.
                spin = 0
                if may_spin and gap < SPIN_NEAR_NS and waiter.sigtrap:
                    spin = SPIN_NS
                    self.spins += 1
                hint, woken = wait(stops.sweep_timeout(), spin)
                gap = _monotonic_ns() - t0
                if woken:
                    self._run_commands()
                if hint >= 0:
                    stops.collect(hint)
                stops.after_wakeup(hint, woken)
                if outbox.items:
                    self._flush()
        except BaseException:
            # Not through logging here: a handler's descriptor may not be in our table.
            text = "ptrace tracer thread failed:\n" + traceback.format_exc()
            self.outbox.note(text, logging.ERROR)
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
        if self.outbox.items:
            self._emit(self.outbox.take())

    def _run_commands(self) -> None:
        while True:
            try:
                command, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                command(future)
            except Exception as err:
                self.outbox.fail(future, err)

    def _abandon(self) -> None:
        """The thread is ending: disarm what is left so nothing traps an untraced thread."""
        table = self.table
        for t in table.threads.values():
            with contextlib.suppress(OSError):
                table.arming.drop(t)
        table.threads.clear()
        err = RuntimeError("the ptrace tracer thread has stopped")
        while True:
            try:
                _, future = self._queue.get_nowait()
            except queue.Empty:
                break
            self.outbox.fail(future, err)
        self.waiter.close()
