"""Issue 9 item 10: the incremental births and deaths, against the from-scratch reference.

A birth reuses the placement shared by threads of unwatched processes, checks only
the new thread's kernel verdicts, and a death re-checks only its own; a full pass
scans once per kind of context. These histories are mostly births and deaths, over
several processes of which few are watched, with kernel requests and external slots
coming and going, so those paths run often. After every step the five properties of
test_arbiter_properties hold (its naive reference included), and at the end a
fresh arbiter built from the same state agrees.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_arbiter_properties import (
    World,
    _new_request,
    _tables,
    check_capacity,
    check_fresh_rebuild,
    check_holders_at,
    check_no_better_place,
    check_reference,
    check_replay,
    check_stable_slots,
)

from hwbkptd.core.arbiter import Arbiter, Delta
from hwbkptd.core.model import CPU_CONTEXT

#: Processes whose threads are born and die; _new_request watches only pids 1 to 3.
BIRTH_PIDS = (1, 2, 7, 8, 9)


def step(data: st.DataObject, w: World) -> Delta:
    ops = ["add_thread"] * 4 + ["add_request", "external"]
    if w.threads:
        ops += ["remove_thread"] * 3
    if w.requests:
        ops.append("remove_request")
    op = data.draw(st.sampled_from(ops), label="op")
    arb = w.arbiter
    if op == "add_thread":
        w.next_tid += 1
        pid = data.draw(st.sampled_from(BIRTH_PIDS), label="pid")
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


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_births_and_deaths_among_unwatched_threads_equal_a_recomputation(
    data: st.DataObject,
) -> None:
    layout = data.draw(st.sampled_from(({"dr": 4}, {"dr": 2}, {"exec": 2, "data": 2})))
    w = World(layout=layout, arbiter=Arbiter(layout))
    for _ in range(data.draw(st.integers(5, 60), label="steps")):
        before = _tables(w.arbiter, w)
        known = set(w.requests)
        lived = {CPU_CONTEXT, *w.threads}
        delta = step(data, w)
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
