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
execs. New *processes* (fork) are not followed. Which processes are followed,
their trackers and what their task records mean are ``nonstop_procs``.

CPU hotplug: a CPU-bound event is dead for good once its CPU went offline, so
a CPU coming back gets a fresh ring, trackers and events for every routed
slot (inherited copies are made at clone time only, so adopters get their own).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from hwbkptd.arch.perf.caps import PerfCaps, detect_caps
from hwbkptd.arch.perf.cpus import CPU_ONLINE, CpuMonitor, read_online
from hwbkptd.arch.perf.nonstop_arming import Armer
from hwbkptd.arch.perf.nonstop_delivery import NonstopDelivery, NonstopStats
from hwbkptd.arch.perf.nonstop_procs import FollowedProcesses
from hwbkptd.arch.perf.nonstop_rings import RingSet
from hwbkptd.arch.perf.nonstop_table import Event, NonstopTable, Thread
from hwbkptd.arch.perf.percpu import errno_text
from hwbkptd.arch.perf.procmem import ProcMem, list_tasks
from hwbkptd.core.errors import FailedPrecondition, InvalidArgument, NotFound
from hwbkptd.core.mechanism import MechanismInfo, MechanismSink, Refusal, SlotWrite

__all__ = ["NonstopMechanism", "NonstopStats"]

_log = structlog.get_logger("hwbkptd.perf")

_NOTES = (
    "new processes (fork) are not followed, only the threads of a watched process",
    "values are read from /proc/PID/mem after the access (values_late)",
    "accesses made by the kernel on the thread's behalf (system calls) are not seen",
)


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
        self.stats = NonstopStats()
        self._procs = FollowedProcesses(self._table, self.stats, proc)
        self._delivery = self.delivery_type(self._table, self.stats, self._procs)
        self._ringset = RingSet(ring_pages, self._delivery, self.stats, self._open_events)
        self._rings = self._ringset.rings
        self._armer = self.armer_type(
            self._table,
            self._rings,
            self.stats,
            self._ringset.attach_breakpoint,
            self._delivery.poll_lost,
        )
        self._procs.connect(
            delivery=self._delivery, rings=self._rings, close_events=self._armer.close_events
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
        self._procs.start(self._loop)

    async def watch(self, pid: int, *, report_threads: bool) -> tuple[int, ...]:
        self._started()
        known = self._procs.get(pid)
        if known is not None:
            self._ringset.drain(defer=True)
            known.report = report_threads
            return self._procs.tids(pid)
        if pid <= 0:
            raise InvalidArgument("pid", f"must be a process id, not {pid}")
        self._procs.check_process(pid)
        if not self._rings:
            online = self._monitor.online if self._monitor.following else None
            try:
                self._ringset.open_all(online or read_online(self._online_path))
            except OSError as exc:
                raise FailedPrecondition(f"cannot open perf rings: {errno_text(exc)}") from exc
        return self._procs.follow(pid, report_threads)

    def watching(self, pid: int) -> bool:
        return pid in self._procs

    def follows_alone(self, pid: int) -> bool:
        """Watched with ``report_threads``: followed for non-stop watches only (no ptrace)."""
        proc = self._procs.get(pid)
        return proc is not None and proc.report

    async def unwatch(self, pid: int) -> None:
        await self._ringset.wait_for_moves()
        proc = self._procs.get(pid)
        if proc is None:
            return
        self._ringset.drain(defer=True)
        self._procs.forget(proc)
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
        for proc in self._procs:
            self._procs.forget(proc)
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
        return self._procs.tracker_fds()

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
            self._procs.finish_exit(thread)
        return refusals

    def _close_events(self, events: Sequence[Event]) -> None:
        self._armer.close_events(events)

    # --- processes and threads -----------------------------------------------------------
    def _started(self) -> None:
        if self._loop is None:
            raise FailedPrecondition("perf-nonstop mechanism not started")

    # --- CPU hotplug ----------------------------------------------------------------
    def _cpu_offline(self, cpu: int) -> None:
        if cpu not in self._rings:
            return
        self._ringset.drain(defer=False)
        self._close_events([e for e in self._table.ids.values() if e.cpu == cpu])
        self._procs.drop_trackers_on(cpu)
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
        for thread in self._procs.track_on(cpu, ring):
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
