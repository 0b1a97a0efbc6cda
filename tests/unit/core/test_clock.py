"""The clock protocol and its two implementations: readings, timers, their order and cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hwbkptd.core.clock import Clock, ManualClock, SystemClock


def test_system_clock_moves_forward() -> None:
    clock: Clock = SystemClock()
    a, b = clock.monotonic(), clock.monotonic()
    assert b >= a
    assert clock.time_ns() > 1_600_000_000 * 10**9


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(start=5.0, wall_ns=0)
    assert clock.monotonic() == 5.0
    assert clock.time_ns() == 5 * 10**9
    clock.advance(1.5)
    assert clock.monotonic() == 6.5
    assert clock.time_ns() == 6_500_000_000
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


def test_manual_timers_fire_in_deadline_order_each_at_its_own_time() -> None:
    clock = ManualClock(start=0.0)
    fired: list[tuple[str, float]] = []

    def note(name: str) -> Callable[[], None]:
        return lambda: fired.append((name, clock.monotonic()))

    clock.call_later(3, note("c"))
    clock.call_later(1, note("a"))
    clock.call_later(2, note("b1"))
    clock.call_later(2, note("b2"))  # same deadline: scheduling order
    assert (clock.pending(), clock.next_deadline()) == (4, 1.0)
    clock.advance(2)  # due at exactly the new time: fired
    assert fired == [("a", 1.0), ("b1", 2.0), ("b2", 2.0)]
    assert clock.monotonic() == 2.0
    assert (clock.pending(), clock.next_deadline()) == (1, 3.0)
    clock.advance(0.5)
    assert len(fired) == 3
    clock.advance(10)
    assert fired[-1] == ("c", 3.0)
    assert clock.monotonic() == 12.5
    assert (clock.pending(), clock.next_deadline()) == (0, None)


def test_a_cancelled_manual_timer_never_fires_and_a_late_cancel_is_harmless() -> None:
    clock = ManualClock(start=0.0)
    fired: list[str] = []
    early = clock.call_later(1, lambda: fired.append("early"))
    late = clock.call_later(2, lambda: fired.append("late"))
    late.cancel()
    assert clock.pending() == 1
    clock.advance(5)
    assert fired == ["early"]
    early.cancel()  # already fired
    late.cancel()  # twice
    clock.advance(5)
    assert fired == ["early"]


def test_a_timer_scheduled_by_a_callback_fires_in_the_same_advance_when_due() -> None:
    clock = ManualClock(start=0.0)
    fired: list[float] = []

    def again() -> None:
        fired.append(clock.monotonic())
        if len(fired) < 5:
            clock.call_later(1, again)

    clock.call_later(1, again)
    clock.advance(3)
    assert fired == [1.0, 2.0, 3.0]
    clock.advance(1.5)
    assert fired == [1.0, 2.0, 3.0, 4.0]
    assert clock.next_deadline() == 5.0


def test_zero_and_negative_delays_fire_on_the_next_advance_even_by_zero() -> None:
    clock = ManualClock(start=0.0)
    fired: list[str] = []
    clock.call_later(0, lambda: fired.append("zero"))
    clock.call_later(-1, lambda: fired.append("negative"))
    assert fired == []  # never inside call_later
    clock.advance(0)
    assert fired == ["zero", "negative"]
    assert clock.monotonic() == 0.0


def test_a_failing_callback_stops_the_advance_at_its_deadline() -> None:
    clock = ManualClock(start=0.0)
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    clock.call_later(1, boom)
    clock.call_later(2, lambda: fired.append("after"))
    with pytest.raises(RuntimeError, match="boom"):
        clock.advance(5)
    assert clock.monotonic() == 1.0
    assert fired == []
    clock.advance(4)
    assert fired == ["after"]
    assert clock.monotonic() == 5.0


async def test_system_clock_timers_run_on_the_loop_and_cancel() -> None:
    clock: Clock = SystemClock()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    fired: list[str] = []
    cancelled = clock.call_later(0, lambda: fired.append("cancelled"))
    start = clock.monotonic()
    clock.call_later(0, lambda: done.set_result(clock.monotonic()))
    cancelled.cancel()
    assert not done.done()  # never inside call_later
    # Both were due in the same loop turn: had the first not been cancelled, it had run.
    assert await done >= start
    assert fired == []
