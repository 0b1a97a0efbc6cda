"""The one fit routine of first-fit placement, and the shortcuts built on it (issue 10)."""

from __future__ import annotations

import random

from hwbkptd.core.model import Access, Chunk
from hwbkptd.core.placement import (
    Entry,
    FirstFit,
    Needs,
    Runner,
    assign_slots,
    join_without_rescan,
    leave_without_rescan,
)

POOLS = {"dr": 4, "bp": 2}
#: chunk id -> its pool: ids 1..6 in "dr", 7..9 in "bp".
CHUNKS = {
    cid: Chunk("dr" if cid <= 6 else "bp", 0x1000 * cid, 8, Access.WRITE) for cid in range(1, 10)
}


def random_need(rng: random.Random) -> Needs:
    by_pool: dict[str, list[int]] = {}
    for cid in rng.sample(sorted(CHUNKS), rng.randint(1, 3)):
        by_pool.setdefault(CHUNKS[cid].pool, []).append(cid)
    return tuple((pool, tuple(cids)) for pool, cids in sorted(by_pool.items()))


def first_fit(order: list[int], needs: dict[int, Needs]) -> FirstFit:
    state = FirstFit(dict(POOLS))
    for rid in order:
        state.place(needs[rid], rid)
    return state


def test_issue10_fitting_and_inserting_never_disagree() -> None:
    rng = random.Random(10)
    for _ in range(300):
        state = FirstFit(dict(POOLS))
        for rid in range(12):
            need = random_need(rng)
            free_before = dict(state.free)
            new = {pool: sum(1 for c in cids if c not in state.holders) for pool, cids in need}
            expected = all(n <= free_before[pool] for pool, n in new.items())
            assert state.fits(need) is expected
            assert state.free == free_before  # asking does not insert
            assert state.place(need, rid) is expected
            if expected:
                assert state.placed[-1] == rid
                for pool, n in new.items():
                    assert state.free[pool] == free_before[pool] - n
                assert all(rid in state.holders[c] for _p, cids in need for c in cids)
            else:
                assert state.free == free_before
                assert rid not in state.placed
            assert all(n >= 0 for n in state.free.values())


def test_issue10_join_without_rescan_agrees_with_a_full_first_fit() -> None:
    rng = random.Random(11)
    checked = 0
    for _ in range(300):
        needs = {rid: random_need(rng) for rid in range(1, 10)}
        rank: dict[int, Entry] = {rid: ((0, 1, rid), rid) for rid in needs}
        newcomer = rng.randint(1, 9)
        others = [rid for rid in sorted(needs) if rid != newcomer]
        placed = first_fit(others, needs)
        holders = {cid: tuple(held) for cid, held in placed.holders.items()}
        fits, joined = join_without_rescan(holders, rank, CHUNKS, POOLS, newcomer, needs[newcomer])
        full = first_fit(sorted(needs), needs)
        if fits is None:
            continue  # it takes a new slot: only a rescan can say who moves
        checked += 1
        assert fits is (newcomer in full.placed)
        expected = {cid: tuple(held) for cid, held in full.holders.items()}
        assert (joined if fits else holders) == expected
    assert checked > 50


def test_leaving_without_rescan_only_when_the_request_brought_no_chunk() -> None:
    needs: dict[int, Needs] = {1: (("dr", (1, 2)),), 2: (("dr", (2,)),)}
    holders = {cid: tuple(h) for cid, h in first_fit([1, 2], needs).holders.items()}
    assert leave_without_rescan(holders, 2, needs[2]) == {1: (1,), 2: (1,)}
    assert leave_without_rescan(holders, 1, needs[1]) is None


def test_kernel_verdicts_record_failure_and_external_blame() -> None:
    needs: dict[int, Needs] = {
        1: (("dr", (1, 2, 3)),),  # a user request
        2: (("dr", (4,)),),  # kernel: needs a fourth slot
    }
    user: Entry = ((0, 1, 1), 1)
    # One slot is held outside: three are free, the user request takes them all.
    runner = Runner([user], needs, {"dr": 3, "bp": 2}, dict(POOLS))
    runner.advance()
    assert not runner.kernel_fits(2)
    assert runner.kfail == {2}
    assert runner.kext == {2}  # it would fit with the outside slot given back
    free = Runner([user], needs, dict(POOLS), None)
    free.advance()
    assert free.kernel_fits(2)
    free.admit(2)
    assert free.actual.placed == [1, 2]


def test_assign_slots_keeps_a_staying_chunk_in_its_slot() -> None:
    assert assign_slots([None, 5, 6, None], [6, 7, 8], 4) == [7, 8, 6, None]
