"""Reading one CPU's two non-stop rings as one (no perf): order kept, nothing lost or doubled."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.perf.nonstop_delivery import NonstopDelivery, NonstopStats, TaskHandler
from hwbkptd.arch.perf.nonstop_rings import RingSet, merge
from hwbkptd.arch.perf.nonstop_table import NonstopTable
from hwbkptd.arch.perf.ring import RECORD_EXIT, RECORD_FORK, Batch, Sample, TaskRecord


def sample(t: int) -> Sample:
    return Sample(7, 0x400000, 1, 1, t, 0x1000, 0)


def test_an_empty_read_gives_the_other_one_unchanged() -> None:
    full = Batch(samples=[sample(1)], lost=2)
    assert merge(Batch(), full) is full
    assert merge(full, Batch()) is full


def test_both_rings_merge_by_time_and_add_their_counts() -> None:
    fork = TaskRecord(RECORD_FORK, 1, 1, 2, 1, 5)
    exit_ = TaskRecord(RECORD_EXIT, 1, 1, 2, 2, 3)
    a = Batch(samples=[sample(1), sample(4)], tasks=[fork], lost=1, throttled=1)
    b = Batch(samples=[sample(2), sample(3)], tasks=[exit_], lost=2, other=1, malformed=True)
    got = merge(a, b)
    assert [s.time for s in got.samples] == [1, 2, 3, 4]
    assert got.tasks == [exit_, fork]
    assert (got.lost, got.throttled, got.other, got.malformed) == (3, 1, 1, True)


@given(st.lists(st.integers(0, 10**6), unique=True), st.data())
def test_a_split_between_the_rings_is_undone(times: list[int], data: st.DataObject) -> None:
    """However a CPU's records were split between the rings (events moved back and forth),
    the merge gives them all back once, in time order."""
    times.sort()
    where = data.draw(st.lists(st.booleans(), min_size=len(times), max_size=len(times)))
    a = Batch(samples=[sample(t) for t, w in zip(times, where, strict=True) if w])
    b = Batch(samples=[sample(t) for t, w in zip(times, where, strict=True) if not w])
    assert [s.time for s in merge(a, b).samples] == times


class _RingMover:
    """Moves that end when the test says so."""

    def __init__(self) -> None:
        self.moves: list[asyncio.Future[list[int]]] = []

    def move(self, loop: asyncio.AbstractEventLoop, jobs: object) -> asyncio.Future[list[int]]:
        self.moves.append(loop.create_future())
        return self.moves[-1]

    def close(self) -> None:
        pass


@pytest.fixture
async def rings(monkeypatch: pytest.MonkeyPatch) -> tuple[RingSet, _RingMover]:
    switcher = _RingMover()
    monkeypatch.setattr("hwbkptd.arch.perf.nonstop_rings.RingMover", lambda: switcher)
    # wait_for_moves() must give the loop a turn: a loop that spins in it is caught here, not hung.
    shields = iter(range(100))
    real = asyncio.shield

    def shield(future: asyncio.Future[list[int]]) -> asyncio.Future[list[int]]:
        assert next(shields, None) is not None, (
            "wait_for_moves() spins without yielding to the loop"
        )
        return real(future)

    monkeypatch.setattr(asyncio, "shield", shield)
    stats = NonstopStats()
    ringset = RingSet(
        1, NonstopDelivery(NonstopTable(), stats, cast(TaskHandler, None)), stats, lambda: [(0, 9)]
    )
    ringset.start(asyncio.get_running_loop())
    return ringset, switcher


async def test_fix_hang_settle_returns_once_a_move_ended_before_its_callback_ran(
    rings: tuple[RingSet, _RingMover],
) -> None:
    """The broker's hang (a removal under a hit storm): a request reached ``wait_for_moves``
    after the ring move's threads finished but before the loop ran the move's done callback.
    ``wait_for_moves`` awaited the done future, which does not yield, and looped on it forever:
    the loop never ran again (no RPC, no SIGTERM)."""
    ringset, switcher = rings
    # The read timer's step when hits come fast; no public way to move without real rings.
    ringset._move(batched=True)  # noqa: SLF001
    switcher.moves[0].set_result([0])  # the threads are done; the callback is only queued
    await ringset.wait_for_moves()
    await asyncio.sleep(0)
    assert ringset.batched


async def test_fix_hang_settle_still_waits_for_a_running_move(
    rings: tuple[RingSet, _RingMover],
) -> None:
    ringset, switcher = rings
    ringset._move(batched=True)  # noqa: SLF001
    settling = asyncio.ensure_future(ringset.wait_for_moves())
    for _ in range(5):
        await asyncio.sleep(0)  # the loop's turns: the move's future is not done
    assert not settling.done()
    switcher.moves[0].set_result([0])
    await asyncio.wait_for(settling, 1)
