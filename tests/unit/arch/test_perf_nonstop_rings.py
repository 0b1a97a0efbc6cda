"""Reading one CPU's two non-stop rings as one (no perf): order kept, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwbkptd.arch.perf.nonstop_delivery import NonstopDelivery, NonstopStats, TaskHandler
from hwbkptd.arch.perf.nonstop_events import NonstopRing
from hwbkptd.arch.perf.nonstop_rings import RingSet, merge, split_at
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


def test_a_split_at_a_time_keeps_the_counts_and_the_births_with_the_earlier_part() -> None:
    fork = TaskRecord(RECORD_FORK, 1, 1, 2, 1, 15)
    exit_ = TaskRecord(RECORD_EXIT, 1, 1, 2, 2, 16)
    batch = Batch(samples=[sample(5), sample(10), sample(20)], tasks=[fork, exit_], lost=3)
    now, later = split_at(batch, 10)
    assert [s.time for s in now.samples] == [5]
    assert now.tasks == [fork]
    assert now.lost == 3
    assert later is not None
    assert [s.time for s in later.samples] == [10, 20]
    assert later.tasks == [exit_]
    assert later.lost == 0
    whole = Batch(samples=[sample(5)], tasks=[fork])
    assert split_at(whole, 6) == (whole, None)


class _Ring:
    """One CPU ring whose reads hand out what the test queued (parsed already)."""

    def __init__(self, on_read: Callable[[], None] = lambda: None) -> None:
        self.queued: list[Sample] = []
        self.on_read = on_read
        self.reads = 0
        self.ring = self
        self.fd = -1

    def read(self) -> Batch | bytes:
        self.reads += 1
        samples, self.queued = self.queued, []
        self.on_read()  # what happens right after this read
        return Batch(samples=samples) if samples else b""


class _Parsed:
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def parse(self, data: Batch | bytes) -> Batch:
        return data if isinstance(data, Batch) else Batch()


class _Taker(NonstopDelivery):
    """The hits each pass delivered, in delivery order."""

    def __init__(self) -> None:
        super().__init__(NonstopTable(), NonstopStats(), cast(TaskHandler, None))
        self.passes: list[list[int]] = []

    def take(self, batches: list[tuple[int, Batch]]) -> None:
        merged = heapq.merge(*(b.samples for _, b in batches), key=lambda s: s.time)
        self.passes.append([s.time for s in merged])


@pytest.mark.parametrize("hold", [True, False])
def test_a_thread_that_moves_between_cpus_during_a_pass_keeps_its_order(
    monkeypatch: pytest.MonkeyPatch, hold: bool
) -> None:
    """The defect of the non-stop mode before the hold: a thread traps on CPU 0 just
    after its ring was read, then on CPU 1 before that ring is read. The pass that
    reads the later hit holds it; the next one delivers both, in order."""
    monkeypatch.setattr("hwbkptd.arch.perf.nonstop_rings.SampleFormat", _Parsed)
    monkeypatch.setattr("hwbkptd.arch.perf.nonstop_rings.HOLD_MARGIN_NS", 0)
    taker = _Taker()
    ringset = RingSet(1, taker, NonstopStats(), lambda: [])
    cpu0, cpu1 = _Ring(), _Ring()

    def trap_on_cpu0_then_cpu1() -> None:
        if cpu0.reads == 1:  # CPU 0's ring was just read, in the first pass
            cpu0.queued.append(sample(time.monotonic_ns()))
            cpu1.queued.append(sample(time.monotonic_ns() + 1))

    cpu0.on_read = trap_on_cpu0_then_cpu1
    ringset.rings = {0: cast(NonstopRing, cpu0), 1: cast(NonstopRing, cpu1)}
    ringset.batched_rings = {0: cast(NonstopRing, _Ring()), 1: cast(NonstopRing, _Ring())}
    ringset.drain(defer=False, hold=hold)
    ringset.drain(defer=False, hold=hold)
    delivered = [t for one in taker.passes for t in one]
    assert len(delivered) == 2
    assert (delivered == sorted(delivered)) is hold
    if hold:
        assert taker.passes[0] == []


def test_a_pass_that_does_not_hold_delivers_what_an_earlier_one_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("hwbkptd.arch.perf.nonstop_rings.SampleFormat", _Parsed)
    taker = _Taker()
    ringset = RingSet(1, taker, NonstopStats(), lambda: [])
    cpu0 = _Ring()
    ringset.rings = {0: cast(NonstopRing, cpu0)}
    ringset.batched_rings = {0: cast(NonstopRing, _Ring())}
    recent = time.monotonic_ns()
    cpu0.queued = [sample(recent - 10**9), sample(recent)]
    ringset.drain(defer=False, hold=True)
    assert taker.passes == [[recent - 10**9]]
    ringset.drain(defer=False)  # a table applied, a close: everything goes
    assert taker.passes[-1] == [recent]


def test_a_delivery_from_one_ordered_ring_holds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hwbkptd.arch.perf.nonstop_rings.SampleFormat", _Parsed)
    taker = _Taker()
    taker.holds_recent = False
    ringset = RingSet(1, taker, NonstopStats(), lambda: [])
    cpu0 = _Ring()
    ringset.rings = {0: cast(NonstopRing, cpu0)}
    ringset.batched_rings = {0: cast(NonstopRing, _Ring())}
    cpu0.queued = [sample(time.monotonic_ns() + 10**9)]
    ringset.drain(defer=False, hold=True)
    assert len(taker.passes[0]) == 1


class _Timer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Loop:
    """The loop's reader and timer calls, run by the test. Registering a reader reports
    nothing pending, as epoll does with a perf ring whose readiness was already told."""

    def __init__(self) -> None:
        self.readers: dict[int, Callable[[], None]] = {}
        self.timers: list[_Timer] = []

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        self.readers.pop(fd, None)

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        self.timers.append(_Timer(callback))
        return self.timers[-1]

    def is_closed(self) -> bool:
        return False

    def run_timer(self) -> None:
        timer = self.timers.pop(0)
        assert not timer.cancelled
        timer.callback()


def test_a_record_written_as_the_readers_come_back_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect behind a thread born after a CPU hotplug and never reported: the read
    timer's last, empty pass, then a FORK record, then the readers registered again. perf's
    poll clears the readiness it reports and registering polls, so epoll never told of
    that record; it sat in the ring until the next one. The rings are read once more."""
    monkeypatch.setattr("hwbkptd.arch.perf.nonstop_rings.SampleFormat", _Parsed)
    monkeypatch.setattr("hwbkptd.arch.perf.nonstop_rings.HOLD_MARGIN_NS", 0)
    taker = _Taker()
    loop = _Loop()
    ringset = RingSet(1, taker, NonstopStats(), lambda: [])
    ringset.start(cast(asyncio.AbstractEventLoop, loop))
    eager, batched = _Ring(), _Ring()
    eager.fd, batched.fd = 5, 6
    ringset.rings = {0: cast(NonstopRing, eager)}
    ringset.batched_rings = {0: cast(NonstopRing, batched)}
    first = time.monotonic_ns()
    eager.queued = [sample(first)]
    ringset._readable()  # noqa: SLF001 (the ring woke the loop)
    assert loop.readers == {}  # read on the timer now
    assert len(loop.timers) == 1
    late: list[int] = []

    def written_after_the_quiet_read() -> None:
        if not late:
            late.append(time.monotonic_ns())
            eager.queued.append(sample(late[0]))

    eager.on_read = written_after_the_quiet_read
    loop.run_timer()  # finds nothing, then the record comes
    assert 5 in loop.readers or loop.timers  # woken again, or reading on the timer
    while loop.timers:
        loop.run_timer()
    assert [t for one in taker.passes for t in one] == [first, *late]
    assert 5 in loop.readers  # quiet again: waiting for a wake-up
