"""The non-stop delivery (no perf): record order, hits, values, losses, deferred delivery."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Sequence

import pytest

from hwbkptd.arch.perf.nonstop_delivery import NonstopDelivery, NonstopStats
from hwbkptd.arch.perf.nonstop_table import Event, NonstopTable, ThreadSlot
from hwbkptd.arch.perf.procmem import ProcMem
from hwbkptd.arch.perf.ring import RECORD_EXIT, RECORD_FORK, Batch, Sample, TaskRecord
from hwbkptd.core.mechanism import HitReport, Refusal, SlotEntry
from hwbkptd.core.model import Access, Chunk

PID = 100
CHUNK = Chunk("dr", 0x1000, 8, Access.WRITE)
#: CLOCK_REALTIME - CLOCK_MONOTONIC, where a test holds it still.
WALL = 1_700_000_000 * 10**9


class Log:
    """A MechanismSink and TaskHandler writing everything into one ordered log."""

    def __init__(self, table: NonstopTable) -> None:
        self.table = table
        self.log: list[tuple[object, ...]] = []

    def on_fork(self, task: TaskRecord) -> None:
        self.log.append(("fork", task.tid))
        self.table.born(task.pid, task.tid, task.ptid, task.time)

    def on_exit(self, task: TaskRecord) -> None:
        self.log.append(("exit", task.tid))
        self.table.remove_thread(task.tid)

    def on_exec(self, task: TaskRecord) -> None:
        self.log.append(("exec", task.pid))

    def on_hits(self, hits: Sequence[HitReport]) -> None:
        self.log.append(("hits", tuple(h.tid for h in hits)))

    def on_hits_lost(self, tid: int, count: int) -> None:
        self.log.append(("lost", tid, count))

    def on_thread_started(self, pid: int, tid: int) -> None: ...

    def on_thread_exited(self, pid: int, tid: int, exit_code: int) -> None: ...

    def on_process_exited(self, pid: int, exit_code: int) -> None: ...

    def on_process_exec(self, pid: int) -> None: ...

    def on_refusals(self, refusals: Sequence[Refusal]) -> None: ...


class FakeMem(ProcMem):
    def __init__(self, value: int) -> None:
        super().__init__(PID)
        self.value = value
        self.reads = 0

    def read(self, address: int, length: int) -> bytes:
        self.reads += 1
        if self.value < 0:
            raise OSError(5, "gone")
        return self.value.to_bytes(length, "little")


def setup() -> tuple[NonstopTable, Log, NonstopDelivery, NonstopStats, Event]:
    table = NonstopTable()
    log = Log(table)
    stats = NonstopStats()
    delivery = NonstopDelivery(table, stats, log)
    table.add_thread(PID, PID)
    ev = Event(7, 70, 0, PID, PID, CHUNK, opened_ns=10)
    table.add_event(ev)
    slot = ThreadSlot(PID, "dr", 2, SlotEntry(CHUNK, regions=((0x1000, 8),)))
    slot.hold(0, 5)
    table.link(slot, 0, ev)
    table.threads[PID].slots[("dr", 2)] = slot
    return table, log, delivery, stats, ev


def s(tid: int, t: int, eid: int = 7) -> Sample:
    return Sample(eid, 0x400000, PID, tid, t, 0x1000, 0)


async def test_births_before_samples_before_exits_across_rings() -> None:
    _, log, delivery, stats, _ = setup()
    delivery.start(log, asyncio.get_running_loop())
    fork = TaskRecord(RECORD_FORK, PID, PID, 101, PID, 20)
    exit_ = TaskRecord(RECORD_EXIT, PID, PID, 101, 101, 40)
    # CPU 1's ring holds the child's sample and exit; CPU 0's its birth.
    batches = [
        (1, Batch(samples=[s(101, 30)], tasks=[exit_])),
        (0, Batch(samples=[s(PID, 25)], tasks=[fork])),
    ]
    delivery.take(batches)
    delivery.flush(defer=False)
    # Handlers run at once, sink calls at the flush. The child's sample was taken after its
    # birth (buffered, not a stray: it has no table yet) and before its exit.
    assert log.log == [("fork", 101), ("exit", 101), ("hits", (PID,))]
    assert stats.samples == 1
    assert stats.strays == 0


async def test_hits_carry_late_values_read_once_per_read() -> None:
    _, log, delivery, _, _ = setup()
    delivery.start(log, asyncio.get_running_loop())
    mem = FakeMem(42)
    delivery.mem[PID] = mem
    hits: list[HitReport] = []
    log.on_hits = hits.extend  # type: ignore[method-assign]
    delivery.take([(0, Batch(samples=[s(PID, 1), s(PID, 2), s(PID, 3)]))])
    delivery.flush(defer=False)
    assert [h.values for h in hits] == [((42).to_bytes(8, "little"),)] * 3
    assert mem.reads == 1
    h = hits[0]
    assert (h.pid, h.tid, h.pool, h.index, h.generation, h.values_late) == (
        PID,
        PID,
        "dr",
        2,
        5,
        True,
    )
    mem.value = -1  # the process is gone: no values, still a hit
    delivery.take([(0, Batch(samples=[s(PID, 4)]))])
    delivery.flush(defer=False)
    assert hits[-1].values == ()


async def test_lost_records_name_the_last_thread_seen_on_that_cpu() -> None:
    table, log, delivery, stats, _ = setup()
    delivery.start(log, asyncio.get_running_loop())
    delivery.take([(0, Batch(samples=[s(PID, 1)], lost=3))])
    delivery.take([(0, Batch(lost=2))])  # no sample in this read: the CPU's last one
    delivery.take([(1, Batch(lost=4))])  # nothing seen on CPU 1: a thread holding a slot
    delivery.flush(defer=False)
    assert [e for e in log.log if e[0] == "lost"] == [
        ("lost", PID, 3),
        ("lost", PID, 2),
        ("lost", PID, 4),
    ]
    assert stats.lost == 9
    table.remove_thread(PID)
    delivery.take([(1, Batch(lost=1))])  # no thread at all: counted only
    delivery.flush(defer=False)
    assert stats.lost == 10
    assert log.log[-1] == ("lost", PID, 4)


async def test_deferred_delivery_waits_for_the_next_loop_turn_and_keeps_order() -> None:
    _, log, delivery, _, _ = setup()
    delivery.start(log, asyncio.get_running_loop())
    delivery.take([(0, Batch(samples=[s(PID, 1)]))])
    delivery.flush(defer=True)
    delivery.take([(0, Batch(samples=[s(PID, 2)]))])
    delivery.flush(defer=True)
    assert log.log == []
    await asyncio.sleep(0)
    assert log.log == [("hits", (PID,)), ("hits", (PID,))]
    delivery.take([(0, Batch(samples=[s(PID, 3)]))])
    delivery.flush(defer=True)
    delivery.take([(0, Batch(samples=[s(PID, 4)]))])
    delivery.flush(defer=False)  # a reader's read delivers what apply deferred first
    assert len(log.log) == 4
    await asyncio.sleep(0)
    assert len(log.log) == 4


async def test_buffered_samples_become_hits() -> None:
    table, log, delivery, stats, ev = setup()
    delivery.start(log, asyncio.get_running_loop())
    delivery.take([(0, Batch(tasks=[TaskRecord(RECORD_FORK, PID, PID, 101, PID, 20)]))])
    delivery.take([(0, Batch(samples=[s(101, 30), s(101, 31)]))])
    child = table.threads[101]
    assert len(child.buffer) == 2
    slot = ThreadSlot(101, "dr", 0, SlotEntry(CHUNK))
    slot.hold(100, 9)
    table.link(slot, 0, ev)
    delivery.deliver_buffered(table.release_buffered(child))
    delivery.flush(defer=False)
    assert log.log[-1] == ("hits", (101, 101))
    assert stats.samples == 2


class Counter:
    """A real fd that reads like an event opened with PERF_FORMAT_LOST (a pipe)."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()

    def lost(self, total: int) -> None:
        os.write(self.w, struct.pack("=QQ", 0, total))

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


async def test_kernel_loss_counters_are_reported_not_lost_records() -> None:
    table, log, delivery, stats, ev = setup()
    delivery.start(log, asyncio.get_running_loop())
    counter = Counter()
    ev.fd, ev.counts_lost = counter.r, True
    try:
        # A LOST record says "look": the counter has the samples (records of any kind
        # are only counted, they may be FORK/EXIT records).
        counter.lost(5)
        delivery.take([(0, Batch(samples=[s(PID, 1)], lost=9))])
        # No record at all after a burst: a poll still finds the loss.
        counter.lost(12)
        delivery.poll_lost()
        counter.lost(12)
        delivery.poll_lost()  # nothing new
        delivery.flush(defer=False)
        assert [e for e in log.log if e[0] == "lost"] == [("lost", PID, 5), ("lost", PID, 7)]
        assert (stats.lost, stats.lost_records) == (12, 9)
        # An adopter routed through the event, its owner gone: the adopter is told.
        table.threads[PID].slots.clear()
        table.add_thread(PID, 101)
        slot = ThreadSlot(101, "dr", 0, SlotEntry(CHUNK))
        table.unlink(next(iter(table.route.values())))
        table.link(slot, 0, ev)
        table.threads[101].slots[("dr", 0)] = slot
        counter.lost(13)
        delivery.poll_lost([ev])
        delivery.flush(defer=False)
        assert log.log[-1] == ("lost", 101, 1)
    finally:
        counter.close()


async def test_samples_of_several_rings_are_handled_in_time_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("hwbkptd.arch.perf.nonstop_delivery.wall_offset_ns", lambda: WALL)
    _, log, delivery, _, _ = setup()
    delivery.start(log, asyncio.get_running_loop())
    hits: list[HitReport] = []
    log.on_hits = hits.extend  # type: ignore[method-assign]
    delivery.take([(0, Batch(samples=[s(PID, 1), s(PID, 4)])), (1, Batch(samples=[s(PID, 2)]))])
    delivery.flush(defer=False)
    assert [h.time_ns - WALL for h in hits] == [1, 2, 4]


async def test_a_hit_report_carries_every_field_of_its_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("hwbkptd.arch.perf.nonstop_delivery.wall_offset_ns", lambda: WALL)
    _, log, delivery, _, _ = setup()
    delivery.start(log, asyncio.get_running_loop())
    hits: list[HitReport] = []
    log.on_hits = hits.extend  # type: ignore[method-assign]
    delivery.take([(0, Batch(samples=[Sample(7, 0x401234, PID, PID, 77, 0x1000, 1)]))])
    delivery.flush(defer=False)
    assert hits == [
        HitReport(
            pid=PID,
            tid=PID,
            pool="dr",
            index=2,
            generation=5,
            ip=0x401234,
            address=0x1000,
            time_ns=WALL + 77,
            cpu=1,
            access=None,
            values=(),
            halted=False,
            values_late=True,
        )
    ]


async def test_item3_nonstop_hits_are_stamped_with_wall_clock_time() -> None:
    table, log, delivery, _, _ = setup()
    delivery.start(log, asyncio.get_running_loop())
    hits: list[HitReport] = []
    log.on_hits = hits.extend  # type: ignore[method-assign]
    wall_before = time.time_ns()
    mono = time.monotonic_ns()
    wall_after = time.time_ns()
    delivery.take([(0, Batch(samples=[s(PID, mono)]))])
    # A newborn's buffered sample, attributed once its first table is applied.
    delivery.deliver_buffered([(s(PID, mono), table.threads[PID].slots[("dr", 2)])])
    delivery.flush(defer=False)
    assert len(hits) == 2
    ms = 10**6  # room for a preempted reading; monotonic-as-epoch is 56 years off
    assert all(wall_before - ms <= h.time_ns <= wall_after + ms for h in hits)
