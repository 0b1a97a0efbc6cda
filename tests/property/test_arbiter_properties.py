"""The five properties of DESIGN section 2, over random histories (hypothesis).

A history mixes thread births and deaths, requests added, replaced and removed,
and external slot counts, on small pools and a small address space so that
collisions and shared slots are common. After every step the arbiter is checked
against ``compute_placement``, a deliberately naive from-scratch reference
written from the text of DESIGN section 2 (it shares no code with the engine).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from hwbkptd.core.arbiter import Arbiter, Delta, SlotTable
from hwbkptd.core.model import (
    CPU_CONTEXT,
    Access,
    Chunk,
    PendingReason,
    Request,
    RequestState,
    Scope,
    rank_key,
)

LAYOUTS: tuple[dict[str, int], ...] = ({"dr": 4}, {"dr": 2}, {"exec": 2, "data": 2})
PRIORITIES = (10, 25, 50, 75)
PIDS = (1, 2, 3)
External = Mapping[tuple[int, str], int]


# --- the reference --------------------------------------------------------------------------


def _rank(req: Request) -> tuple[tuple[int, int, int], int]:
    return (rank_key(req), req.id)


def _first_fit(reqs: Iterable[Request], capacity: Mapping[str, int]) -> list[Request]:
    """Requests in rank order; each goes in if its new distinct chunks fit in every pool."""
    used: dict[str, set[Chunk]] = {pool: set() for pool in capacity}
    placed = []
    for req in sorted(reqs, key=_rank):
        new = {c for c in req.chunks if c not in used.get(c.pool, set())}
        if all(c.pool in capacity for c in new) and all(
            len(used[pool]) + len({c for c in new if c.pool == pool}) <= capacity[pool]
            for pool in capacity
        ):
            for c in new:
                used[c.pool].add(c)
            placed.append(req)
    return placed


@dataclass
class Placement:
    admitted: set[int]
    members: dict[int, set[int]]  # context tid -> installed request ids
    reasons: dict[int, PendingReason] = field(default_factory=dict)


def compute_placement(
    pools: Mapping[str, int],
    threads: Mapping[int, int],
    requests: Iterable[Request],
    external: External,
) -> Placement:
    """DESIGN section 2 from scratch: kernel admission, then first-fit per thread."""
    ranked = sorted(requests, key=_rank)
    contexts = [CPU_CONTEXT, *threads]

    def users(tid: int) -> list[Request]:
        if tid == CPU_CONTEXT:
            return []
        return [
            r
            for r in ranked
            if not r.is_kernel and (r.tid == tid if r.tid else r.pid == threads[tid])
        ]

    def capacity(tid: int, outside: bool = True) -> dict[str, int]:
        return {p: n - (external.get((tid, p), 0) if outside else 0) for p, n in pools.items()}

    def kernel_fits(k: Request, tid: int, admitted: list[Request], outside: bool) -> bool:
        above = [r for r in admitted + users(tid) if _rank(r) < _rank(k)]
        return k in _first_fit([*above, k], capacity(tid, outside))

    admitted: list[Request] = []
    reasons: dict[int, PendingReason] = {}
    for k in (r for r in ranked if r.is_kernel):
        failing = [t for t in contexts if not kernel_fits(k, t, admitted, True)]
        if not failing:
            admitted.append(k)
        elif any(kernel_fits(k, t, admitted, False) for t in failing):
            reasons[k.id] = PendingReason.EXTERNAL
        else:
            reasons[k.id] = PendingReason.PRIORITY
    members = {CPU_CONTEXT: {r.id for r in _first_fit(admitted, capacity(CPU_CONTEXT))}}
    external_ok: set[int] = set()
    for tid in threads:
        members[tid] = {r.id for r in _first_fit(admitted + users(tid), capacity(tid))}
        without = _first_fit(admitted + users(tid), capacity(tid, False))
        external_ok |= {r.id for r in without if r.id not in members[tid] and not r.is_kernel}
    for r in ranked:
        if not r.is_kernel:
            reasons[r.id] = (
                PendingReason.EXTERNAL if r.id in external_ok else PendingReason.PRIORITY
            )
    return Placement({k.id for k in admitted}, members, reasons)


# --- the model of the world the history runs in -----------------------------------------------


@dataclass
class World:
    layout: dict[str, int]
    arbiter: Arbiter
    threads: dict[int, int] = field(default_factory=dict)
    requests: dict[int, Request] = field(default_factory=dict)
    external: dict[tuple[int, str], int] = field(default_factory=dict)
    replay: dict[int, set[int]] = field(default_factory=dict)
    replay_state: dict[int, tuple[RequestState, PendingReason]] = field(default_factory=dict)
    next_tid: int = 10
    next_id: int = 1
    next_seq: int = 1


def _chunks(data: st.DataObject, layout: Mapping[str, int]) -> tuple[Chunk, ...]:
    pools = sorted(layout)
    n = data.draw(st.integers(1, 2), label="chunks")
    out = []
    for _ in range(n):
        pool = data.draw(st.sampled_from(pools), label="pool")
        address = 0x1000 + 8 * data.draw(st.integers(0, 3), label="address")
        access = data.draw(st.sampled_from((Access.WRITE, Access.READ_WRITE)), label="access")
        out.append(Chunk(pool, address, 8, access))
    return tuple(out)


def _new_request(data: st.DataObject, w: World) -> Request:
    kind = data.draw(st.sampled_from(("kernel", "process", "process", "thread")), label="kind")
    pid = data.draw(st.sampled_from(PIDS), label="pid")
    tid = 0
    if kind == "thread":
        known = [t for t, p in w.threads.items() if p == pid]
        tid = data.draw(st.sampled_from([*known, w.next_tid + 1]), label="tid")
    chunks = _chunks(data, w.layout)
    req = Request(
        id=w.next_id,
        seq=w.next_seq,
        session_id="s",
        session_name="s",
        scope=Scope.KERNEL if kind == "kernel" else Scope.THREAD if tid else Scope.PROCESS,
        pid=0 if kind == "kernel" else pid,
        tid=tid,
        address=chunks[0].address,
        length=8,
        access=chunks[0].access,
        priority=data.draw(st.sampled_from(PRIORITIES), label="priority"),
        chunks=chunks,
    )
    w.next_id += 1
    w.next_seq += 1
    return req


def step(data: st.DataObject, w: World) -> Delta | None:
    ops = ["add_thread", "add_request", "add_request", "external"]
    if w.threads:
        ops.append("remove_thread")
    if w.requests:
        ops += ["replace_request", "remove_request", "remove_request"]
    op = data.draw(st.sampled_from(ops), label="op")
    arb = w.arbiter
    if op == "add_thread":
        w.next_tid += 1
        pid = data.draw(st.sampled_from(PIDS), label="pid")
        w.threads[w.next_tid] = pid
        return arb.add_thread(pid, w.next_tid)
    if op == "remove_thread":
        tid = data.draw(st.sampled_from(sorted(w.threads)), label="tid")
        del w.threads[tid]
        for pool in w.layout:
            w.external.pop((tid, pool), None)
        return arb.remove_thread(tid)
    if op == "add_request":
        req = _new_request(data, w)
        w.requests[req.id] = req
        return arb.add_request(req)
    if op == "replace_request":
        old = w.requests[data.draw(st.sampled_from(sorted(w.requests)), label="rid")]
        new = replace(
            old,
            priority=data.draw(st.sampled_from(PRIORITIES), label="priority"),
            chunks=_chunks(data, w.layout),
        )
        w.requests[new.id] = new
        return arb.replace_request(new)
    if op == "remove_request":
        rid = data.draw(st.sampled_from(sorted(w.requests)), label="rid")
        del w.requests[rid]
        return arb.remove_request(rid)
    tid = data.draw(st.sampled_from([CPU_CONTEXT, *sorted(w.threads)]), label="tid")
    pool = data.draw(st.sampled_from(sorted(w.layout)), label="pool")
    count = data.draw(st.integers(0, w.layout[pool]), label="count")
    if count:
        w.external[(tid, pool)] = count
    else:
        w.external.pop((tid, pool), None)
    return arb.set_external(tid, pool, count)


# --- the properties ---------------------------------------------------------------------------


def _tables(arb: Arbiter, w: World) -> dict[int, SlotTable]:
    return {tid: arb.table(tid) for tid in [CPU_CONTEXT, *w.threads]}


def _members(table: SlotTable) -> set[int]:
    return {h for entries in table.pools.values() for e in entries if e for h in e.holders}


def check_capacity(w: World, tables: Mapping[int, SlotTable]) -> None:
    """Property 1: no pool of any thread holds more than its usable slots."""
    for tid, table in tables.items():
        for pool, entries in table.pools.items():
            assert len(entries) == w.layout[pool]
            used = [e.chunk for e in entries if e is not None]
            assert len(used) == len(set(used)), "a chunk in two slots"
            assert len(used) <= w.layout[pool] - w.external.get((tid, pool), 0)
            assert all(e.chunk.pool == pool for e in entries if e is not None)


def check_reference(w: World, tables: Mapping[int, SlotTable]) -> None:
    """Property 2: the incremental placement equals the from-scratch one."""
    arb = w.arbiter
    ref = compute_placement(w.layout, w.threads, w.requests.values(), w.external)
    got = {tid: _members(t) for tid, t in tables.items()}
    assert got == ref.members
    assert arb.admitted() == ref.admitted
    for rid, req in w.requests.items():
        installed = {tid for tid, m in got.items() if rid in m}
        assert arb.installed(rid) == installed
        applies = arb.applicable(rid)
        state, reason = arb.state(rid)
        if not applies:
            assert (state, reason) == (RequestState.PENDING, PendingReason.NO_THREADS)
        elif installed == applies:
            assert (state, reason) == (RequestState.INSTALLED, PendingReason.NONE)
        else:
            assert state is (RequestState.PARTIAL if installed else RequestState.PENDING)
            assert reason is ref.reasons[rid], (rid, req)
        for table in tables.values():  # every holder of a slot really has that chunk
            for entries in table.pools.values():
                for e in entries:
                    if e is not None and rid in e.holders:
                        assert e.chunk in req.chunks


def _fits_above(req: Request, tid: int, w: World, tables: Mapping[int, SlotTable]) -> bool:
    """Would ``req`` fit in ``tid`` if it took every slot held only by requests below it?"""
    table = tables[tid]
    mine = _rank(req)
    kept: set[Chunk] = set()
    for entries in table.pools.values():
        for e in entries:
            if e is not None and any(_rank(w.requests[h]) < mine for h in e.holders):
                kept.add(e.chunk)
    for pool, size in w.layout.items():
        usable = size - w.external.get((tid, pool), 0)
        wanted = {c for c in req.chunks if c.pool == pool} | {c for c in kept if c.pool == pool}
        if len(wanted) > usable:
            return False
    return True


def check_no_better_place(w: World, tables: Mapping[int, SlotTable]) -> None:
    """Property 3: no pending request could be placed by taking lower-ranked slots only."""
    arb = w.arbiter
    for rid, req in w.requests.items():
        missing = arb.applicable(rid) - arb.installed(rid)
        if req.is_kernel:
            if missing:
                assert not all(_fits_above(req, t, w, tables) for t in arb.applicable(rid))
        else:
            for tid in missing:
                assert not _fits_above(req, tid, w, tables), (rid, tid)


def check_stable_slots(
    before: Mapping[int, SlotTable], after: Mapping[int, SlotTable], delta: Delta
) -> None:
    """Property 4: a chunk that stays installed keeps its index; rewrites match the tables."""
    rewritten = {t.tid: t for t in delta.rewrites}
    for tid, new in after.items():
        old = before.get(tid)
        if old is None:
            assert tid in rewritten
            assert new.generation == 1
            continue
        for pool, entries in new.pools.items():
            old_index = {e.chunk: i for i, e in enumerate(old.pools[pool]) if e is not None}
            for i, e in enumerate(entries):
                if e is not None and e.chunk in old_index:
                    assert old_index[e.chunk] == i, (tid, e.chunk)
        if new.pools != old.pools:
            assert rewritten.get(tid) == new
            assert new.generation == old.generation + 1
        else:
            assert tid not in rewritten
            assert new.generation == old.generation
    assert set(rewritten) <= set(after)


def check_replay(
    w: World, delta: Delta, created: int | None, removed: int | None, lived: set[int]
) -> None:
    """Property 5: replaying the changes gives the installed sets; no change is empty.

    Also the classification: only a tid that lived before the mutation, of a
    request that existed before it, can be restored; only a living thread where
    the request still applies can be displaced; births and deaths are the rest.
    """
    arb = w.arbiter
    seen = set()
    for c in delta.changes:
        assert c.request_id not in seen
        seen.add(c.request_id)
        if c.request_id == created:
            assert not c.restored
        assert c.restored <= lived
        assert not c.gained & lived or c.request_id == created
        if c.request_id != removed:
            assert c.displaced <= arb.applicable(c.request_id)
            assert not c.lost & arb.applicable(c.request_id)
        moved = c.gained | c.restored | c.lost | c.displaced
        last = w.replay_state.get(c.request_id, (RequestState.PENDING, PendingReason.NONE))
        assert c.old_state is last[0], c
        assert moved or (c.new_state, c.reason) != last or c.request_id == created, c
        w.replay_state[c.request_id] = (c.new_state, c.reason)
        assert not (c.gained & c.restored)
        assert not (c.lost & c.displaced)
        assert c.request_id not in c.displaced_by
        assert all(tids and tids <= c.displaced for tids in c.displaced_by.values())
        assert len(set().union(*c.displaced_by.values())) == sum(
            len(tids) for tids in c.displaced_by.values()
        )
        old = w.replay.get(c.request_id, set())
        assert c.lost | c.displaced <= old
        assert not (c.gained | c.restored) & old
        w.replay[c.request_id] = (old | c.gained | c.restored) - c.lost - c.displaced
        assert w.replay[c.request_id] == c.installed
        if c.request_id == removed:
            assert c.new_state is RequestState.REMOVED
            assert c.installed == frozenset()
        else:
            assert (c.new_state, c.reason) == arb.state(c.request_id)
            assert c.pending == arb.applicable(c.request_id) - c.installed
        for taker, tids in c.displaced_by.items():
            # The taker outranks the displaced request and holds slots now (in those
            # threads, unless a new thread's requests held a kernel request back).
            assert _rank(w.requests[taker]) < _rank(w.requests[c.request_id])
            assert arb.installed(taker), taker
            if not w.requests[c.request_id].is_kernel:
                assert tids <= arb.installed(taker), (taker, tids)
    if removed is not None:
        assert removed in seen
        del w.replay[removed]
        del w.replay_state[removed]
    if created is not None:
        assert created in seen
    for rid in w.requests:
        assert w.replay.get(rid, set()) == arb.installed(rid), rid
        assert w.replay_state[rid] == arb.state(rid), rid


def check_holders_at(w: World, tables: Mapping[int, SlotTable]) -> None:
    arb = w.arbiter
    for tid, table in tables.items():
        for pool, entries in table.pools.items():
            for i, e in enumerate(entries):
                expected = e.holders if e is not None else ()
                assert arb.holders_at(tid, pool, i, table.generation) == expected
                if e is not None:
                    ranks = [_rank(w.requests[h]) for h in e.holders]
                    assert ranks == sorted(ranks)


def check_fresh_rebuild(w: World, seed: int) -> None:
    """Placement is a function of the state: any other history to it gives the same sets."""
    rng = random.Random(seed)
    fresh = Arbiter(w.layout)
    ops: list[tuple[str, object]] = [("t", t) for t in w.threads]
    ops += [("r", r) for r in w.requests.values()]
    rng.shuffle(ops)
    for kind, item in ops:
        if kind == "t":
            assert isinstance(item, int)
            fresh.add_thread(w.threads[item], item)
        else:
            assert isinstance(item, Request)
            fresh.add_request(item)
    for (tid, pool), count in w.external.items():
        fresh.set_external(tid, pool, count)
    for tid in [CPU_CONTEXT, *w.threads]:
        assert _members(fresh.table(tid)) == _members(w.arbiter.table(tid))
    for rid in w.requests:
        assert fresh.installed(rid) == w.arbiter.installed(rid)
        assert fresh.state(rid) == w.arbiter.state(rid)


def run_history(data: st.DataObject, layout: dict[str, int], steps: int) -> None:
    w = World(layout=layout, arbiter=Arbiter(layout))
    for _ in range(steps):
        before = _tables(w.arbiter, w)
        known = set(w.requests)
        lived = {CPU_CONTEXT, *w.threads}
        delta = step(data, w)
        assert delta is not None
        created = next(iter(set(w.requests) - known), None)
        removed = next(iter(known - set(w.requests)), None)
        tables = _tables(w.arbiter, w)
        check_capacity(w, tables)
        check_reference(w, tables)
        check_no_better_place(w, tables)
        check_stable_slots(before, tables, delta)
        check_replay(w, delta, created, removed, lived)
        check_holders_at(w, tables)
    check_fresh_rebuild(w, data.draw(st.integers(0, 2**16), label="shuffle"))


@given(st.data())
def test_random_histories_keep_the_five_properties(data: st.DataObject) -> None:
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    run_history(data, layout, data.draw(st.integers(1, 30), label="steps"))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_long_histories_keep_the_five_properties(data: st.DataObject) -> None:
    """Longer histories on x86's single pool: deep request lists, many fast paths."""
    run_history(data, {"dr": 4}, data.draw(st.integers(40, 90), label="steps"))
