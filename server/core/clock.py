"""Time as the core sees it, behind a protocol so tests can hold it still.

Two readings: a monotonic one for leases and halt deadlines (never jumps with
the wall clock) and a wall-clock one in nanoseconds for event timestamps.
Waiting itself is left to the event loop's timers.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""

    def time_ns(self) -> int:
        """Wall-clock nanoseconds since the epoch, for event timestamps."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0, wall_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start
        self._wall_ns = wall_ns

    def monotonic(self) -> float:
        return self._now

    def time_ns(self) -> int:
        return self._wall_ns + int(self._now * 1e9)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go backwards")
        self._now += seconds
