"""The numbered, replayable, bounded event log of one session."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.core.eventlog import MAX_BATCH, EventLog
from hwbkptd.core.events import Hit, HitsDropped, Removed
from hwbkptd.core.limits import EVENT_BYTES, PRESSURE_HIT_FLOOR, SESSION_BYTES, MemoryBudget
from hwbkptd.core.model import Access


def hit(n: int) -> Hit:
    return Hit(
        pid=1,
        tid=1,
        cpu=0,
        ip=0,
        address=0,
        access=Access.WRITE,
        value=bytes([n % 256]),
        old_value=b"",
        hit_count=n,
        generation=1,
    )


def test_events_are_numbered_from_one_and_taken_in_batches() -> None:
    log = EventLog(hit_buffer=10_000, retention=10_000)
    for n in range(MAX_BATCH + 5):
        log.append(7, Removed(str(n)), time_ns=n)
    first = log.take(0, 0)
    assert [e.seq for e in first] == list(range(1, MAX_BATCH + 1))
    assert first[0].breakpoint_id == 7
    assert first[0].time_ns == 0
    rest = log.take(first[-1].seq, 0)
    assert [e.seq for e in rest] == list(range(MAX_BATCH + 1, MAX_BATCH + 6))
    assert log.take(rest[-1].seq, 0) == []
    assert log.last_seq == log.delivered_seq == MAX_BATCH + 5


def test_hits_beyond_the_buffer_are_dropped_and_reported_once() -> None:
    log = EventLog(hit_buffer=2, retention=100)
    kept = [log.append(1, hit(n), 0) for n in range(5)]
    assert [e is not None for e in kept] == [True, True, False, False, False]
    log.append(1, Removed("client"), 0)  # state events always get in
    assert log.pending_drops == 3
    batch = log.take(0, 99)
    kinds = [e.kind for e in batch]
    assert kinds[:3] == [hit(0), hit(1), Removed("client")]
    assert kinds[3] == HitsDropped(3)
    assert batch[3].breakpoint_id == 0
    assert [e.seq for e in batch] == [1, 2, 3, 4]
    assert log.total_dropped == 3
    assert log.pending_drops == 0


def test_a_drop_count_is_queued_before_the_next_hit_that_gets_in() -> None:
    log = EventLog(hit_buffer=1, retention=100)
    log.append(1, hit(0), 0)
    log.append(1, hit(1), 0)  # dropped
    log.take(0, 0)  # delivers hit 0 and the drop count
    log.append(1, hit(2), 0)
    log.append(1, hit(3), 0)  # dropped
    assert log.undelivered_hits == 1
    batch = log.take(2, 0)
    assert [e.kind for e in batch] == [hit(2), HitsDropped(1)]


def test_replay_keeps_delivered_events_up_to_the_retention() -> None:
    log = EventLog(hit_buffer=100, retention=3)
    for n in range(10):
        log.append(1, Removed(str(n)), 0)
    assert [e.seq for e in log.take(0, 0, limit=6)] == [1, 2, 3, 4, 5, 6]
    # A reconnecting reader asks again from the start: only the last 3 delivered remain.
    assert log.oldest_seq == 4
    assert [e.seq for e in log.take(0, 0)] == [4, 5, 6, 7, 8, 9, 10]
    assert [e.seq for e in log.take(8, 0)] == [9, 10]
    assert log.take(50, 0) == []


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="hit_buffer"):
        EventLog(hit_buffer=0, retention=1)
    with pytest.raises(ValueError, match="retention"):
        EventLog(hit_buffer=1, retention=-1)


@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("hit"), st.integers(0, 0)),
            st.tuples(st.just("state"), st.integers(0, 0)),
            st.tuples(st.just("take"), st.integers(1, 5)),
        ),
        max_size=200,
    ),
    buffer=st.integers(1, 6),
)
def test_numbering_has_no_gaps_and_drops_add_up(ops: list[tuple[str, int]], buffer: int) -> None:
    log = EventLog(hit_buffer=buffer, retention=1000)
    hits = states = 0
    got = []
    for op, n in ops:
        if op == "hit":
            hits += 1
            log.append(1, hit(hits), 0)
        elif op == "state":
            states += 1
            log.append(1, Removed("x"), 0)
        else:
            got += log.take(got[-1].seq if got else 0, 0, limit=n)
        assert log.undelivered_hits <= buffer
    while batch := log.take(got[-1].seq if got else 0, 0):
        got += batch
    assert [e.seq for e in got] == list(range(1, len(got) + 1))
    kinds = [e.kind for e in got]
    delivered = sum(isinstance(k, Hit) for k in kinds)
    dropped = sum(k.count for k in kinds if isinstance(k, HitsDropped))
    assert delivered + dropped == hits
    assert sum(isinstance(k, Removed) for k in kinds) == states
    # Hits keep their order; a drop never hides one that was delivered.
    counts = [k.hit_count for k in kinds if isinstance(k, Hit)]
    assert counts == sorted(counts)


# --- issue 12: the memory budget ------------------------------------------------------
def test_item12_the_log_counts_what_it_holds_in_the_budget() -> None:
    budget = MemoryBudget(1 << 30)
    log = EventLog(hit_buffer=100, retention=10, budget=budget)
    assert (budget.sessions, budget.events) == (1, 0)
    for n in range(50):
        log.append(1, hit(n), time_ns=n)
    assert budget.events == 50
    while log.take(log.delivered_seq, 0):
        pass
    # Delivered: only the replay (10) stays, trimmed in steps; the budget follows the list.
    assert budget.events == log.last_seq - log.oldest_seq + 1 <= 50
    log.drop_replay()
    assert budget.events == 0
    assert log.oldest_seq == log.last_seq + 1
    log.append(1, hit(99), time_ns=99)
    log.release()
    log.release()
    assert (budget.sessions, budget.events) == (0, 0)


def test_item12_under_pressure_a_reader_keeps_its_hits_and_a_hog_loses_its_own() -> None:
    floor = PRESSURE_HIT_FLOOR
    budget = MemoryBudget(2 * SESSION_BYTES + (3 * floor) * EVENT_BYTES)
    hog = EventLog(hit_buffer=100_000, retention=100_000, budget=budget)
    reader = EventLog(hit_buffer=100_000, retention=100_000, budget=budget)
    n = 0
    while not budget.pressed:
        hog.append(1, hit(n), time_ns=n)
        n += 1
    held = hog.undelivered_hits
    assert held > floor
    for m in range(1000):  # a reader that takes every hit keeps getting them
        reader.append(2, hit(m), time_ns=m)
        (event,) = reader.take(reader.delivered_seq, 0)
        assert isinstance(event.kind, Hit)
    assert reader.total_dropped == 0
    assert reader.oldest_seq == reader.last_seq + 1  # no replay kept while pressed
    hog.append(1, hit(n), time_ns=n)  # the hog's new hit is dropped, and counted
    assert hog.undelivered_hits == held
    assert hog.pending_drops == 1
    # The hog reads: the budget is relieved, and it hears how many it lost.
    events = []
    while batch := hog.take(hog.delivered_seq, 0):
        events += batch
    assert not budget.pressed
    assert [e.kind for e in events if isinstance(e.kind, HitsDropped)] == [HitsDropped(1)]


# --- issue 11 item 6: a routed batch of hits queued in one pass --------------------------
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("hits"), st.integers(0, 40)),
            st.tuples(st.just("state"), st.integers(0, 0)),
            st.tuples(st.just("take"), st.integers(1, 30)),
        ),
        max_size=40,
    ),
    # Small buffers fill; large ones meet the pressed budget's floor first.
    buffer=st.one_of(st.integers(1, 10), st.integers(PRESSURE_HIT_FLOOR, 2 * PRESSURE_HIT_FLOOR)),
    budget_events=st.one_of(st.none(), st.integers(0, 3 * PRESSURE_HIT_FLOOR)),
)
def test_item6_extend_hits_queues_as_appends_one_by_one(
    ops: list[tuple[str, int]], buffer: int, budget_events: int | None
) -> None:
    def new() -> tuple[EventLog, MemoryBudget | None]:
        budget = None
        if budget_events is not None:
            budget = MemoryBudget(SESSION_BYTES + budget_events * EVENT_BYTES)
        return EventLog(hit_buffer=buffer, retention=5, budget=budget), budget

    (one, one_budget), (many, many_budget) = new(), new()
    n = 0
    seen_one: list[tuple[int, int, int, object]] = []
    seen_many: list[tuple[int, int, int, object]] = []
    for op, k in ops:
        if op == "hits":
            items = [(n + i % 2, hit(n + i), n + i) for i in range(k)]
            n += k
            queued = sum(one.append(*item) is not None for item in items)
            assert many.extend_hits(items) == queued
        elif op == "state":
            one.append(3, Removed("x"), n)
            many.append(3, Removed("x"), n)
        else:
            for log, seen in ((one, seen_one), (many, seen_many)):
                batch = log.take(seen[-1][0] if seen else 0, n, limit=k)
                seen += [(e.seq, e.time_ns, e.breakpoint_id, e.kind) for e in batch]
        assert seen_one == seen_many
        assert (one.last_seq, one.undelivered_hits, one.pending_drops, one.total_dropped) == (
            many.last_seq,
            many.undelivered_hits,
            many.pending_drops,
            many.total_dropped,
        )
        if one_budget is not None and many_budget is not None:
            assert (one_budget.events, one_budget.pressed) == (
                many_budget.events,
                many_budget.pressed,
            )
