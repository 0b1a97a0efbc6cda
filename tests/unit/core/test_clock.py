"""The clock protocol and its two implementations."""

from __future__ import annotations

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
