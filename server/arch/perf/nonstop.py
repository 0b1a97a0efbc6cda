"""NonstopMechanism: user-space watchpoints that never stop the target (perf, no ptrace).

A thread's non-stop slot is armed by one sampling breakpoint event per
online CPU, opened on the thread with ``inherit`` (``nonstop_events``): its
later threads carry copies from birth, so nothing they do is missed while the
broker has not written their tables yet, and nothing here ever stops or traces
the target, so gdb (or anything) can trace it at the same time. Samples land in
one ring per CPU; hits are attributed by (event id, tid) (``nonstop_table``)
and delivered with values read from ``/proc/PID/mem`` after the access
(``values_late``).

Threads are followed without ptrace by per-CPU dummy "tracker" events with
``task``/``comm_exec``: their FORK/EXIT/COMM records tell births (kept for the
inheritance bookkeeping, and reported when ``report_threads``), exits and
execs. New *processes* (fork) are not followed.

CPU hotplug: a CPU-bound event is dead for good once its CPU went offline, so
a CPU coming back gets a fresh ring, trackers and events for every routed
slot (inherited copies are made at clone time only, so adopters get their own).
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from hwbkptd.arch.perf.caps import PerfCaps, detect_caps
from hwbkptd.arch.perf.cpus import CPU_ONLINE, CpuMonitor, read_online
from hwbkptd.arch.perf.nonstop_arming import Armer
from hwbkptd.arch.perf.nonstop_delivery import NonstopDelivery, NonstopStats
from hwbkptd.arch.perf.nonstop_events import (
    open_tracker,
)
from hwbkptd.arch.perf.nonstop_rings import RingSet
from hwbkptd.arch.perf.nonstop_table import Event, NonstopTable, Thread
from hwbkptd.arch.perf.percpu import errno_text
from hwbkptd.arch.perf.procmem import ProcMem, list_tasks, zombie_exit_code
from hwbkptd.arch.perf.ring import TaskRecord
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from hwbkptd.core.mechanism import MechanismInfo, MechanismSink, Refusal, SlotWrite

__all__ = ["NonstopMechanism", "NonstopStats"]

_log = structlog.get_logger("hwbkptd.perf")

#: How long an exited newborn waits for its first table before its exit is reported.
_EXIT_GRACE_S = 2.0

_NOTES = (
    "new processes (fork) are not followed, only the threads of a watched process",
    "values are read from /proc/PID/mem after the access (values_late)",
    "accesses made by the kernel on the thread's behalf (system calls) are not seen",
)


@dataclass(slots=True)
class _Proc:
    pid: int
    report: bool
    #: (tid, cpu, fd) of the tracker events opened on the process's threads.
    trackers: list[tuple[int, int, int]] = field(default_factory=list)


class NonstopMechanism:
    """Non-stop watch tables of watched processes, armed with inherited perf events."""

    name = "perf-nonstop"
    #: What turns ring contents into hits and arms tables (the BPF mechanism swaps them).
    delivery_type: type[NonstopDelivery] = NonstopDelivery
    armer_type: type[Armer] = Armer

    def __init__(
        self,
        *,
        caps: PerfCaps | None = None,
        ring_pages: int = 64,
        proc: Path = Path("/proc"),
        online_path: Path = CPU_ONLINE,
    ) -> None:
        self.caps = caps if caps is not None else detect_caps()
        self._proc_root = proc
        self._online_path = online_path
        self._monitor = CpuMonitor(self._cpu_online, self._cpu_offline, online_path=online_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._table = NonstopTable()
        self._procs: dict[int, _Proc] = {}
        self.stats = NonstopStats()
        self._delivery = self.delivery_type(self._table, self.stats, self)
        self._ringset = RingSet(ring_pages, self._delivery, self.stats, self._open_events)
        self._rings = self._ringset.rings
        self._armer = self.armer_type(
            self._table,
            self._rings,
            self.stats,
            self._ringset.attach_breakpoint,
            self._delivery.poll_lost,
        )

    # --- interface ---------------------------------------------------------------
    def info(self) -> MechanismInfo:
        caps = self.caps
        reason = ""
        if not (caps.perf_events and caps.breakpoint_pmu):
            reason = caps.cpu_wide_reason
        elif not caps.cpu_wide_allowed:
            # The per-CPU rings are CPU-wide events: CAP_PERFMON or paranoid <= 0.
            reason = f"non-stop watches need per-CPU perf rings: {caps.cpu_wide_reason}"
        notes = list(_NOTES)
        if self._loop is not None and not self._monitor.following:
            notes.append(f"CPU hotplug: not followed ({self._monitor.reason})")
        return MechanismInfo(self.name, available=not reason, reason=reason, notes=tuple(notes))

    def start(self, sink: MechanismSink) -> None:
        self._loop = asyncio.get_running_loop()
        self._delivery.start(sink, self._loop)
        self._ringset.start(self._loop)
        self._monitor.start(self._loop)

    async def watch(self, pid: int, *, report_threads: bool) -> tuple[int, ...]:
        self._started()
        known = self._procs.get(pid)
        if known is not None:
            self._ringset.drain(defer=True)
            known.report = report_threads
            return self._tids(pid)
        if pid <= 0:
            raise InvalidArgument("pid", f"must be a process id, not {pid}")
        self._check_process(pid)
        if not self._rings:
            online = self._monitor.online if self._monitor.following else None
            try:
                self._ringset.open_all(online or read_online(self._online_path))
            except OSError as exc:
                raise FailedPrecondition(f"cannot open perf rings: {errno_text(exc)}") from exc
        proc = _Proc(pid, report_threads)
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
            self._forget(proc)
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise PermissionDenied(f"cannot follow process {pid}: {errno_text(exc)}") from exc
            raise FailedPrecondition(f"cannot follow process {pid}: {errno_text(exc)}") from exc
        if not self._tids(pid):
            self._forget(proc)
            raise NotFound("pid", f"process {pid} is gone")
        return self._tids(pid)

    def watching(self, pid: int) -> bool:
        return pid in self._procs

    async def unwatch(self, pid: int) -> None:
        await self._ringset.wait_for_moves()
        proc = self._procs.get(pid)
        if proc is None:
            return
        self._ringset.drain(defer=True)
        self._forget(proc)
        self._table.forget_retired()
        self._delivery.flush(defer=True)

    async def apply(self, writes: Sequence[SlotWrite]) -> Sequence[Refusal]:
        self._started()
        for write in writes:
            if write.tid <= 0:
                raise FailedPrecondition("the non-stop mechanism has no CPU context table")
        # From here on nothing awaits: the table is applied in one go.
        await self._ringset.wait_for_moves()
        now = time.monotonic_ns()
        self._ringset.drain(defer=True)
        refusals: list[Refusal] = []
        for write in writes:
            if write.pid not in self._procs:
                try:
                    await self.watch(write.pid, report_threads=False)
                except NotFound:
                    continue  # gone: nothing to arm
            thread = self._table.threads.get(write.tid)
            if thread is None:
                if write.tid not in list_tasks(write.pid, self._proc_root):
                    continue  # exited; its EXIT record is on the way
                thread = self._table.add_thread(write.pid, write.tid)
                assert thread is not None
            refusals.extend(self._apply_table(thread, write, now))
        self._ringset.drain(defer=True)
        self._table.forget_retired()
        return tuple(refusals)

    async def read_memory(self, pid: int, address: int, length: int) -> bytes:
        mem = self._delivery.mem.get(pid) or ProcMem(pid, self._proc_root)
        try:
            return mem.read(address, length)
        except OSError as exc:
            raise FailedPrecondition(
                f"cannot read {length} bytes at {address:#x} in process {pid}: {exc.strerror}"
            ) from exc
        finally:
            if pid not in self._delivery.mem:
                mem.close()

    async def close(self) -> None:
        await self._ringset.wait_for_moves()
        if self._loop is not None:
            self._ringset.drain(defer=False)
        for proc in list(self._procs.values()):
            self._forget(proc)
        self._table.forget_retired()
        self._ringset.close()
        self._ringset.shutdown()
        self._monitor.close()

    # --- introspection -------------------------------------------------------------
    def open_fds(self) -> int:
        """Perf descriptors held: breakpoint events, trackers and one ring per CPU."""
        return self.breakpoint_fds() + self.tracker_fds() + len(self._rings)

    def breakpoint_fds(self) -> int:
        return sum(1 for e in self._table.ids.values() if not e.closed)

    def tracker_fds(self) -> int:
        return sum(len(p.trackers) for p in self._procs.values())

    def slot_cpus(self, tid: int, pool: str, index: int) -> frozenset[int]:
        thread = self._table.threads.get(tid)
        slot = thread.slots.get((pool, index)) if thread else None
        return frozenset(slot.events) if slot else frozenset()

    def drain(self) -> None:
        """Read every ring now and deliver what it held."""
        self._ringset.drain(defer=False)

    @property
    def batched(self) -> bool:
        """Breakpoint events write into the batched rings (hits are coming fast)."""
        return self._ringset.batched

    @property
    def ticking(self) -> bool:
        """The rings are read on a timer (none runs while hits are rare)."""
        return self._ringset.ticking

    def _open_events(self) -> list[tuple[int, int]]:
        return [(e.cpu, e.fd) for e in self._table.ids.values() if not e.closed]

    async def wait_cpu_stable(self) -> bool:
        return await self._monitor.wait_synced()

    def _apply_table(self, thread: Thread, write: SlotWrite, now: int) -> list[Refusal]:
        refusals = self._armer.apply_table(thread, write, now)
        if thread.awaiting:
            self._delivery.deliver_buffered(self._table.release_buffered(thread))
        if thread.exited:
            proc = self._procs.get(thread.pid)
            if proc is not None:
                self._finish_exit(proc, thread)
        return refusals

    def _close_events(self, events: Sequence[Event]) -> None:
        self._armer.close_events(events)

    # --- processes and threads -----------------------------------------------------------
    def _started(self) -> None:
        if self._loop is None:
            raise FailedPrecondition("perf-nonstop mechanism not started")

    def _tids(self, pid: int) -> tuple[int, ...]:
        return tuple(sorted(t.tid for t in self._table.pid_threads(pid)))

    def _check_process(self, pid: int) -> None:
        try:
            status = (self._proc_root / str(pid) / "status").read_text()
        except OSError:
            raise NotFound("pid", f"no process {pid}") from None
        for line in status.splitlines():
            if line.startswith("Tgid:"):
                tgid = int(line.split()[1])
                if tgid != pid:
                    raise NotFound("pid", f"{pid} is a thread of process {tgid}, not a process")

    def _track(self, proc: _Proc, tid: int) -> bool:
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

    def _forget(self, proc: _Proc) -> None:
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

    # TaskHandler: called by the delivery, in record time order.
    def on_fork(self, task: TaskRecord) -> None:
        proc = self._procs.get(task.pid)
        if proc is None or task.pid != task.ppid or task.tid == task.pid:
            return  # not ours, or a new process: not followed
        if self._table.born(task.pid, task.tid, task.ptid, task.time) is None:
            return  # seen already (listed at watch, or a duplicate record)
        self.stats.births += 1
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
            self._loop.call_later(_EXIT_GRACE_S, self._exit_deadline, thread)
            return
        self._finish_exit(proc, thread)

    def _exit_deadline(self, thread: Thread) -> None:
        proc = self._procs.get(thread.pid)
        if proc is not None and self._table.threads.get(thread.tid) is thread:
            self._delivery.deliver_buffered(self._table.release_buffered(thread))
            self._finish_exit(proc, thread)
            self._delivery.flush(defer=False)

    def _finish_exit(self, proc: _Proc, thread: Thread) -> None:
        # Losses first, while the broker still knows the thread (and the events are open).
        self._delivery.poll_lost()
        self._close_events(self._table.remove_thread(thread.tid))
        self.stats.exits += 1
        pid = proc.pid
        if proc.report:
            self._report_exit(pid, thread.tid)
        if not self._table.pid_threads(pid):
            code = zombie_exit_code(pid, self._proc_root)
            if proc.report:
                self._delivery.emit(lambda sink: sink.on_process_exited(pid, code))
            self._forget(proc)

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

    # --- CPU hotplug ----------------------------------------------------------------
    def _cpu_offline(self, cpu: int) -> None:
        if cpu not in self._rings:
            return
        self._ringset.drain(defer=False)
        self._close_events([e for e in self._table.ids.values() if e.cpu == cpu])
        for proc in self._procs.values():
            for _, _, fd in (t for t in proc.trackers if t[1] == cpu):
                os.close(fd)
            proc.trackers = [t for t in proc.trackers if t[1] != cpu]
        self._ringset.close([cpu])
        self._table.forget_retired()
        _log.info("nonstop_cpu_offline", cpu=cpu)

    def _cpu_online(self, cpu: int) -> None:
        if not self._procs or cpu in self._rings:
            return
        try:
            ring = self._ringset.open(cpu)
        except OSError as exc:
            _log.warning("nonstop_ring_failed", cpu=cpu, error=errno_text(exc))
            return
        lost: list[Refusal] = []
        for proc in list(self._procs.values()):
            for thread in self._table.pid_threads(proc.pid):
                try:
                    fd = open_tracker(thread.tid, cpu)
                except OSError:
                    continue  # exited
                ring.attach(fd)
                proc.trackers.append((thread.tid, cpu, fd))
                for key, slot in sorted(thread.slots.items()):
                    reason = self._armer.arm(thread, slot, frozenset((cpu,)))
                    if reason:
                        # No longer on every CPU: off everywhere, and the broker is told.
                        self._close_events(self._table.unlink(slot))
                        del thread.slots[key]
                        lost.append(Refusal(thread.tid, key[0], key[1], slot.gens[-1], reason))
        self._table.forget_retired()
        _log.info("nonstop_cpu_online", cpu=cpu, refused=len(lost))
        if lost:
            self._delivery.emit(lambda sink: sink.on_refusals(lost))
            self._delivery.flush(defer=False)
