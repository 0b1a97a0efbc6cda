"""BpfNotifyMechanism: NOTIFY watches with exact values, no thread ever stopped.

The non-stop mechanism's events (one inherited breakpoint event per CPU per
slot, trackers following births, exits and exec, CPU hotplug; see
``hwbkptd.arch.perf.nonstop``), each carrying the BPF hit program through a
link whose cookie is the event's id (``BpfArmer``). The program reads the
watched bytes at the trap and writes a record into one BPF ring buffer, read
on the event loop (``BpfDelivery``).

Wake-ups adapt as the non-stop rings do: the program wakes the reader per
record while hits are rare (latency); once a read finds ``BUSY_RECORDS`` or
more, it stops waking it (``BPF_RB_NO_WAKEUP``) and a timer drains the ring every
``TICK_S`` until a tick finds fewer than ``QUIET_RECORDS`` (throughput: a
wake-up is an interrupt-work IPI, costly in a VM). Not "until a tick finds it
empty": at 1,000 hits/s every 1 ms tick finds one, so one stall of the loop (a
burst, a binary read) kept a steady rate on the timer for good, at about 1 ms
of latency instead of 0.3.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from hwbkptd.arch.bpf.delivery import BpfDelivery
from hwbkptd.arch.bpf.keys import BpfKeys, KeyInfo
from hwbkptd.arch.bpf.pipe import HitPipe
from hwbkptd.arch.perf.caps import PerfCaps
from hwbkptd.arch.perf.cpus import CPU_ONLINE
from hwbkptd.arch.perf.nonstop import NonstopMechanism
from hwbkptd.arch.perf.nonstop_arming import Armer
from hwbkptd.arch.perf.nonstop_table import Event, Thread, ThreadSlot
from hwbkptd.core.mechanism import MechanismInfo, MechanismSink, Refusal, SlotWrite
from hwbkptd.core.model import Chunk

__all__ = ["BUSY_RECORDS", "QUIET_RECORDS", "TICK_S", "BpfArmer", "BpfNotifyMechanism"]

BUSY_RECORDS = 32
TICK_S = 0.001
#: A tick that finds fewer (under about 4,000 hits/s): back to a wake-up per record.
QUIET_RECORDS = 4
#: While some slot filters in the kernel: how often its hit count is brought up to date.
COUNT_SYNC_S = 0.05

_NOTES = (
    "values are read by a BPF program at the trap (exact); no thread is ever stopped",
    "needs CAP_BPF and CAP_PERFMON (or root)",
    "new processes (fork) are not followed, only the threads of a watched process",
    "accesses made by the kernel on the thread's behalf (system calls) are not seen",
)


class BpfArmer(Armer):
    """The non-stop armer; every event it opens carries the hit program."""

    keys: BpfKeys | None = None
    _arming: ThreadSlot | None = None

    def bind(self, keys: BpfKeys) -> None:
        self.keys = keys

    def apply_table(self, thread: Thread, write: SlotWrite, now: int) -> list[Refusal]:
        refusals = super().apply_table(thread, write, now)
        if self.keys is not None:
            for slot in thread.slots.values():
                self.keys.refresh(thread.tid, slot)
        return refusals

    def arm(
        self, thread: Thread, slot: ThreadSlot, cpus: frozenset[int], retry: bool = True
    ) -> str:
        outer, self._arming = self._arming, slot
        try:
            return super().arm(thread, slot, cpus, retry)
        finally:
            self._arming = outer

    def open_event(self, tid: int, pid: int, chunk: Chunk, cpu: int) -> Event:
        event = super().open_event(tid, pid, chunk, cpu)
        keys = self.keys
        if keys is None:
            return event
        slot = self._slot_of(tid, chunk)
        info: KeyInfo | None = None
        try:
            if slot is None:
                raise OSError(0, f"no slot of thread {tid} watches {chunk}")
            info = keys.acquire(pid, tid, slot)
            link = keys.pipe.attach(event.fd, event.id, info.key)
        except (OSError, IndexError) as exc:
            if info is not None:
                keys.release(info)
            os.close(event.fd)
            if isinstance(exc, OSError):
                raise
            raise OSError(28, str(exc)) from exc  # ENOSPC: every key in use
        keys.links[event.id] = (link, info)
        return event

    def _slot_of(self, tid: int, chunk: Chunk) -> ThreadSlot | None:
        arming = self._arming
        if arming is not None and arming.tid == tid and arming.entry.chunk == chunk:
            return arming
        thread = self.table.threads.get(tid)
        for slot in thread.slots.values() if thread is not None else ():
            if slot.entry.chunk == chunk:
                return slot
        return None

    def close_events(self, events: Sequence[Event]) -> None:
        keys = self.keys
        if keys is not None:
            for event in events:
                link = keys.links.pop(event.id, None) if not event.closed else None
                if link is not None:
                    keys.pipe.detach(event.id, link[0])
                    keys.release(link[1])
        super().close_events(events)


class BpfNotifyMechanism(NonstopMechanism):
    """Non-stop tables whose hits carry exact values (see the module doc)."""

    name = "bpf"
    delivery_type = BpfDelivery
    armer_type = BpfArmer

    def __init__(
        self,
        *,
        caps: PerfCaps | None = None,
        pipe: HitPipe | None = None,
        ring_pages: int = 64,
        proc: Path = Path("/proc"),
        online_path: Path = CPU_ONLINE,
    ) -> None:
        super().__init__(caps=caps, ring_pages=ring_pages, proc=proc, online_path=online_path)
        self.pipe = pipe if pipe is not None else HitPipe()
        self.keys = BpfKeys(self.pipe)
        delivery = self._delivery
        assert isinstance(delivery, BpfDelivery)
        self._bpf_delivery: BpfDelivery = delivery
        assert isinstance(self._armer, BpfArmer)
        self._bpf_delivery.bind(self.keys)
        self._armer.bind(self.keys)
        self._tick: asyncio.TimerHandle | None = None
        self._sync: asyncio.TimerHandle | None = None
        self.bpf_wakeups = 0

    def info(self) -> MechanismInfo:
        base = super().info()
        return MechanismInfo(self.name, base.available, base.reason, _NOTES)

    def start(self, sink: MechanismSink) -> None:
        super().start(sink)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.maps.ring, self._readable)

    async def apply(self, writes: Sequence[SlotWrite]) -> Sequence[Refusal]:
        refusals = await super().apply(writes)
        self._schedule_sync()
        return refusals

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            loop = asyncio.get_running_loop()
            if not loop.is_closed():
                loop.remove_reader(self.pipe.maps.ring)
            for timer in (self._tick, self._sync):
                if timer is not None:
                    timer.cancel()
            self._tick = self._sync = None
            self.pipe.close()

    @property
    def batched(self) -> bool:
        """The program stopped waking the reader: a timer drains the ring."""
        return self._tick is not None

    # --- reading -------------------------------------------------------------------
    @property
    def bpf_records(self) -> int:
        """Records read from the BPF ring so far."""
        return self._bpf_delivery.records_total

    def _read(self) -> int:
        self.drain()
        return self._bpf_delivery.last_read

    def _readable(self) -> None:
        if self._read() >= BUSY_RECORDS and self._tick is None:
            self.pipe.set_wakeup(False)
            self._tick = asyncio.get_running_loop().call_later(TICK_S, self._ticked)

    def _ticked(self) -> None:
        self.bpf_wakeups += 1
        if self._read() >= QUIET_RECORDS:
            self._tick = asyncio.get_running_loop().call_later(TICK_S, self._ticked)
            if self.bpf_wakeups % 16 == 0:
                self.keys.check_dropped()
            return
        # Quiet: wake per record again, then read what came in before the switch.
        self._tick = None
        self.pipe.set_wakeup(True)
        self._read()
        self._count_filtered()

    def _count_filtered(self) -> None:
        self._bpf_delivery.count_filtered()
        self._bpf_delivery.flush(defer=False)

    def _schedule_sync(self) -> None:
        if self._sync is None and self.keys.filtered():
            self._sync = asyncio.get_running_loop().call_later(COUNT_SYNC_S, self._synced)

    def _synced(self) -> None:
        self._sync = None
        if self._tick is None:
            self._read()
        self._count_filtered()
        self._schedule_sync()
