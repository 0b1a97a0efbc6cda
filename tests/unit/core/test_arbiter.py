"""Examples for the arbiter (DESIGN section 2; issue 2 items 2-5 at the arbiter level)."""

from __future__ import annotations

import itertools

import pytest

from hwbkptd.core.arbiter import Arbiter, Delta, RequestChange
from hwbkptd.core.model import (
    CPU_CONTEXT,
    Access,
    Chunk,
    PendingReason,
    Request,
    RequestState,
    Scope,
)

INSTALLED = RequestState.INSTALLED
PENDING = RequestState.PENDING
PARTIAL = RequestState.PARTIAL
REMOVED = RequestState.REMOVED

_seq = itertools.count(1)


def req(
    rid: int,
    address: int,
    *,
    priority: int = 25,
    pid: int = 100,
    tid: int = 0,
    kernel: bool = False,
    pool: str = "dr",
    access: Access = Access.WRITE,
    length: int = 8,
    chunks: tuple[Chunk, ...] | None = None,
    seq: int | None = None,
) -> Request:
    scope = Scope.KERNEL if kernel else Scope.THREAD if tid else Scope.PROCESS
    return Request(
        id=rid,
        seq=next(_seq) if seq is None else seq,
        session_id=f"s{rid}",
        session_name=f"client{rid}",
        scope=scope,
        pid=0 if kernel else pid,
        tid=tid,
        address=address,
        length=length,
        access=access,
        priority=priority,
        chunks=chunks if chunks is not None else (Chunk(pool, address, length, access),),
    )


def change(delta: Delta, rid: int) -> RequestChange:
    found = [c for c in delta.changes if c.request_id == rid]
    assert len(found) == 1, delta.changes
    return found[0]


def ids(delta: Delta) -> set[int]:
    return {c.request_id for c in delta.changes}


def slot_of(arb: Arbiter, tid: int, rid: int, pool: str = "dr") -> int:
    entries = arb.table(tid).pools[pool]
    return next(i for i, e in enumerate(entries) if e is not None and rid in e.holders)


# --- issue 2 item 2: displacement names the stronger request; removal restores ---------


def test_high_request_displaces_exactly_one_normal_and_removal_restores_it() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    for rid in range(1, 5):
        d = arb.add_request(req(rid, 0x1000 + 8 * rid))
        assert change(d, rid).new_state is INSTALLED
    slots_before = {rid: slot_of(arb, 101, rid) for rid in range(1, 5)}

    d = arb.add_request(req(5, 0x2000, priority=75))
    assert ids(d) == {4, 5}  # the newest normal ranks lowest: exactly one displaced
    c4 = change(d, 4)
    assert (c4.old_state, c4.new_state, c4.reason) == (INSTALLED, PENDING, PendingReason.PRIORITY)
    assert c4.displaced == {101}
    assert c4.displaced_by == {5: frozenset({101})}
    assert c4.pending == {101}
    assert not c4.lost
    assert not c4.installed
    c5 = change(d, 5)
    assert c5.gained == {101}
    assert not c5.restored
    assert c5.new_state is INSTALLED
    assert slot_of(arb, 101, 5) == slots_before[4]  # took the freed index, others unmoved
    assert all(slot_of(arb, 101, rid) == slots_before[rid] for rid in (1, 2, 3))
    assert len(d.rewrites) == 1
    assert d.rewrites[0].tid == 101

    d = arb.remove_request(5)
    c5 = change(d, 5)
    assert (c5.old_state, c5.new_state, c5.lost) == (INSTALLED, REMOVED, frozenset({101}))
    c4 = change(d, 4)
    assert c4.restored == {101}
    assert c4.new_state is INSTALLED
    assert not c4.gained
    assert arb.state(4) == (INSTALLED, PendingReason.NONE)
    assert arb.installed(4) == {101}


# --- issue 2 item 3: identical chunks share one slot --------------------------------------


def test_identical_chunks_share_one_slot_with_holders_in_rank_order() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000))
    d = arb.add_request(req(2, 0x1000, priority=75))
    entries = [e for e in arb.table(101).pools["dr"] if e is not None]
    assert len(entries) == 1
    assert entries[0].holders == (2, 1)  # rank order: the high one first
    assert d.rewrites[0].generation == arb.table(101).generation
    for rid in (3, 4, 5):  # the shared slot costs one: three more distinct fit
        assert change(arb.add_request(req(rid, 0x2000 + 8 * rid)), rid).new_state is INSTALLED
    assert change(arb.add_request(req(6, 0x3000)), 6).new_state is PENDING
    # A sharer costs nothing, so it fits even though the pool is full.
    assert change(arb.add_request(req(7, 0x1000, priority=10)), 7).new_state is INSTALLED
    shared = arb.table(101).pools["dr"][slot_of(arb, 101, 1)]
    assert shared is not None
    assert shared.holders == (2, 1, 7)


def test_a_cheaper_request_below_a_skipped_one_still_fits() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    for rid in (1, 2, 3):
        arb.add_request(req(rid, 0x1000 + 8 * rid, priority=75))
    two = (Chunk("dr", 0x5000, 8, Access.WRITE), Chunk("dr", 0x5008, 8, Access.WRITE))
    arb.add_request(req(4, 0x5000, length=16, chunks=two, priority=50))
    assert arb.state(4) == (PENDING, PendingReason.PRIORITY)
    arb.add_request(req(5, 0x6000, priority=10))
    assert arb.state(5) == (INSTALLED, PendingReason.NONE)


# --- issue 2 item 4: pools compete only inside themselves ---------------------------------


def test_arm64_pools_compete_only_inside_their_pool() -> None:
    arb = Arbiter({"exec": 2, "data": 2})
    arb.add_thread(100, 101)
    for rid in (1, 2, 3):
        arb.add_request(req(rid, 0x400000 + 4 * rid, pool="exec", access=Access.EXEC, length=4))
    assert [arb.state(r)[0] for r in (1, 2, 3)] == [INSTALLED, INSTALLED, PENDING]
    for rid in (4, 5):
        d = arb.add_request(req(rid, 0x1000 + 8 * rid, pool="data"))
        assert ids(d) == {rid}  # no exec request is disturbed
        assert arb.state(rid)[0] is INSTALLED
    d = arb.add_request(req(6, 0x400100, pool="exec", access=Access.EXEC, length=4, priority=75))
    assert ids(d) == {2, 6}
    assert change(d, 2).displaced_by == {6: frozenset({101})}
    assert arb.state(4)[0] is INSTALLED
    assert arb.state(5)[0] is INSTALLED


def test_a_request_spanning_two_pools_needs_both() -> None:
    arb = Arbiter({"exec": 2, "data": 2})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000, pool="data"))
    arb.add_request(req(2, 0x1008, pool="data"))
    both = (Chunk("exec", 0x400000, 4, Access.EXEC), Chunk("data", 0x2000, 8, Access.WRITE))
    arb.add_request(req(3, 0x2000, chunks=both))
    assert arb.state(3)[0] is PENDING
    assert all(e is None for e in arb.table(101).pools["exec"])  # no half-installed request
    d = arb.remove_request(2)
    assert change(d, 3).restored == {101}
    assert arb.table(101).pools["exec"][0] is not None


# --- issue 2 item 5: kernel requests are all or nothing -----------------------------------


def test_kernel_request_waits_for_the_crowded_thread_then_installs_everywhere() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    arb.add_thread(200, 201)
    for rid in range(1, 5):
        arb.add_request(req(rid, 0x1000 + 8 * rid, priority=75, pid=100))
    d = arb.add_request(req(9, 0xFFFF_8000_0000_1000, kernel=True))
    c9 = change(d, 9)
    assert c9.new_state is PENDING
    assert c9.reason is PendingReason.PRIORITY
    assert c9.installed == frozenset()
    assert c9.pending == {CPU_CONTEXT, 101, 201}
    assert all(e is None for e in arb.table(201).pools["dr"])  # fits in 201 but not installed
    assert all(e is None for e in arb.table(CPU_CONTEXT).pools["dr"])
    assert ids(d) == {9}

    d = arb.remove_thread(101)
    c9 = change(d, 9)
    assert c9.new_state is INSTALLED
    assert c9.restored == {CPU_CONTEXT, 201}
    assert not c9.gained
    assert not c9.lost
    assert not c9.displaced
    assert arb.installed(9) == {CPU_CONTEXT, 201}
    assert {t.tid for t in d.rewrites} == {CPU_CONTEXT, 201}
    for rid in range(1, 5):  # thread death is loss, not displacement
        c = change(d, rid)
        assert c.lost == {101}
        assert not c.displaced
        assert c.new_state is PENDING
        assert c.reason is PendingReason.NO_THREADS


def test_kernel_request_above_users_displaces_in_every_thread() -> None:
    arb = Arbiter({"dr": 1})
    arb.add_thread(100, 101)
    arb.add_thread(100, 102)
    arb.add_request(req(1, 0x1000))
    d = arb.add_request(req(2, 0xFFFF_8000_0000_1000, kernel=True, priority=50))
    assert change(d, 2).gained == {CPU_CONTEXT, 101, 102}
    c1 = change(d, 1)
    assert c1.displaced == {101, 102}
    assert c1.displaced_by == {2: frozenset({101, 102})}
    d = arb.add_thread(100, 103)  # a new thread gets the kernel request: birth, not restore
    assert change(d, 2).gained == {103}
    assert arb.installed(2) == {CPU_CONTEXT, 101, 102, 103}
    assert 1 not in ids(d)  # still pending everywhere: no change to report
    assert arb.applicable(2) == {CPU_CONTEXT, 101, 102, 103}


def test_new_crowded_thread_displaces_kernel_request_naming_the_taker() -> None:
    arb = Arbiter({"dr": 1})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0xFFFF_8000_0000_1000, kernel=True))
    arb.add_request(req(2, 0x1000, priority=75, tid=202, pid=200))  # waits for its thread
    assert arb.state(2) == (PENDING, PendingReason.NO_THREADS)
    d = arb.add_thread(200, 202)
    c1 = change(d, 1)
    assert c1.displaced == {CPU_CONTEXT, 101}
    assert c1.displaced_by == {2: c1.displaced}
    assert change(d, 2).gained == {202}
    assert [t.tid for t in d.rewrites] == [CPU_CONTEXT, 101, 202]


def test_kernel_requests_without_threads_compete_in_the_cpu_context() -> None:
    arb = Arbiter({"dr": 1})
    arb.add_request(req(1, 0xFFFF_8000_0000_1000, kernel=True))
    arb.add_request(req(2, 0xFFFF_8000_0000_2000, kernel=True, priority=75))
    assert arb.installed(2) == {CPU_CONTEXT}
    assert arb.state(1)[0] is PENDING
    assert arb.table(CPU_CONTEXT).pools["dr"][0] is not None
    assert arb.holders_at(CPU_CONTEXT, "dr", 0, arb.table(CPU_CONTEXT).generation) == (2,)


# --- external holders ---------------------------------------------------------------------


def test_external_slots_make_requests_pending_external_and_back() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000))
    arb.add_request(req(2, 0x1008))
    gen = arb.table(101).generation
    d = arb.set_external(101, "dr", 3)
    c2 = change(d, 2)
    assert (c2.new_state, c2.reason, c2.displaced, c2.displaced_by) == (
        PENDING,
        PendingReason.EXTERNAL,
        frozenset({101}),
        {},
    )
    assert arb.table(101).external == {"dr": 3}
    assert arb.table(101).generation == gen + 1
    d = arb.set_external(101, "dr", 4)
    assert change(d, 1).reason is PendingReason.EXTERNAL
    assert arb.state(2)[1] is PendingReason.EXTERNAL
    arb.add_request(req(3, 0x2000, priority=10))  # behind two others: still external
    assert arb.state(3) == (PENDING, PendingReason.EXTERNAL)
    d = arb.set_external(101, "dr", 0)
    assert {c.request_id for c in d.changes if c.restored == {101}} == {1, 2, 3}
    assert arb.state(2) == (INSTALLED, PendingReason.NONE)


def test_pending_for_priority_is_not_external() -> None:
    arb = Arbiter({"dr": 2})
    arb.add_thread(100, 101)
    arb.set_external(101, "dr", 1)
    arb.add_request(req(1, 0x1000, priority=75))
    arb.add_request(req(2, 0x1008, priority=75))
    arb.add_request(req(3, 0x1010))
    assert arb.state(2) == (PENDING, PendingReason.EXTERNAL)
    assert arb.state(3) == (PENDING, PendingReason.PRIORITY)


def test_external_slots_on_the_cpus_hold_kernel_requests_back() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    arb.set_external(CPU_CONTEXT, "dr", 4)
    d = arb.add_request(req(1, 0xFFFF_8000_0000_1000, kernel=True))
    assert change(d, 1).reason is PendingReason.EXTERNAL
    d = arb.set_external(CPU_CONTEXT, "dr", 3)
    assert change(d, 1).restored == {CPU_CONTEXT, 101}


def test_external_change_without_placement_change_does_not_rewrite() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000))
    gen = arb.table(101).generation
    d = arb.set_external(101, "dr", 2)
    assert d == Delta((), ())
    assert arb.table(101).generation == gen
    assert arb.table(101).external == {"dr": 2}


# --- states, threads, generations ---------------------------------------------------------


def test_process_request_is_partial_when_one_thread_is_crowded() -> None:
    arb = Arbiter({"dr": 1})
    d = arb.add_request(req(1, 0x1000))
    c = change(d, 1)
    assert (c.old_state, c.new_state, c.reason) == (PENDING, PENDING, PendingReason.NO_THREADS)
    d = arb.add_thread(100, 101)
    assert change(d, 1).gained == {101}
    assert arb.state(1)[0] is INSTALLED
    arb.add_thread(100, 102)
    assert arb.installed(1) == {101, 102}
    d = arb.add_request(req(2, 0x2000, tid=102, priority=75))
    c = change(d, 1)
    assert (c.new_state, c.reason, c.pending, c.displaced) == (
        PARTIAL,
        PendingReason.PRIORITY,
        frozenset({102}),
        frozenset({102}),
    )
    d = arb.remove_thread(102)
    c = change(d, 1)
    assert c.new_state is INSTALLED
    assert not c.lost
    assert not c.restored
    assert change(d, 2).lost == {102}
    assert arb.state(2)[1] is PendingReason.NO_THREADS


def test_generations_start_at_one_and_move_only_with_the_table() -> None:
    arb = Arbiter({"dr": 4})
    d = arb.add_thread(100, 101)
    assert [(t.tid, t.generation) for t in d.rewrites] == [(101, 1)]
    assert d.rewrites[0].pools == {"dr": (None, None, None, None)}
    arb.add_thread(200, 201)
    d = arb.add_request(req(1, 0x1000, pid=100))
    assert [(t.tid, t.generation) for t in d.rewrites] == [(101, 2)]
    assert arb.table(201).generation == 1
    d = arb.add_request(req(2, 0x1000, pid=100))  # a new holder is a new table content
    assert [(t.tid, t.generation) for t in d.rewrites] == [(101, 3)]
    assert arb.table(CPU_CONTEXT).generation == 1


def test_holders_at_answers_for_a_hit_that_raced_a_rewrite() -> None:
    arb = Arbiter({"dr": 1})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000))
    gen1 = arb.table(101).generation
    arb.add_request(req(2, 0x2000, priority=75))
    gen2 = arb.table(101).generation
    assert gen2 == gen1 + 1
    assert arb.holders_at(101, "dr", 0, gen1) == (1,)
    assert arb.holders_at(101, "dr", 0, gen2) == (2,)
    assert arb.holders_at(101, "dr", 0, gen2 + 1) == ()
    assert arb.holders_at(101, "dr", 5, gen2) == ()
    assert arb.holders_at(101, "nope", 0, gen2) == ()
    assert arb.holders_at(999, "dr", 0, gen2) == ()
    for i in range(70):  # old generations are forgotten after a while
        arb.replace_request(req(2, 0x2000 + 8 * (i + 1), priority=75, seq=arb.request(2).seq))
    assert arb.holders_at(101, "dr", 0, gen1) == ()
    last = arb.table(101).generation
    assert arb.holders_at(101, "dr", 0, last - 10) == (2,)


def test_replace_request_keeps_seq_and_can_displace() -> None:
    arb = Arbiter({"dr": 1})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000))
    arb.add_request(req(2, 0x2000))
    seq2 = arb.request(2).seq
    d = arb.replace_request(req(2, 0x2000, priority=75, seq=seq2))
    assert change(d, 1).displaced_by == {2: frozenset({101})}
    assert change(d, 2).restored == {101}
    d = arb.replace_request(req(2, 0x2000, priority=10, seq=seq2))
    assert change(d, 2).displaced_by == {1: frozenset({101})}
    assert arb.requests()[0].id == 1
    with pytest.raises(ValueError, match="seq"):
        arb.replace_request(req(2, 0x2000, seq=seq2 + 100))
    with pytest.raises(KeyError):
        arb.replace_request(req(77, 0x2000))


def test_request_grown_by_replace_is_named_as_the_taker() -> None:
    arb = Arbiter({"dr": 2})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000, priority=75))
    arb.add_request(req(2, 0x2000))
    two = (Chunk("dr", 0x1000, 8, Access.WRITE), Chunk("dr", 0x1008, 8, Access.WRITE))
    d = arb.replace_request(
        req(1, 0x1000, length=16, chunks=two, priority=75, seq=arb.request(1).seq)
    )
    assert change(d, 2).displaced_by == {1: frozenset({101})}
    assert ids(d) == {2}  # request 1 stays installed: no change for it


def test_bad_mutations_raise_and_change_nothing() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000))
    before = (arb.table(101), arb.requests(), arb.threads())
    with pytest.raises(ValueError, match="already exists"):
        arb.add_request(req(1, 0x2000))
    with pytest.raises(ValueError, match="unknown pool"):
        arb.add_request(req(2, 0x2000, pool="exec"))
    with pytest.raises(ValueError, match="at least one chunk"):
        arb.add_request(req(3, 0x2000, chunks=()))
    with pytest.raises(ValueError, match="not a new thread"):
        arb.add_thread(100, 101)
    with pytest.raises(ValueError, match="not a new thread"):
        arb.add_thread(100, CPU_CONTEXT)
    with pytest.raises(KeyError):
        arb.remove_thread(555)
    with pytest.raises(KeyError):
        arb.remove_request(555)
    with pytest.raises(KeyError):
        arb.set_external(555, "dr", 1)
    with pytest.raises(KeyError):
        arb.set_external(101, "exec", 1)
    with pytest.raises(ValueError, match=r"outside 0\.\.4"):
        arb.set_external(101, "dr", 5)
    with pytest.raises(KeyError):
        arb.state(555)
    assert (arb.table(101), arb.requests(), arb.threads()) == before
    assert arb.add_request(req(4, 0x1000)).changes[0].new_state is INSTALLED


def test_thread_request_applies_to_its_thread_only_and_queries_agree() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    arb.add_thread(100, 102)
    arb.add_request(req(1, 0x1000, tid=102))
    arb.add_request(req(2, 0x2000))
    assert arb.installed(1) == {102}
    assert arb.applicable(1) == {102}
    assert arb.applicable(2) == {101, 102}
    assert arb.threads() == {101: 100, 102: 100}
    assert [r.id for r in arb.requests()] == [1, 2]
    assert arb.request(1).tid == 102
    assert arb.table(101).pools["dr"][0] is not None
    assert arb.table(101).pools["dr"][0].holders == (2,)  # type: ignore[union-attr]


def test_holders_at_still_answers_for_a_thread_that_just_ended() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000))
    gen = arb.table(101).generation
    arb.remove_thread(101)
    assert arb.holders_at(101, "dr", 0, gen) == (1,)
    with pytest.raises(KeyError):
        arb.table(101)
    d = arb.add_thread(100, 101)  # the tid is reused: a new history from generation 1
    assert d.rewrites[0].generation == 1
    assert arb.holders_at(101, "dr", 0, gen) == ()
    assert arb.holders_at(101, "dr", 0, arb.table(101).generation) == (1,)


def test_sharers_join_and_leave_in_rank_order_without_moving_slots() -> None:
    arb = Arbiter({"dr": 2})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000, priority=75))
    arb.add_request(req(2, 0x2000, priority=50))
    index = slot_of(arb, 101, 2)
    arb.add_request(req(3, 0x2000, priority=10))
    d = arb.add_request(req(4, 0x2000, priority=25))  # joins between 2 and 3
    assert ids(d) == {4}
    entry = arb.table(101).pools["dr"][index]
    assert entry is not None
    assert entry.holders == (2, 4, 3)
    d = arb.remove_request(2)  # the others still hold the chunk: it stays where it was
    assert slot_of(arb, 101, 4) == index
    assert [c.request_id for c in d.changes] == [2]
    d = arb.remove_request(4)
    assert slot_of(arb, 101, 3) == index
    assert arb.installed(3) == {101}


def test_replace_keeping_the_chunk_keeps_the_slot() -> None:
    arb = Arbiter({"dr": 4})
    arb.add_thread(100, 101)
    for rid in (1, 2, 3):
        arb.add_request(req(rid, 0x1000 + 8 * rid))
    index = slot_of(arb, 101, 2)
    gen = arb.table(101).generation
    d = arb.replace_request(req(2, 0x1010, priority=75, seq=arb.request(2).seq))
    assert slot_of(arb, 101, 2) == index
    assert d.changes == ()
    assert arb.table(101).generation == gen  # nothing to rewrite
    assert [r.id for r in arb.requests()] == [2, 1, 3]


def test_kernel_ranks_before_user_at_equal_priority() -> None:
    arb = Arbiter({"dr": 1})
    arb.add_thread(100, 101)
    arb.add_request(req(1, 0x1000, priority=50))
    d = arb.add_request(req(2, 0xFFFF_8000_0000_1000, kernel=True, priority=50))
    assert change(d, 1).displaced_by == {2: frozenset({101})}
    assert [r.id for r in arb.requests()] == [2, 1]
    d = arb.remove_request(2)
    assert change(d, 2).lost == {CPU_CONTEXT, 101}
    assert change(d, 1).restored == {101}
    assert arb.table(CPU_CONTEXT).pools["dr"] == (None,)


def test_a_mutation_in_one_thread_rewrites_only_that_thread() -> None:
    arb = Arbiter({"dr": 4})
    for tid in range(101, 111):
        arb.add_thread(100 + tid, tid)
    for rid in range(1, 41):
        arb.add_request(req(rid, 0x1000 + 8 * (rid % 6), tid=101 + rid % 10, pid=201 + rid % 10))
    generations = {tid: arb.table(tid).generation for tid in range(101, 111)}
    d = arb.add_request(req(99, 0x9000, tid=105, pid=205, priority=100))
    assert [t.tid for t in d.rewrites] == [105]
    assert {tid: arb.table(tid).generation for tid in range(101, 111)} == {
        **generations,
        105: generations[105] + 1,
    }
    assert all(105 in c.installed | c.displaced for c in d.changes)
