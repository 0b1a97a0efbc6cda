"""The BPF delivery (no kernel): records of threads whose birth is not read yet wait for it."""

from __future__ import annotations

import asyncio
import struct
from typing import Any, cast

from hwbkptd.arch.bpf.delivery import UNBORN_PASSES, BpfDelivery
from hwbkptd.arch.bpf.hitprog import SlotConf
from hwbkptd.arch.bpf.keys import BpfKeys, KeyInfo
from hwbkptd.arch.bpf.pipe import HitPipe
from hwbkptd.arch.perf.nonstop_delivery import NonstopStats
from hwbkptd.arch.perf.nonstop_table import Event, NonstopTable, ThreadSlot
from hwbkptd.arch.perf.ring import RECORD_FORK, Batch, TaskRecord
from hwbkptd.core.mechanism import HitReport, SlotEntry
from hwbkptd.core.model import Access, Chunk

PID = 100
CHILD = 101
CHUNK = Chunk("dr", 0x1000, 8, Access.WRITE)
REGIONS = ((0x1000, 8),)
EVENT = 7


class Reader:
    """The BPF ring: hands out the records the test put in, once."""

    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []
        #: What the ring holds at the next read (written while the last one ran).
        self.later: list[tuple[Any, ...]] = []

    def read_batch(self, body: struct.Struct) -> tuple[list[tuple[Any, ...]], int]:
        out, self.records, self.later = self.records, self.later, []
        return out, 0


class Spill:
    """The spill map: hands out the records the test put in, once."""

    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def read(self, body: struct.Struct) -> list[tuple[Any, ...]]:
        out, self.records = self.records, []
        return out


class Pipe:
    def __init__(self) -> None:
        self.reader = Reader()
        self.spill = Spill()


class Log:
    """Sink and task handler in one: births go into the table, hits into a list."""

    def __init__(self, table: NonstopTable) -> None:
        self.table = table
        self.hits: list[HitReport] = []

    def on_fork(self, task: TaskRecord) -> None:
        self.table.born(task.pid, task.tid, task.ptid, task.time)

    def on_exit(self, task: TaskRecord) -> None: ...

    def on_exec(self, task: TaskRecord) -> None: ...

    def on_hits(self, hits: list[HitReport]) -> None:
        self.hits.extend(hits)


def record(tid: int, t: int, value: int, pid: int = PID) -> tuple[Any, ...]:
    """As ``RingbufReader.read_batch`` gives it: length word, then the record's fields."""
    raw = value.to_bytes(8, "little") + bytes(56)
    return (120, EVENT, t, tid, pid, 0, 1, 0x400000, 0x1000, 1, raw)


def setup() -> tuple[NonstopTable, Log, BpfDelivery, NonstopStats, Pipe]:
    table = NonstopTable()
    log = Log(table)
    stats = NonstopStats()
    delivery = BpfDelivery(table, stats, log)
    table.add_thread(PID, PID)
    event = Event(EVENT, 70, 0, PID, PID, CHUNK, opened_ns=10)
    table.add_event(event)
    slot = ThreadSlot(PID, "dr", 2, SlotEntry(CHUNK, regions=REGIONS))
    slot.hold(0, 5)
    table.link(slot, 0, event)
    table.threads[PID].slots[("dr", 2)] = slot
    pipe = Pipe()
    keys = BpfKeys(cast(HitPipe, pipe))
    info = KeyInfo(1, PID, (PID, CHUNK), SlotConf(REGIONS), slot)
    keys.links[EVENT] = (71, info)
    delivery.bind(keys)
    return table, log, delivery, stats, pipe


async def test_a_newborns_record_read_before_its_birth_waits_for_it() -> None:
    """The clone wrote the birth into CPU 0's perf ring after that ring was read; the
    child's first hit was in the BPF ring, read after: it waits, then is the child's."""
    table, log, delivery, stats, pipe = setup()
    delivery.start(cast(Any, log), asyncio.get_running_loop())
    pipe.reader.records = [record(PID, 15, 1), record(CHILD, 30, 2)]
    delivery.take([])
    delivery.flush(defer=False)
    assert [(h.tid, h.values) for h in log.hits] == [(PID, ((1).to_bytes(8, "little"),))]
    assert stats.strays == 0
    fork = TaskRecord(RECORD_FORK, PID, PID, CHILD, PID, 20)
    pipe.reader.records = [record(CHILD, 40, 3)]
    delivery.take([(0, Batch(tasks=[fork]))])
    child = table.threads[CHILD]
    assert child.awaiting  # born carrying the event: its hits wait for its first table
    slot = ThreadSlot(CHILD, "dr", 2, SlotEntry(CHUNK, regions=REGIONS))
    slot.hold(0, 6)
    table.link(slot, 0, table.ids[EVENT])
    child.slots[("dr", 2)] = slot
    delivery.deliver_buffered(table.release_buffered(child))
    delivery.flush(defer=False)
    got = [(h.tid, int.from_bytes(h.values[0], "little"), h.values_late) for h in log.hits]
    assert got == [(PID, 1, False), (CHILD, 2, False), (CHILD, 3, False)]
    assert stats.strays == 0


async def test_a_thread_never_born_is_a_stray_after_the_passes() -> None:
    _, log, delivery, stats, pipe = setup()
    delivery.start(cast(Any, log), asyncio.get_running_loop())
    pipe.reader.records = [record(CHILD, 30, 2)]
    for _ in range(UNBORN_PASSES):
        delivery.take([])
        assert stats.strays == 0
    delivery.take([])
    assert stats.strays == 1
    assert log.hits == []


async def test_a_record_of_an_unwatched_process_is_a_stray_at_once() -> None:
    _, log, delivery, stats, pipe = setup()
    delivery.start(cast(Any, log), asyncio.get_running_loop())
    pipe.reader.records = [record(555, 30, 2, pid=554)]
    delivery.take([])
    assert stats.strays == 1


async def test_spilled_records_take_their_place_by_time() -> None:
    """After the pass read 1 from the ring, 2 reached the ring, the ring refused 3 (spilled)
    and took 4. The delivery reads the ring again after the spill and orders all by time:
    without that, 3 would come before 2."""
    _, log, delivery, _, pipe = setup()
    delivery.start(cast(Any, log), asyncio.get_running_loop())
    pipe.reader.records = [record(PID, 11, 1)]
    pipe.spill.records = [record(PID, 14, 3)]
    pipe.reader.later = [record(PID, 12, 2), record(PID, 15, 4)]
    delivery.take([])
    delivery.flush(defer=False)
    assert [int.from_bytes(h.values[0], "little") for h in log.hits] == [1, 2, 3, 4]
