"""Reading one CPU's two non-stop rings as one (no perf): order kept, nothing lost or doubled."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.perf.nonstop_rings import merge
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
