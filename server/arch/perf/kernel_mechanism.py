"""KernelPerfMechanism: the CPU context table (tid 0) made real with perf breakpoint events.

Each occupied slot is one breakpoint event per online CPU (pid -1), armed on
all of them or on none (DESIGN section 2). Events sample every hit into the
CPU's ring (``percpu.CpuRing``), read with ``loop.add_reader``; one
``sink.on_hits`` batch per wake-up. CPUs that go offline lose their events for
good; a CPU that comes back is armed with every installed slot inside the
uevent callback, before anything else runs on the loop (``wait_cpu_stable``
lets a caller wait for that).

A hit is attributed to the table generation in force when it happened: a slot
kept across rewrites remembers since when each generation holds it, and the
sample's CLOCK_MONOTONIC time picks one.

Kernel hits are reported with ``tid = CPU_CONTEXT`` (the table they belong to)
and ``pid`` = the process that was running when the kernel touched the address
(0 for the idle task). Kernel memory is not read (``values`` is empty).

A slot whose holders asked for call chains samples them (``SAMPLE_CALLCHAIN``,
kernel part only) into a second ring per CPU: the kernel walks the stack on every
hit, so only those slots pay for it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from hwbkptd.arch.perf.caps import KERNEL_EXEC_REFUSED, PerfCaps, detect_caps
from hwbkptd.arch.perf.cpus import CPU_ONLINE, CpuMonitor, read_online
from hwbkptd.arch.perf.kallsyms import Kallsyms
from hwbkptd.arch.perf.kernel_delivery import KernelDelivery, KernelSlot, KernelStats
from hwbkptd.arch.perf.percpu import (
    CHAIN_SAMPLE_TYPE,
    KERNEL_SAMPLE_TYPE,
    CpuRing,
    enable,
    errno_text,
    event_id,
    open_kernel_breakpoint,
)
from hwbkptd.arch.perf.ring import SampleFormat
from hwbkptd.core.errors import FailedPrecondition
from hwbkptd.core.mechanism import (
    MechanismInfo,
    MechanismSink,
    Refusal,
    SlotEntry,
    SlotWrite,
)
from hwbkptd.core.model import CPU_CONTEXT, Access

__all__ = ["KernelPerfMechanism"]

_log = structlog.get_logger("hwbkptd.perf")

_KERNEL_ONLY = "kernel-only mechanism: threads are handled by the ptrace mechanism"


class KernelPerfMechanism:
    """Mechanism for the CPU context table only; thread methods raise FailedPrecondition."""

    name = "perf-kernel"

    def __init__(
        self,
        *,
        caps: PerfCaps | None = None,
        kallsyms: Kallsyms | None = None,
        ring_pages: int = 32,
        online_path: Path = CPU_ONLINE,
    ) -> None:
        self.caps = caps if caps is not None else detect_caps()
        self._kallsyms = kallsyms
        self._ring_pages = ring_pages
        self._online_path = online_path
        self._monitor = CpuMonitor(self._cpu_online, self._cpu_offline, online_path=online_path)
        self._sink: MechanismSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: dict[tuple[str, int], KernelSlot] = {}
        #: (cpu, with call chains) -> ring: events sharing a ring share a sample type.
        self._rings: dict[tuple[int, bool], CpuRing] = {}
        self._ids: dict[int, KernelSlot] = {}
        self._retired: list[int] = []
        self.stats = KernelStats()
        self._formats = {t: SampleFormat(t) for t in (KERNEL_SAMPLE_TYPE, CHAIN_SAMPLE_TYPE)}
        self._delivery = KernelDelivery(self._formats[KERNEL_SAMPLE_TYPE], self.stats)

    # --- Mechanism --------------------------------------------------------------
    def info(self) -> MechanismInfo:
        notes = list(self.caps.notes())
        if self._loop is not None:
            notes.append(
                "CPU hotplug: followed through kernel uevents"
                if self._monitor.following
                else f"CPU hotplug: not followed ({self._monitor.reason})"
            )
        if self._kallsyms is None:
            notes.append("kernel hit IPs are not symbolized (/proc/kallsyms unreadable)")
        return MechanismInfo(
            name=self.name,
            available=self.caps.kernel_allowed,
            reason=self.caps.kernel_reason,
            notes=tuple(notes),
        )

    def start(self, sink: MechanismSink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        if self._kallsyms is None:
            try:
                self._kallsyms = Kallsyms.load()
            except OSError as exc:
                _log.warning("kallsyms_unreadable", error=str(exc))
        self._delivery.start(sink, self._loop, self._kallsyms)
        self._monitor.start(self._loop)

    async def apply(self, writes: Sequence[SlotWrite]) -> Sequence[Refusal]:
        table: SlotWrite | None = None
        for write in writes:
            if write.tid != CPU_CONTEXT:
                raise FailedPrecondition(_KERNEL_ONLY)
            table = write
        if table is None:
            return ()
        if self._loop is None:
            raise FailedPrecondition("perf-kernel mechanism not started")
        now = time.monotonic_ns()
        self._drain_all(defer=True)
        wanted: dict[tuple[str, int], SlotEntry] = {}
        for pool, entries in table.pools.items():
            for index, entry in enumerate(entries):
                if entry is not None:
                    wanted[(pool, index)] = entry
        # Free what changed first: a new chunk may need the slot an old one held.
        for key, slot in list(self._slots.items()):
            new = wanted.get(key)
            if new is None or (new.chunk, new.call_chain) != (
                slot.entry.chunk,
                slot.entry.call_chain,
            ):
                self._disarm(slot)
                del self._slots[key]
        refusals: list[Refusal] = []
        for key in sorted(wanted):
            entry = wanted[key]
            kept = self._slots.get(key)
            if kept is not None:
                kept.entry = entry
                kept.hold(now, table.generation)
                continue
            slot = KernelSlot(key[0], key[1], entry)
            slot.hold(now, table.generation)
            reason = self._precheck(entry) or self._arm(slot, self._cpus())
            if reason:
                refusals.append(Refusal(CPU_CONTEXT, key[0], key[1], table.generation, reason))
            else:
                self._slots[key] = slot
        self._drain_all(defer=True)
        self._forget_retired()
        if not self._slots:
            self._close_rings()
        return tuple(refusals)

    async def resume(self, tid: int) -> None:
        raise FailedPrecondition(_KERNEL_ONLY)

    async def read_memory(self, pid: int, address: int, length: int) -> bytes:
        if pid == 0:
            raise FailedPrecondition("kernel memory is not readable")
        raise FailedPrecondition(_KERNEL_ONLY)

    async def attach(
        self,
        pid: int,
        follow_fork: bool = False,
        nonstop: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Sequence[int]:
        raise FailedPrecondition(_KERNEL_ONLY)

    async def detach(self, pid: int) -> None:
        raise FailedPrecondition(_KERNEL_ONLY)

    async def launch(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, follow_fork: bool = False
    ) -> int:
        raise FailedPrecondition(_KERNEL_ONLY)

    async def release(self, pid: int) -> None:
        raise FailedPrecondition(_KERNEL_ONLY)

    async def kill_launched(self, pid: int) -> None:
        raise FailedPrecondition(_KERNEL_ONLY)

    async def close(self) -> None:
        if self._loop is not None:
            self._drain_all(defer=False)
        for slot in list(self._slots.values()):
            self._disarm(slot)
        self._slots.clear()
        self._forget_retired()
        self._close_rings()
        self._monitor.close()

    # --- for callers and tests -------------------------------------------------
    async def wait_cpu_stable(self) -> bool:
        """True once every CPU hotplug change visible in sysfs has been handled.

        Every CPU that came online has then been armed with every installed slot.
        False when hotplug is not followed. Bound it with ``asyncio.timeout``.
        """
        return await self._monitor.wait_synced()

    @property
    def kallsyms(self) -> Kallsyms | None:
        """The symbol table hit IPs are named from (loaded by ``start``), for sharing."""
        return self._kallsyms

    @property
    def online_cpus(self) -> frozenset[int]:
        return self._cpus()

    def armed_cpus(self, pool: str, index: int) -> frozenset[int]:
        """CPUs on which a slot has a live event (empty when the slot is not installed)."""
        slot = self._slots.get((pool, index))
        return frozenset(slot.events) if slot else frozenset()

    def open_fds(self) -> int:
        """Perf descriptors held: breakpoint events plus one ring per CPU in use."""
        return sum(len(s.events) for s in self._slots.values()) + len(self._rings)

    def drain(self) -> None:
        """Read every ring now and deliver what it held."""
        self._drain_all(defer=False)

    # --- arming ----------------------------------------------------------------
    def _cpus(self) -> frozenset[int]:
        if self._monitor.following:
            return self._monitor.online
        return read_online(self._online_path)

    def _precheck(self, entry: SlotEntry) -> str:
        if not self.caps.kernel_allowed:
            return self.caps.kernel_reason
        if entry.chunk.access is Access.EXEC and not self.caps.kprobes:
            return KERNEL_EXEC_REFUSED
        return ""

    def _ring(self, cpu: int, chain: bool) -> CpuRing:
        ring = self._rings.get((cpu, chain))
        if ring is None:
            sample_type = CHAIN_SAMPLE_TYPE if chain else KERNEL_SAMPLE_TYPE
            ring = CpuRing(cpu, self._ring_pages, sample_type)
            self._rings[(cpu, chain)] = ring
            assert self._loop is not None
            self._loop.add_reader(ring.fd, self._readable, ring)
        return ring

    def _arm(self, slot: KernelSlot, cpus: frozenset[int]) -> str:
        """Open the slot on ``cpus``, all or none; the refusal reason or ""."""
        opened: dict[int, tuple[int, int]] = {}
        try:
            for cpu in sorted(cpus):
                try:
                    ring = self._ring(cpu, slot.entry.call_chain)
                    fd = open_kernel_breakpoint(slot.entry.chunk, cpu, ring.sample_type)
                except OSError as exc:
                    if exc.errno == errno.ENODEV and cpu not in read_online(self._online_path):
                        continue  # went offline; its uevent is on the way
                    raise
                opened[cpu] = (fd, 0)
                ring.attach(fd)
                opened[cpu] = (fd, event_id(fd))
        except OSError as exc:
            for fd, _ in opened.values():
                os.close(fd)
            if exc.errno == errno.ENOSPC:
                return "external"
            text = errno_text(exc)
            _log.warning(
                "kernel_breakpoint_refused",
                address=hex(slot.entry.chunk.address),
                access=slot.entry.chunk.access.value,
                error=text,
            )
            return text
        for cpu, (fd, eid) in opened.items():
            slot.events[cpu] = (fd, eid)
            self._ids[eid] = slot
        for fd, _ in opened.values():
            enable(fd)
        return ""

    def _disarm(self, slot: KernelSlot, cpus: frozenset[int] | None = None) -> None:
        for cpu in list(slot.events) if cpus is None else sorted(cpus & slot.events.keys()):
            fd, eid = slot.events.pop(cpu)
            os.close(fd)
            # Samples it wrote may still sit in the ring: keep the id until it is drained.
            self._retired.append(eid)

    def _forget_retired(self) -> None:
        for eid in self._retired:
            self._ids.pop(eid, None)
        self._retired.clear()

    def _close_rings(self, cpus: frozenset[int] | None = None) -> None:
        for key in sorted(self._rings):
            if cpus is not None and key[0] not in cpus:
                continue
            ring = self._rings.pop(key)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(ring.fd)
            ring.close()

    # --- CPU hotplug -------------------------------------------------------------
    def _cpu_offline(self, cpu: int) -> None:
        for chain in (False, True):
            ring = self._rings.get((cpu, chain))
            if ring is not None:
                self._take(ring, defer=False)
        for slot in self._slots.values():
            self._disarm(slot, frozenset((cpu,)))
        self._forget_retired()
        self._close_rings(frozenset((cpu,)))
        _log.info("cpu_offline", cpu=cpu, slots=len(self._slots))

    def _cpu_online(self, cpu: int) -> None:
        lost: list[Refusal] = []
        for key, slot in sorted(self._slots.items()):
            if cpu in slot.events:
                continue
            reason = self._arm(slot, frozenset((cpu,)))
            if reason:
                # No longer on every CPU: all or nothing, so off everywhere.
                self._disarm(slot)
                del self._slots[key]
                lost.append(Refusal(CPU_CONTEXT, slot.pool, slot.index, slot.gens[-1], reason))
        self._forget_retired()
        if not self._slots:
            self._close_rings()
        _log.info("cpu_online", cpu=cpu, slots=len(self._slots), refused=len(lost))
        if lost and self._sink is not None:
            self._sink.on_refusals(lost)

    # --- reading -----------------------------------------------------------------
    def _readable(self, ring: CpuRing) -> None:
        self.stats.wakeups += 1
        self._take(ring, defer=False)

    def _take(self, ring: CpuRing, *, defer: bool) -> None:
        fmt = self._formats[ring.sample_type]
        self._delivery.take(ring.ring.read(), self._ids, defer=defer, fmt=fmt)

    def _drain_all(self, *, defer: bool) -> None:
        for ring in list(self._rings.values()):
            self._take(ring, defer=defer)
