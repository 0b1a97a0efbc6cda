"""The processes the non-stop mechanism follows, and their threads' lives.

One room for "which processes are followed and what happens to their threads":
each followed process's per-CPU tracker events (dummy perf events with
``task``/``comm_exec`` on every thread), the listing of its threads when it is
first followed, and what the FORK/EXIT/COMM records the delivery hands over
mean (``TaskHandler``): a birth noted in the table, an exit reported once the
thread's first table was applied (or after a grace period), an exec dropping
every breakpoint (the kernel removes them: ``remove_on_exec``).

The mechanism (``nonstop``) arms slots; this room only opens and closes
trackers and tells the table and the broker about threads.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hwbkptd.arch.perf.nonstop_delivery import NonstopDelivery, NonstopStats
from hwbkptd.arch.perf.nonstop_events import NonstopRing, open_tracker
from hwbkptd.arch.perf.nonstop_table import Event, NonstopTable, Thread
from hwbkptd.arch.perf.percpu import errno_text
from hwbkptd.arch.perf.procmem import ProcMem, list_tasks, zombie_exit_code
from hwbkptd.arch.perf.ring import TaskRecord
from hwbkptd.core.errors import FailedPrecondition, NotFound, PermissionDenied

__all__ = ["EXIT_GRACE_S", "FollowedProcess", "FollowedProcesses"]

#: How long an exited newborn waits for its first table before its exit is reported.
EXIT_GRACE_S = 2.0


@dataclass(slots=True)
class FollowedProcess:
    pid: int
    #: Births and exits are reported to the broker (a process followed for its own sake).
    report: bool
    #: (tid, cpu, fd) of the tracker events opened on the process's threads.
    trackers: list[tuple[int, int, int]] = field(default_factory=list)


class FollowedProcesses:
    """pid -> FollowedProcess, with the trackers and the task-record handling."""

    _delivery: NonstopDelivery
    _rings: Mapping[int, NonstopRing]
    _close_events: Callable[[Sequence[Event]], None]

    def __init__(self, table: NonstopTable, stats: NonstopStats, proc_root: Path) -> None:
        self._table = table
        self._stats = stats
        self._proc_root = proc_root
        self._procs: dict[int, FollowedProcess] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def connect(
        self,
        *,
        delivery: NonstopDelivery,
        rings: Mapping[int, NonstopRing],
        close_events: Callable[[Sequence[Event]], None],
    ) -> None:
        """The parts built after this room (the delivery hands task records to it)."""
        self._delivery = delivery
        self._rings = rings
        self._close_events = close_events

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # --- following ---------------------------------------------------------------------
    def __contains__(self, pid: object) -> bool:
        return pid in self._procs

    def __bool__(self) -> bool:
        return bool(self._procs)

    def __iter__(self) -> Iterator[FollowedProcess]:
        return iter(list(self._procs.values()))

    def get(self, pid: int) -> FollowedProcess | None:
        return self._procs.get(pid)

    def tids(self, pid: int) -> tuple[int, ...]:
        return tuple(sorted(t.tid for t in self._table.pid_threads(pid)))

    def tracker_fds(self) -> int:
        return sum(len(p.trackers) for p in self._procs.values())

    def check_process(self, pid: int) -> None:
        try:
            status = (self._proc_root / str(pid) / "status").read_text()
        except OSError:
            raise NotFound("pid", f"no process {pid}") from None
        for line in status.splitlines():
            if line.startswith("Tgid:"):
                tgid = int(line.split()[1])
                if tgid != pid:
                    raise NotFound("pid", f"{pid} is a thread of process {tgid}, not a process")

    def follow(self, pid: int, report_threads: bool) -> tuple[int, ...]:
        """Track every thread of a process not followed yet; its tids."""
        proc = FollowedProcess(pid, report_threads)
        self._procs[pid] = proc
        self._delivery.mem[pid] = ProcMem(pid, self._proc_root)
        try:
            # A thread born between a listing and its creator's tracker would be missed:
            # list again until a listing finds no thread not seen before.
            seen: set[int] = set()
            while new := list_tasks(pid, self._proc_root) - seen:
                for tid in sorted(new):
                    seen.add(tid)
                    if self._track(proc, tid):
                        self._table.add_thread(pid, tid)
        except OSError as exc:
            self.forget(proc)
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise PermissionDenied(f"cannot follow process {pid}: {errno_text(exc)}") from exc
            raise FailedPrecondition(f"cannot follow process {pid}: {errno_text(exc)}") from exc
        if not self.tids(pid):
            self.forget(proc)
            raise NotFound("pid", f"process {pid} is gone")
        return self.tids(pid)

    def _track(self, proc: FollowedProcess, tid: int) -> bool:
        """Open the thread's trackers on every CPU; False when it is already gone."""
        opened: list[tuple[int, int, int]] = []
        try:
            for cpu, ring in sorted(self._rings.items()):
                fd = open_tracker(tid, cpu)
                opened.append((tid, cpu, fd))
                ring.attach(fd)
        except OSError as exc:
            for _, _, fd in opened:
                os.close(fd)
            if exc.errno == errno.ESRCH:
                return False
            raise
        proc.trackers.extend(opened)
        return True

    def forget(self, proc: FollowedProcess) -> None:
        for thread in self._table.pid_threads(proc.pid):
            self._close_events(self._table.remove_thread(thread.tid))
        self._close_events(self._table.events_of(proc.pid))
        for _, _, fd in proc.trackers:
            os.close(fd)
        proc.trackers.clear()
        mem = self._delivery.mem.pop(proc.pid, None)
        if mem is not None:
            mem.close()
        self._procs.pop(proc.pid, None)

    # --- CPU hotplug ---------------------------------------------------------------------
    def drop_trackers_on(self, cpu: int) -> None:
        for proc in self._procs.values():
            for _, _, fd in (t for t in proc.trackers if t[1] == cpu):
                os.close(fd)
            proc.trackers = [t for t in proc.trackers if t[1] != cpu]

    def track_on(self, cpu: int, ring: NonstopRing) -> list[Thread]:
        """Trackers on a CPU come back online; the threads that got one (the others exited)."""
        tracked: list[Thread] = []
        for proc in list(self._procs.values()):
            for thread in self._table.pid_threads(proc.pid):
                try:
                    fd = open_tracker(thread.tid, cpu)
                except OSError:
                    continue  # exited
                ring.attach(fd)
                proc.trackers.append((thread.tid, cpu, fd))
                tracked.append(thread)
        return tracked

    # --- TaskHandler: called by the delivery, in record time order -----------------------
    def on_fork(self, task: TaskRecord) -> None:
        proc = self._procs.get(task.pid)
        if proc is None or task.pid != task.ppid or task.tid == task.pid:
            return  # not ours, or a new process: not followed
        if self._table.born(task.pid, task.tid, task.ptid, task.time) is None:
            return  # seen already (listed at watch, or a duplicate record)
        self._stats.births += 1
        if proc.report:
            pid, tid = task.pid, task.tid
            self._delivery.emit(lambda sink: sink.on_thread_started(pid, tid))

    def on_exit(self, task: TaskRecord) -> None:
        proc = self._procs.get(task.pid)
        thread = self._table.threads.get(task.tid)
        if proc is None or thread is None or thread.pid != task.pid or thread.exited:
            return
        if thread.awaiting:
            # Its samples wait for its first table, and the broker learnt of its birth only
            # now: report the exit once that table is applied (or after a grace period).
            thread.exited = True
            assert self._loop is not None
            self._loop.call_later(EXIT_GRACE_S, self._exit_deadline, thread)
            return
        self.finish_exit(thread)

    def _exit_deadline(self, thread: Thread) -> None:
        if thread.pid in self._procs and self._table.threads.get(thread.tid) is thread:
            self._delivery.deliver_buffered(self._table.release_buffered(thread))
            self.finish_exit(thread)
            self._delivery.flush(defer=False)

    def finish_exit(self, thread: Thread) -> None:
        """An exited thread's end: its events closed, the broker told (if reporting)."""
        proc = self._procs.get(thread.pid)
        if proc is None:
            return
        # Losses first, while the broker still knows the thread (and the events are open).
        self._delivery.poll_lost()
        self._close_events(self._table.remove_thread(thread.tid))
        self._stats.exits += 1
        pid = proc.pid
        if proc.report:
            self._report_exit(pid, thread.tid)
        if not self._table.pid_threads(pid):
            code = zombie_exit_code(pid, self._proc_root)
            if proc.report:
                self._delivery.emit(lambda sink: sink.on_process_exited(pid, code))
            self.forget(proc)

    def _report_exit(self, pid: int, tid: int) -> None:
        self._delivery.emit(lambda sink: sink.on_thread_exited(pid, tid, -1))

    def on_exec(self, task: TaskRecord) -> None:
        proc = self._procs.get(task.pid)
        if proc is None:
            return
        pid = task.pid
        # The kernel dropped our breakpoints (remove_on_exec); the old address space is gone.
        self._delivery.poll_lost()
        for thread in self._table.pid_threads(pid):
            self._close_events(self._table.remove_thread(thread.tid))
            if thread.tid != pid and proc.report:
                self._report_exit(pid, thread.tid)
        self._close_events(self._table.events_of(pid))
        self._table.add_thread(pid, pid)
        mem = self._delivery.mem.get(pid)
        if mem is not None:
            mem.close()  # it would still read the old image
        if proc.report:
            self._delivery.emit(lambda sink: sink.on_process_exec(pid))
