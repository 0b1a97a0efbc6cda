"""The non-stop bookkeeping (pure): inheritance by time, adoption, routes, buffering."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.perf.nonstop_table import Event, NonstopTable, ThreadSlot
from hwbkptd.arch.perf.ring import Sample
from hwbkptd.core.mechanism import SlotEntry
from hwbkptd.core.model import Access, Chunk

A = Chunk("dr", 0x1000, 8, Access.WRITE)
B = Chunk("dr", 0x2000, 8, Access.WRITE)
PID = 100
_ids = itertools.count(1)


def event(owner: int, chunk: Chunk, cpu: int, opened: int) -> Event:
    n = next(_ids)
    return Event(id=n, fd=1000 + n, cpu=cpu, owner=owner, pid=PID, chunk=chunk, opened_ns=opened)


def slot(tid: int, chunk: Chunk, index: int = 0, generation: int = 1) -> ThreadSlot:
    s = ThreadSlot(tid, "dr", index, SlotEntry(chunk, regions=((chunk.address, 8),)))
    s.hold(0, generation)
    return s


def sample(eid: int, tid: int, t: int = 50) -> Sample:
    return Sample(eid, 0x400000, PID, tid, t, 0x1000, 0)


def armed_creator(
    table: NonstopTable, cpus: int = 2, opened: int = 10
) -> tuple[ThreadSlot, list[Event]]:
    """The main thread with chunk A armed by own events on every CPU."""
    table.add_thread(PID, PID)
    s = slot(PID, A)
    events = [event(PID, A, cpu, opened) for cpu in range(cpus)]
    for e in events:
        table.add_event(e)
        table.link(s, e.cpu, e)
    table.threads[PID].slots[("dr", 0)] = s
    return s, events


def test_a_newborn_carries_what_was_open_before_its_birth() -> None:
    table = NonstopTable()
    _, events = armed_creator(table, opened=10)
    late = event(PID, B, 0, 30)
    table.add_event(late)
    child = table.born(PID, 101, PID, 20)
    assert child is not None
    assert child.carries == events  # ``late`` opened after the fork: not copied
    assert child.awaiting
    # Grandchildren carry the copies too (inheritance chains to the original).
    grandchild = table.born(PID, 102, 101, 40)
    assert grandchild is not None
    assert grandchild.carries == events
    assert table.born(PID, 101, PID, 20) is None  # duplicate record


def test_a_newborn_without_carried_events_does_not_wait() -> None:
    table = NonstopTable()
    table.add_thread(PID, PID)
    child = table.born(PID, 101, PID, 20)
    assert child is not None
    assert not child.awaiting
    assert table.born(PID, 102, 999, 20) is not None  # unknown creator: carries nothing


def test_adoption_routes_the_copy_and_closed_events_are_not_carried() -> None:
    table = NonstopTable()
    _, events = armed_creator(table)
    child = table.born(PID, 101, PID, 20)
    assert child is not None
    assert table.adoptable(child, B, 0) is None  # wrong chunk
    cs = slot(101, A)
    for cpu in (0, 1):
        e = table.adoptable(child, A, cpu)
        assert e is events[cpu]
        table.link(cs, cpu, e)
    assert table.adoptable(child, A, 0) is None  # already routed
    assert table.route[(events[0].id, 101)] is cs
    assert events[0].routes == {PID, 101}
    table.close(events[1])
    assert (events[1].id, 101) not in table.route
    assert 1 not in cs.events
    table.forget_retired()
    assert events[1].id not in table.ids
    assert table.threads[101].carries == [events[0]]


def test_unlink_returns_only_events_nobody_routes() -> None:
    table = NonstopTable()
    creator, events = armed_creator(table)
    child = table.born(PID, 101, PID, 20)
    assert child is not None
    cs = slot(101, A)
    table.link(cs, 0, events[0])
    child.slots[("dr", 0)] = cs
    # The creator drops its slot: CPU 1's event has no route left, CPU 0's has the child.
    assert table.unlink(creator) == [events[1]]
    assert table.lingering(table.threads[PID]) == [events[0], events[1]]
    table.close(events[1])
    assert table.lingering(table.threads[PID]) == [events[0]]
    assert table.lingering(child) == []
    assert table.remove_thread(101) == [events[0]]
    assert table.remove_thread(101) == []


def test_samples_are_hits_buffered_or_strays() -> None:
    table = NonstopTable(buffer_limit=2)
    creator, events = armed_creator(table)
    assert table.attribute(sample(events[0].id, PID)) is creator
    child = table.born(PID, 101, PID, 20)
    assert child is not None
    for _ in range(3):
        assert table.attribute(sample(events[0].id, 101)) is None
    assert (len(child.buffer), table.overflow, table.strays) == (2, 1, 0)
    assert table.attribute(sample(events[0].id, 555)) is None  # unknown thread
    assert table.attribute(sample(9999, 101)) is None  # unknown event
    assert table.strays == 2
    cs = slot(101, A, generation=7)
    table.link(cs, 0, events[0])
    settled = table.release_buffered(child)
    assert [(s.tid, sl) for s, sl in settled] == [(101, cs), (101, cs)]
    assert cs.generation_at(50) == 7
    assert not child.awaiting
    assert child.buffer == []
    # Settled: later unrouted samples of the thread are strays, not buffered.
    assert table.attribute(sample(events[1].id, 101)) is None
    assert table.strays == 3


def test_generations_are_picked_by_time() -> None:
    s = slot(1, A, generation=1)
    s.hold(100, 2)
    s.hold(200, 3)
    assert [s.generation_at(t) for t in (0, 99, 100, 150, 250)] == [1, 1, 2, 2, 3]
    for g in range(4, 20):
        s.hold(100 * g, g)
    assert len(s.gens) == 8
    assert s.generation_at(0) == s.gens[0]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.booleans()), max_size=40))
def test_routes_and_reference_counts_agree(ops: list[tuple[int, int, bool]]) -> None:
    """Random link/unlink/close keeps route, slot.events and event.routes consistent."""
    table = NonstopTable()
    tids = [PID, 101, 102, 103]
    for tid in tids:
        table.add_thread(PID, tid)
    events = [event(PID, A, cpu, 0) for cpu in range(3)]
    for e in events:
        table.add_event(e)
    slots = {tid: slot(tid, A) for tid in tids}
    for who, cpu, add in ops:
        s = slots[tids[who]]
        e = events[cpu]
        if add and not e.closed and cpu not in s.events:
            table.link(s, cpu, e)
        elif not add:
            for orphan in table.unlink(s, [cpu]):
                table.close(orphan)
    for (eid, tid), s in table.route.items():
        assert s.tid == tid
        assert tid in table.ids[eid].routes
    for s in slots.values():
        for cpu, e in s.events.items():
            assert not e.closed
            assert table.route[(e.id, s.tid)] is s
            assert e.cpu == cpu
    for e in events:
        assert (
            e.closed
            or e.routes
            or not any(e is x for s in slots.values() for x in s.events.values())
        )
